//! `gwc serve` as a process, on a bad day: it refuses to start without a
//! listener; a reload to an empty file, or to one that removes every route,
//! keeps the running plan (listeners, admin and routes) while requests go on;
//! and the watcher loses no change — an import that did not exist yet is
//! read when it appears, an import that is a FIFO is refused without
//! blocking (SIGHUP still works), and a Kubernetes ConfigMap update (a
//! symlink swapped to a new folder) is noticed.

use crate::live::{get, Upstream};
use crate::serve_harness::{dead_addr, Served};
use crate::support::TempDir;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

fn app(upstream: SocketAddr, extra: &str) -> String {
    format!(
        "listen 127.0.0.1:0
         upstream a {{ server {upstream} }}
         route GET /a/{{id}} -> a
         {extra}\n"
    )
}

fn refusals(line: &str) -> bool {
    line.contains("reload refused") && !line.contains("gw::access")
}

/// Waits until `GET url` answers `status`.
async fn until_status(url: &str, status: u16, served: &Served) {
    let start = Instant::now();
    loop {
        let req = hyper::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let answered = tokio::time::timeout(Duration::from_secs(2), crate::live::client().request(req)).await;
        if let Ok(Ok(r)) = answered {
            if r.status().as_u16() == status {
                return;
            }
        }
        if start.elapsed() > WAIT {
            panic!("{url} never answered {status}\n{}", served.output());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_a_listener() {
    let empty = Served::start(&[("app.gw", "")], &["app.gw"]);
    assert_eq!(empty.wait_exit(WAIT).await, Some(1), "{}", empty.output());
    let said = crate::live::eventually(WAIT, || empty.output().contains("has no `listen`")).await;
    assert!(said, "{}", empty.output());

    let up = Upstream::named("a").await;
    let text = format!(
        "admin {}\nupstream a {{ server {} }}\nroute GET /a -> a\n",
        dead_addr(),
        up.addr
    );
    let admin_only = Served::start(&[("app.gw", &text)], &["app.gw"]);
    assert_eq!(admin_only.wait_exit(WAIT).await, Some(1), "{}", admin_only.output());
    let said = crate::live::eventually(WAIT, || {
        let out = admin_only.output();
        out.contains("warning[GW0506]") && out.contains("has no `listen`")
    })
    .await;
    assert!(said, "the warning, then the refusal\n{}", admin_only.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_an_empty_file_under_load_keeps_every_listener_and_route() {
    let up = Upstream::named("a").await;
    let admin = dead_addr();
    let served = Served::start(
        &[("app.gw", &app(up.addr, &format!("admin {admin}")))],
        &["app.gw", "--watch-interval", "50ms"],
    );
    let addr = served.bound(1).await[0];
    let admin = served.admin().await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let load = {
        let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
        tokio::spawn(async move {
            let client = crate::live::client();
            while !stop.load(Ordering::SeqCst) {
                let req = hyper::Request::get(format!("http://{addr}/a/1"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
                    Ok(Ok(r)) if r.status() == 200 => {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Ok(r)) => failures.lock().expect("lock").push(r.status().to_string()),
                    Ok(Err(e)) => failures.lock().expect("lock").push(format!("{e:?}")),
                    Err(_) => failures.lock().expect("lock").push("timed out".into()),
                }
            }
        })
    };

    // `: > app.gw`
    served.write("app.gw", "");
    let refused = served.wait_lines(WAIT, 1, refusals).await;
    assert!(refused[0].contains("no `listen`"), "{}", refused[0]);
    // `listen` and `admin` alone: every route would be gone.
    served.write("app.gw", &format!("listen 127.0.0.1:0\nadmin {admin}\n"));
    let refused = served.wait_lines(WAIT, 2, refusals).await;
    assert!(refused[1].contains("removes every route"), "{}", refused[1]);
    let healthz = get(&format!("http://{admin}/healthz")).await;
    assert_eq!(healthz.status, 200, "the admin listener is still there");
    // A good edit still reloads.
    served.write(
        "app.gw",
        &app(up.addr, &format!("admin {admin}\nroute GET /b {{ respond 204 }}")),
    );
    until_status(&format!("http://{addr}/b"), 204, &served).await;

    stop.store(true, Ordering::SeqCst);
    load.await.expect("the load");
    let failures = failures.lock().expect("lock").clone();
    assert!(failures.is_empty(), "{} failed requests: {failures:?}", failures.len());
    assert!(done.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_does_not_exist_yet_is_read_when_it_appears() {
    let up = Upstream::named("a").await;
    let served = Served::start(
        &[("app.gw", &app(up.addr, ""))],
        &["app.gw", "--watch-interval", "50ms"],
    );
    let addr = served.bound(1).await[0];
    served.write("app.gw", &app(up.addr, "import \"routes.gw\""));
    let refused = served.wait_lines(WAIT, 1, refusals).await;
    assert!(
        refused[0].contains("GW0004") || served.output().contains("GW0004"),
        "{}",
        served.output()
    );
    // Only the import is written; the root file is not touched again.
    served.write("routes.gw", "route GET /imported { respond 204 }\n");
    until_status(&format!("http://{addr}/imported"), 204, &served).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_is_a_fifo_is_refused_and_sighup_still_reloads() {
    let up = Upstream::named("a").await;
    let served = Served::start(
        &[("app.gw", &app(up.addr, ""))],
        &["app.gw", "--watch-interval", "50ms"],
    );
    let addr = served.bound(1).await[0];
    let fifo = served.path("pipe.gw");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success());
    served.write("app.gw", &app(up.addr, "import \"pipe.gw\""));
    served.wait_lines(WAIT, 1, refusals).await;
    let log = served.stderr_lines().join("\n");
    assert!(log.contains("a FIFO, not a regular file"), "{log}");
    // The watcher is not blocked on the FIFO: SIGHUP reads again (and is refused again).
    served.signal("HUP");
    served.wait_lines(WAIT, 1, |l| l.contains("SIGHUP")).await;
    served.wait_lines(WAIT, 2, refusals).await;
    assert_eq!(
        get(&format!("http://{addr}/a/1")).await.status,
        200,
        "the old plan serves"
    );
    // A regular file in its place is read without touching the root file.
    std::fs::remove_file(&fifo).expect("remove the FIFO");
    served.write("pipe.gw", "route GET /piped { respond 204 }\n");
    until_status(&format!("http://{addr}/piped"), 204, &served).await;
}

/// What the kubelet's `AtomicWriter` does to a ConfigMap volume, step by
/// step: the payload goes into a new folder `..YYYY_MM_DD_HH_MM_SS.N`, a
/// symlink `..data_tmp` to it is renamed over `..data` (the one atomic
/// step), the file's own symlink `NAME -> ..data/NAME` is made if missing,
/// and the previous folder is removed. Returns the new folder's name.
fn kubelet_write(dir: &std::path::Path, name: &str, text: &str, previous: Option<&str>, n: u32) -> String {
    let folder = format!("..2026_12_07_10_00_0{n}.12345678{n}");
    std::fs::create_dir(dir.join(&folder)).expect("mkdir");
    let file = dir.join(&folder).join(name);
    std::fs::write(&file, text).expect("write");
    if let Some(previous) = previous {
        // The same length and modification time as the version it replaces:
        // only the file behind the name tells them apart.
        let old = dir.join(previous).join(name);
        let mtime = std::fs::metadata(&old).and_then(|m| m.modified()).expect("mtime");
        let f = std::fs::File::options().write(true).open(&file).expect("open");
        f.set_modified(mtime).expect("set the modification time");
    }
    std::os::unix::fs::symlink(&folder, dir.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    let visible = dir.join(name);
    if std::fs::symlink_metadata(&visible).is_err() {
        std::os::unix::fs::symlink(format!("..data/{name}"), &visible).expect("symlink");
    }
    if let Some(previous) = previous {
        std::fs::remove_dir_all(dir.join(previous)).expect("remove the previous folder");
    }
    folder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_through_symlinks_is_reloaded() {
    let up = Upstream::named("a").await;
    let version = |status: u16| app(up.addr, &format!("route GET /v {{ respond {status} }}"));
    let dir = TempDir::new();
    let first = kubelet_write(dir.path(), "app.gw", &version(201), None, 1);
    let served = Served::start_in(dir, &["app.gw", "--watch-interval", "50ms"]);
    let addr = served.bound(1).await[0];
    assert_eq!(get(&format!("http://{addr}/v")).await.status, 201);

    // Two updates: the second is read through the link the first made, once
    // the folder the gateway first read is gone.
    let second = kubelet_write(served.dir.path(), "app.gw", &version(202), Some(&first), 2);
    until_status(&format!("http://{addr}/v"), 202, &served).await;
    kubelet_write(served.dir.path(), "app.gw", &version(203), Some(&second), 3);
    until_status(&format!("http://{addr}/v"), 203, &served).await;
    assert!(
        !served.output().contains("reload refused"),
        "a swap is never seen half done\n{}",
        served.output()
    );
}
