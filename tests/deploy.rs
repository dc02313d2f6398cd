//! The deployment files (examples/deploy/, `Dockerfile`, README's Deploy
//! section) hold together and hold what docs/deploy.md says:
//!
//! - the systemd unit is `Type=notify` with the reload, user and hardening
//!   the docs promise, and `systemd-analyze verify` accepts it (pointed at
//!   the built `gwc`) where systemd is installed;
//! - the image builds with the README's command, runs as a user that is not
//!   root, and its entry point's configuration is a file of `examples/` that
//!   checks without a diagnostic and listens on the port it exposes (the
//!   image itself cannot be built here: no registry of base images);
//! - the Kubernetes manifests validate against the API's schemas
//!   (`kubernetes-validate`, which carries them: offline), their ConfigMap
//!   holds a configuration that checks, is formatted and answers the
//!   Deployment's probes itself, and the stop fits in the grace period.
//!
//! - every ```` ```gw ```` snippet of docs/deploy.md compiles without errors.
//!
//! A tool that is missing skips its part, saying so, unless `CI` is set.

use crate::support::{gwc_path, TempDir};
use gw_compiler::host::MemoryHost;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Skips (returns false) when `what` is missing outside CI; fails in CI.
fn available(found: bool, what: &str) -> bool {
    if !found {
        assert!(!required(), "{what} is required in CI but missing");
        eprintln!("skipped: {what} is missing");
    }
    found
}

/// Compiles a configuration; the diagnostics, one per line (empty: none).
fn check(name: &str, text: &str) -> String {
    let c = gw_compiler::compile_text(&MemoryHost::new(), name, text);
    c.diagnostics
        .iter()
        .map(|d| format!("{} {}: {}", d.code, d.severity.as_str(), d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_checks_and_is_formatted(name: &str, text: &str) {
    assert_eq!(check(name, text), "", "{name} has diagnostics");
    let formatted = gw_compiler::format::format(name, text).unwrap_or_else(|_| panic!("{name} does not format"));
    assert_eq!(formatted, text, "{name} is not in `gwc fmt`'s layout");
}

/// The values of `key:` on the lines of a YAML text (list items included),
/// in order: enough for the flat facts these tests read.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            let v = l.strip_prefix(key)?.strip_prefix(':')?;
            Some(v.trim().trim_matches('"').to_string())
        })
        .collect()
}

fn yaml_value(text: &str, key: &str) -> String {
    let values = yaml_values(text, key);
    assert!(!values.is_empty(), "no `{key}:` in\n{text}");
    values[0].clone()
}

/// `30s` → 30 s (the forms `--drain` and `TimeoutStopSec=` take here).
fn seconds(s: &str) -> Duration {
    let n: u64 = s
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("`{s}` is not whole seconds"));
    Duration::from_secs(n)
}

/// The value following `flag` in a list of arguments.
fn arg_after<'a>(args: &[&'a str], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| *a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args.get(at + 1).unwrap_or_else(|| panic!("{flag} without a value"))
}

// ------------------------------------------------------------------ systemd

/// `Key=value` lines of a unit, in order.
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn setting(settings: &[(String, String)], key: &str) -> String {
    let found: Vec<_> = settings.iter().filter(|(k, _)| k == key).collect();
    assert_eq!(found.len(), 1, "{key}= is set {} times", found.len());
    found[0].1.clone()
}

/// `systemd-analyze verify` on `unit` (as a file named `gw.service`): what
/// it printed, and whether it succeeded.
fn systemd_verify(unit: &str) -> (String, bool) {
    let dir = TempDir::new();
    let path = dir.path().join("gw.service");
    std::fs::write(&path, unit).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

#[test]
fn the_systemd_unit_is_type_notify_hardened_and_verified_by_systemd() {
    let unit = read("examples/deploy/gw.service");
    let settings = unit_settings(&unit);
    assert_eq!(setting(&settings, "Type"), "notify");
    assert_eq!(setting(&settings, "ExecReload"), "/bin/kill -HUP $MAINPID");
    let exec = setting(&settings, "ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args[..3], ["/usr/local/bin/gwc", "serve", "/etc/gw/gw.gw"], "{exec}");
    // The stop waits for the drain.
    let drain = seconds(arg_after(&args, "--drain"));
    let stop = seconds(&setting(&settings, "TimeoutStopSec"));
    assert!(
        stop > drain,
        "TimeoutStopSec={stop:?} cuts the drain of {drain:?} short"
    );
    // Upgrades: the socket in a folder the unit creates for the gateway, and
    // the new process may tell systemd it is the main one.
    let socket = arg_after(&args, "--upgrade-socket");
    let runtime_dir = setting(&settings, "RuntimeDirectory");
    assert!(
        socket.starts_with(&format!("/run/{runtime_dir}/")),
        "{socket} outside /run/{runtime_dir}"
    );
    assert_eq!(setting(&settings, "NotifyAccess"), "all");
    let user = setting(&settings, "User");
    assert!(!user.is_empty() && user != "root" && user != "0", "User={user}");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(setting(&settings, key), value, "{key}=");
    }
    assert!(
        seconds(&setting(&settings, "WatchdogSec")) >= Duration::from_secs(2),
        "a watchdog"
    );

    let found = Command::new("systemd-analyze").arg("--version").output().is_ok();
    if !available(found, "systemd-analyze (Debian's `systemd`)") {
        return;
    }
    // `verify` needs ExecStart's binary: the one just built.
    let gwc = gwc_path();
    let here = unit.replace("/usr/local/bin/gwc", gwc);
    let (said, ok) = systemd_verify(&here);
    assert!(ok && said.is_empty(), "systemd-analyze verify:\n{said}");
    // It has teeth: a misspelt setting is reported.
    let (said, _) = systemd_verify(&here.replace("ProtectHome=yes", "ProtectHome=yess"));
    assert!(said.contains("yess"), "a bad value went unnoticed: {said:?}");
}

// ------------------------------------------------------------------ the image

/// The Dockerfile's instructions: (INSTRUCTION, arguments), comments out.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap_or((l, ""));
            (i.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect()
}

fn all<'a>(ins: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    ins.iter().filter(|(i, _)| i == name).map(|(_, a)| a.as_str()).collect()
}

/// The port of the first `listen :PORT` of a configuration.
fn listen_port(config: &str) -> u16 {
    config
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("listen ")?
                .split_whitespace()
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
        .expect("a `listen ADDR:PORT`")
}

#[test]
fn the_image_builds_with_the_readmes_command_and_runs_a_checked_example_as_a_user() {
    let dockerfile = read("Dockerfile");
    let readme = read("README.md");
    let ins = instructions(&dockerfile);

    // Two stages: the build on the runtime's Debian release (its glibc).
    let from = all(&ins, "FROM");
    assert_eq!(from.len(), 2, "a build stage and a runtime stage: {from:?}");
    assert!(
        from[0].starts_with("rust:") && from[0].contains("bookworm"),
        "{}",
        from[0]
    );
    assert!(
        from[1].contains("debian12"),
        "the runtime is Debian 12 too: {}",
        from[1]
    );

    // The build command is the README's.
    let run = all(&ins, "RUN");
    assert_eq!(run, ["cargo build --release --locked"], "one build command");
    assert!(
        readme.contains(&format!("`{}`", run[0])),
        "the README does not give the Dockerfile's build command `{}`",
        run[0]
    );
    // The README's line that builds and runs the image is the Dockerfile's
    // own, with the tag it builds and the port the image exposes.
    let line = readme
        .lines()
        .find(|l| l.starts_with("docker build"))
        .expect("a `docker build` line in the README");
    assert!(
        dockerfile.contains(line),
        "the Dockerfile's header does not show `{line}`"
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    let tag = arg_after(&words, "-t");
    assert_eq!(words.last(), Some(&tag), "`docker run` runs the image built: {line}");
    let expose = all(&ins, "EXPOSE");
    assert_eq!(expose.len(), 1);
    assert!(
        arg_after(&words, "-p").ends_with(&format!(":{}", expose[0])),
        "{line} publishes another port than EXPOSE {}",
        expose[0]
    );

    // The binary and the examples only, as a user that is not root.
    let copies = all(&ins, "COPY");
    assert!(
        copies.contains(&"--from=build /src/target/release/gwc /usr/local/bin/gwc"),
        "{copies:?}"
    );
    let user = *all(&ins, "USER").last().expect("a USER");
    let uid = user.split(':').next().unwrap_or(user);
    assert!(!matches!(uid, "" | "root" | "0"), "USER {user}");
    assert!(
        uid.parse::<u32>().is_ok(),
        "a numeric user (runAsNonRoot can check it): {user}"
    );
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target/"));

    // The entry point serves a file of examples/, which checks and listens
    // on the exposed port.
    let entry = all(&ins, "ENTRYPOINT");
    assert_eq!(entry, [r#"["/usr/local/bin/gwc", "serve", "/etc/gw/gw.gw"]"#]);
    let source = copies
        .iter()
        .find_map(|c| c.strip_suffix(" /etc/gw/gw.gw"))
        .expect("a COPY to /etc/gw/gw.gw");
    assert!(source.starts_with("examples/"), "{source}");
    let config = read(source);
    assert_checks_and_is_formatted(source, &config);
    assert_eq!(listen_port(&config).to_string(), expose[0]);

    // The Kubernetes Deployment runs it as that user, on that port.
    let deployment = read("examples/deploy/kubernetes/deployment.yaml");
    assert_eq!(yaml_value(&deployment, "runAsUser"), uid);
    assert_eq!(yaml_value(&deployment, "containerPort"), expose[0]);
}

// ------------------------------------------------------------------ Kubernetes

const MANIFESTS: &str = "examples/deploy/kubernetes";

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(MANIFESTS))
        .expect("the manifests")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// `kubernetes-validate`: where `tests/run` installs it, or `GW_KUBERNETES_VALIDATE`.
fn validator() -> PathBuf {
    std::env::var_os("GW_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/kubernetes-validate/bin/kubernetes-validate"))
}

fn validate(version: &str, files: &[PathBuf]) -> (String, bool) {
    let out = Command::new(validator())
        .args(["--strict", "--quiet", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

#[test]
fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let files = manifests();
    let kinds: Vec<String> = files.iter().flat_map(|f| yaml_values(&read_path(f), "kind")).collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} among {kinds:?}");
    }
    if !available(
        validator().is_file(),
        "kubernetes-validate (tests/run installs it in target/kubernetes-validate)",
    ) {
        return;
    }
    // The oldest Kubernetes the Deployment needs (preStop's `sleep`), and the newest the validator knows.
    for version in ["1.30.0", "1.37.0"] {
        let (said, ok) = validate(version, &files);
        assert!(
            ok,
            "the manifests do not validate against Kubernetes {version}:\n{said}"
        );
    }
    // It has teeth: an unknown field, a string where a number goes, and a
    // field older clusters do not have are refused.
    let dir = TempDir::new();
    let deployment = read(&format!("{MANIFESTS}/deployment.yaml"));
    for (name, broken, version) in [
        (
            "typo",
            deployment.replacen("readinessProbe:", "readinesProbe:", 1),
            "1.37.0",
        ),
        (
            "type",
            deployment.replacen("containerPort: 8080", "containerPort: \"8080\"", 1),
            "1.37.0",
        ),
        ("old", deployment.clone(), "1.28.0"),
    ] {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &broken).expect("write");
        let (said, ok) = validate(version, &[path]);
        assert!(!ok, "a broken Deployment ({name}) passed: {said}");
    }
}

fn read_path(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The block scalar `key: |` of a YAML text, dedented.
fn block_scalar(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().unwrap_or_else(|| panic!("no `{key}: |`"));
    let indent = head.len() - head.trim_start().len() + 2;
    let mut out = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

#[test]
fn the_configmap_checks_answers_the_probes_and_the_stop_fits_the_grace_period() {
    let configmap = read(&format!("{MANIFESTS}/configmap.yaml"));
    let deployment = read(&format!("{MANIFESTS}/deployment.yaml"));

    // The Deployment mounts the ConfigMap where the image's entry point reads it.
    assert_eq!(yaml_value(&deployment, "mountPath"), "/etc/gw");
    assert_eq!(
        yaml_values(&deployment, "name").last().map(String::as_str),
        Some("gw-config")
    );
    assert_eq!(yaml_value(&configmap, "name"), "gw-config");
    assert!(!deployment.contains("subPath"), "a subPath mount is never updated");
    let config = block_scalar(&configmap, "gw.gw");
    assert_checks_and_is_formatted("gw.gw", &config);

    // Both probes ask for what the configuration answers itself.
    let paths = yaml_values(&deployment, "path");
    let hosts = yaml_values(&deployment, "value");
    assert_eq!(paths.len(), 2, "a readiness and a liveness probe: {paths:?}");
    assert_eq!(hosts.len(), 2, "each with its Host: {hosts:?}");
    for (path, host) in paths.iter().zip(&hosts) {
        let probed = format!("{config}\ntest \"probe\" {{\n  GET {path} host \"{host}\" -> 200\n}}\n");
        assert_eq!(
            check("gw.gw", &probed),
            "",
            "the probe `GET {path}` (Host {host}) is not answered 200"
        );
    }
    // And the configuration's admin stays on loopback.
    let admin = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("admin "))
        .expect("an admin listener");
    assert!(admin.trim().starts_with("127.0.0.1:"), "admin {admin}");

    // preStop's sleep, then the drain, within the grace period.
    let args_line = yaml_value(&deployment, "args");
    let args: Vec<&str> = args_line
        .trim_matches(['[', ']'])
        .split(',')
        .map(|a| a.trim().trim_matches('"'))
        .collect();
    let drain = seconds(arg_after(&args, "--drain"));
    let sleep = Duration::from_secs(yaml_value(&deployment, "seconds").parse().expect("seconds"));
    let grace = Duration::from_secs(
        yaml_value(&deployment, "terminationGracePeriodSeconds")
            .parse()
            .expect("seconds"),
    );
    assert!(
        sleep + drain < grace,
        "preStop {sleep:?} + drain {drain:?} does not fit in {grace:?}"
    );
}

#[test]
fn the_snippets_of_the_deployment_guide_compile() {
    let guide = read("docs/deploy.md");
    let snippets = crate::examples::gw_snippets(&guide);
    assert!(
        snippets.len() >= 2,
        "the front gateway and the probe route: {snippets:?}"
    );
    for (line, text) in snippets {
        let c = gw_compiler::compile_text(&MemoryHost::new(), "deploy.md", &text);
        assert_eq!(c.errors(), 0, "docs/deploy.md:{line}: {}", check("deploy.md", &text));
    }
}
