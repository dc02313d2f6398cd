//! Files are bounded (the hosts' `read`: compiler/src/host.rs, src/host.rs,
//! runtime/src/secrets.rs): only regular files once symlinks are followed,
//! at most 64 MiB. `import "/dev/zero"` once grew `gwc check` without end
//! and a FIFO import hung it; both are GW0005 now, at once, and the file on
//! the command line is refused alike (exit status 2).

use crate::support::{gwc_path, TempDir};
use gw_compiler::host::{MemoryHost, Refusal, MAX_FILE_SIZE};
use gw_compiler::{compile, compile_text, Code};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `gwc ARGS` in `dir`, killing it (and failing) if it takes longer
/// than 20 s: before the fix, a FIFO made it wait forever.
fn gwc_within(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(gwc_path())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gwc");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait for gwc").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gwc {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("gwc output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A FIFO at `path` (with `mkfifo`, as an operator would make one).
fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "mkfifo {}", path.display());
}

/// A sparse file of `len` bytes: no disk or memory is spent on it.
fn sparse(path: &Path, len: u64) {
    let f = std::fs::File::create(path).expect("create a file");
    f.set_len(len).expect("set its length");
}

const ROUTES: &str = "listen 127.0.0.1:8080\nupstream app { server 127.0.0.1:9000 }\nroute GET /a -> app\n";

#[test]
fn importing_a_device_a_fifo_or_a_directory_is_gw0005_at_once() {
    let dir = TempDir::new();
    mkfifo(&dir.path().join("pipe.gw"));
    std::fs::create_dir(dir.path().join("conf.d")).expect("a folder");
    for (import, kind) in [
        ("/dev/zero", "it is a character device, not a regular file"),
        ("pipe.gw", "it is a FIFO, not a regular file"),
        ("conf.d", "it is a directory, not a regular file"),
    ] {
        std::fs::write(dir.path().join("app.gw"), format!("import \"{import}\"\n{ROUTES}")).expect("write");
        let (status, stdout, _) = gwc_within(dir.path(), &["check", "--format", "json", "app.gw"]);
        assert_eq!(status, Some(1), "{import}: {stdout}");
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        let d = &json["diagnostics"][0];
        assert_eq!(d["code"], "GW0005", "{import}: {stdout}");
        let message = d["message"].as_str().unwrap_or_default();
        assert_eq!(message, format!("cannot import `{import}`: {kind}"));
        assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(1), Some(8)));
    }
}

#[test]
fn a_symlink_to_a_regular_file_is_read() {
    // Kubernetes mounts a ConfigMap as symlinks to regular files.
    let dir = TempDir::new();
    std::fs::write(dir.path().join("real.gw"), ROUTES).expect("write");
    std::os::unix::fs::symlink("real.gw", dir.path().join("routes.gw")).expect("symlink");
    std::fs::write(dir.path().join("app.gw"), "import \"routes.gw\"\n").expect("write");
    let (status, stdout, stderr) = gwc_within(dir.path(), &["check", "app.gw"]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    // And so is a symlinked root file.
    let (status, stdout, stderr) = gwc_within(dir.path(), &["check", "routes.gw"]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
}

#[test]
fn a_file_over_64_mib_is_not_read() {
    let dir = TempDir::new();
    sparse(&dir.path().join("huge.gw"), MAX_FILE_SIZE + 1);
    std::fs::write(dir.path().join("app.gw"), format!("import \"huge.gw\"\n{ROUTES}")).expect("write");
    let (status, stdout, _) = gwc_within(dir.path(), &["check", "app.gw"]);
    assert_eq!(status, Some(1), "{stdout}");
    assert!(stdout.contains("error[GW0005]"), "{stdout}");
    assert!(
        stdout.contains("cannot import `huge.gw`: it is 67108865 bytes, more than the 64 MiB a file may have"),
        "{stdout}"
    );
}

#[test]
fn the_file_on_the_command_line_is_bounded_alike() {
    let dir = TempDir::new();
    mkfifo(&dir.path().join("pipe.gw"));
    sparse(&dir.path().join("huge.gw"), MAX_FILE_SIZE + 1);
    for (file, why) in [
        ("pipe.gw", "it is a FIFO, not a regular file"),
        ("/dev/zero", "it is a character device, not a regular file"),
        ("huge.gw", "more than the 64 MiB a file may have"),
    ] {
        for command in ["check", "plan", "build", "test", "serve"] {
            let (status, stdout, stderr) = gwc_within(dir.path(), &[command, file]);
            assert_eq!(status, Some(2), "gwc {command} {file}: {stdout}{stderr}");
            assert!(
                stderr.contains(&format!("error: cannot read `{file}`: ")) && stderr.contains(why),
                "gwc {command} {file}: {stderr}"
            );
        }
    }
}

#[test]
fn key_files_and_secrets_are_bounded_too() {
    let dir = TempDir::new();
    mkfifo(&dir.path().join("secret.pipe"));
    let text = format!(
        "{ROUTES}auth a jwt {{ issuer \"i\" audience \"a\" algorithms HS256 secret file(\"secret.pipe\") }}\n\
         auth b jwt {{ issuer \"i\" audience \"a\" algorithms RS256 public_key file(\"/dev/zero\") }}\n\
         route GET /b -> app {{ auth a }}\nroute GET /c -> app {{ auth b }}\n"
    );
    std::fs::write(dir.path().join("app.gw"), text).expect("write");
    let (status, stdout, _) = gwc_within(dir.path(), &["check", "--format", "json", "app.gw"]);
    assert_eq!(status, Some(1), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let messages: Vec<(&str, &str)> = json["diagnostics"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| (d["code"].as_str().unwrap_or(""), d["message"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        messages,
        vec![
            (
                "GW0005",
                "cannot read secret `secret.pipe`: it is a FIFO, not a regular file"
            ),
            (
                "GW0005",
                "cannot read public key `/dev/zero`: it is a character device, not a regular file"
            ),
        ]
    );
}

#[test]
fn the_runtime_reads_secret_files_with_the_same_bounds() {
    let dir = TempDir::new();
    let pipe = dir.path().join("key.pipe");
    mkfifo(&pipe);
    let pipe = pipe.to_string_lossy().into_owned();
    let start = Instant::now();
    let e = gw_runtime::secrets::read_file(&pipe, MAX_FILE_SIZE).expect_err("a FIFO is refused");
    assert_eq!(Refusal::of(&e), Some(&Refusal::NotAFile("a FIFO")));
    assert!(start.elapsed() < Duration::from_secs(5), "did not wait for a writer");
    let e = gw_runtime::secrets::resolve(&gw_compiler::plan::Secret::File("/dev/zero".into()))
        .expect_err("a device is refused");
    assert_eq!(
        e,
        "cannot read file(\"/dev/zero\"): it is a character device, not a regular file"
    );
    let small = dir.path().join("small");
    std::fs::write(&small, b"0123456789").expect("write");
    let small = small.to_string_lossy().into_owned();
    assert_eq!(
        gw_runtime::secrets::read_file(&small, 10).expect("at the limit"),
        b"0123456789"
    );
    let e = gw_runtime::secrets::read_file(&small, 9).expect_err("over the limit");
    assert_eq!(
        Refusal::of(&e),
        Some(&Refusal::TooLarge {
            size: Some(10),
            limit: 9
        })
    );
}

#[test]
fn the_memory_host_refuses_what_a_real_host_refuses() {
    let host = MemoryHost::new()
        .file("big.gw", vec![b' '; 101])
        .file("keys.txt", vec![b'k'; 101])
        .special("pipe.gw", "a FIFO")
        .limit(100);
    let c = compile_text(
        &host,
        "app.gw",
        &format!(
            "import \"big.gw\"\nimport \"pipe.gw\"\n{ROUTES}auth k api_key {{ keys file(\"keys.txt\") }}\nroute GET /k -> app {{ auth k }}\n"
        ),
    );
    let found: Vec<(Code, &str)> = c.diagnostics.iter().map(|d| (d.code, d.message.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (
                Code::GW0005,
                "cannot import `big.gw`: it is 101 bytes, more than the 100 bytes a file may have"
            ),
            (
                Code::GW0005,
                "cannot import `pipe.gw`: it is a FIFO, not a regular file"
            ),
            (
                Code::GW0005,
                "cannot read key list `keys.txt`: it is 101 bytes, more than the 100 bytes a file may have"
            ),
        ]
    );
    // The root file: a usage error, with the refusal as its reason.
    let e = compile(&host, "pipe.gw").err().expect("refused");
    assert_eq!(e.to_string(), "it is a FIFO, not a regular file");
}
