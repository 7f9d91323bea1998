//! `loom serve` without LOOM_DATABASE_URL: the private PostgreSQL cluster under the data dir.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use loom::db::local::LocalPostgres;

fn postmaster_running(data_dir: &std::path::Path) -> bool {
    data_dir.join("postgres/data/postmaster.pid").exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_private_cluster_is_created_once_reused_and_stopped() {
    let dir = tempfile::Builder::new().prefix("loom-pg-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let pg = LocalPostgres::start(dir.path()).await.unwrap();
    let mut conn = AsyncPgConnection::establish(&pg.url()).await.unwrap();
    conn.batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)").await.unwrap();
    drop(conn);
    // a second start while it runs reuses it and leaves it running for its owner
    let second = LocalPostgres::start(dir.path()).await.unwrap();
    second.stop().await.unwrap();
    assert!(postmaster_running(dir.path()));
    pg.stop().await.unwrap();
    assert!(!postmaster_running(dir.path()));
    // restarted, the data is still there (no second initdb)
    let again = LocalPostgres::start(dir.path()).await.unwrap();
    let mut conn = AsyncPgConnection::establish(&again.url()).await.unwrap();
    conn.batch_execute("SELECT x FROM kept").await.unwrap();
    drop(conn);
    again.stop().await.unwrap();
}

#[test]
fn serve_runs_on_its_own_database_and_stops_it_on_sigterm() {
    let dir = tempfile::Builder::new().prefix("loom-serve-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loom"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
        .env("LOOM_DATA_DIR", dir.path())
        .env_remove("LOOM_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Keep draining stderr so the server never writes into a closed pipe.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("Loom is listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let _ = tx.send(v["port"].as_u64());
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
    let port = port.expect("the server reported its port");
    let ready = plain_get(&format!("http://127.0.0.1:{port}/readyz"));
    assert!(ready.contains("\"ready\":true"), "{ready}");
    assert!(postmaster_running(dir.path()));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = exited.expect("loom serve exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!postmaster_running(dir.path()), "the private database is stopped on shutdown");
}

/// A blocking GET over a plain socket; this test has no async runtime.
fn plain_get(url: &str) -> String {
    {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}
