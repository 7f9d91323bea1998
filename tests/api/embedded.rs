//! `loom serve` without LOOM_DATABASE_URL: the private PostgreSQL cluster under the data dir,
//! which asks every connection for the password only Loom's user can read.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use loom::db::local::{LocalPostgres, OWNER_FILE, PASSWORD_FILE, StoppedBy};

fn postmaster_running(data_dir: &Path) -> bool {
    data_dir.join("postgres/data/postmaster.pid").exists()
}

/// A data dir under /tmp that the `postgres` user can reach when the tests run as root.
fn data_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    dir
}

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The cluster's URL with the password taken out.
fn without_password(url: &str) -> String {
    let (login, rest) = url.split_once('@').unwrap();
    let user = login.rsplit_once(':').unwrap().0;
    format!("{user}@{rest}")
}

async fn refused_without_password(pg: &LocalPostgres) {
    let url = pg.url().expose().to_owned();
    assert!(url.contains("postgres:"), "the URL carries the password");
    let err = AsyncPgConnection::establish(&without_password(&url)).await.err();
    let err = err.expect("a connection without the password is refused").to_string();
    assert!(!err.contains(&url), "{err}");
    AsyncPgConnection::establish(&url).await.expect("and one with it is let in");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_private_cluster_is_created_once_reused_and_stopped() {
    let dir = data_dir("loom-pg-");
    let pg = LocalPostgres::start(dir.path()).await.unwrap();
    let mut conn = AsyncPgConnection::establish(pg.url().expose()).await.unwrap();
    conn.batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)").await.unwrap();
    drop(conn);
    // a second start while it runs reuses it and leaves it running for its owner
    let second = LocalPostgres::start(dir.path()).await.unwrap();
    let me = i32::try_from(std::process::id()).unwrap();
    assert_eq!(second.stop().await.unwrap(), StoppedBy::Owner(me));
    assert!(postmaster_running(dir.path()));
    assert_eq!(pg.stop().await.unwrap(), StoppedBy::ThisProcess);
    assert!(!postmaster_running(dir.path()));
    // restarted, the data is still there (no second initdb)
    let again = LocalPostgres::start(dir.path()).await.unwrap();
    let mut conn = AsyncPgConnection::establish(again.url().expose()).await.unwrap();
    conn.batch_execute("SELECT x FROM kept").await.unwrap();
    drop(conn);
    again.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_asks_for_a_password_only_loom_s_user_can_read() {
    let dir = data_dir("loom-pw-");

    let pg = LocalPostgres::start(dir.path()).await.unwrap();

    refused_without_password(&pg).await;
    let file = dir.path().join(PASSWORD_FILE);
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600, "the password file is its owner's alone");
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "and its owner is Loom's user");
    let password = std::fs::read_to_string(&file).unwrap();
    assert!(pg.url().expose().contains(password.trim()));
    let hba = std::fs::read_to_string(dir.path().join("postgres/data/pg_hba.conf")).unwrap();
    assert!(!hba.lines().any(|l| !l.starts_with('#') && l.contains("trust")), "{hba}");
    pg.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_dir_is_closed_to_other_users_but_the_database_s_own() {
    let dir = data_dir("loom-perm-");
    std::fs::create_dir(dir.path().join("repos")).unwrap();
    std::fs::set_permissions(
        dir.path().join("repos"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let pg = LocalPostgres::start(dir.path()).await.unwrap();

    let postgres = dir.path().join("postgres");
    if as_root() {
        // The server runs as `postgres` and must pass through to its own directory; the
        // data dir cannot be listed, and everything else in it is root's alone.
        let server = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        assert_eq!(mode(dir.path()), 0o711);
        for path in [postgres.clone(), postgres.join("data"), postgres.join("run")] {
            let meta = std::fs::metadata(&path).unwrap();
            let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
            assert_eq!((uid, mode), (server.uid.as_raw(), 0o700), "{}", path.display());
        }
    } else {
        assert_eq!(mode(dir.path()), 0o700);
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if as_root() && path == postgres {
            continue;
        }
        assert_eq!(mode(&path) & 0o077, 0, "{} is open to others", path.display());
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), nix::unistd::geteuid().as_raw());
    }
    pg.stop().await.unwrap();
}

/// What Loom made before the cluster had a password: initdb with `--auth=trust` (as root,
/// the server's directories `postgres`'s), and a database with a table in it.
async fn old_trusting_cluster(dir: &Path) {
    let bin = loom::db::local::find_binaries().await.unwrap();
    let (data, run) = (dir.join("postgres/data"), dir.join("postgres/run"));
    for d in [dir.join("postgres"), data.clone(), run.clone()] {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        if as_root() {
            assert!(Command::new("chown").arg("postgres:").arg(&d).status().unwrap().success());
        }
    }
    let pg = |program: &str, args: &[&str]| {
        let mut cmd = Command::new(if as_root() { "runuser" } else { "env" });
        if as_root() {
            cmd.args(["-u", "postgres", "--"]);
        }
        let out = cmd.arg(bin.join(program)).args(args).current_dir("/").output().unwrap();
        assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let data = data.display().to_string();
    pg("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
    let (log, opts) =
        (format!("{data}/server.log"), format!("-k {} -c listen_addresses=''", run.display()));
    pg("pg_ctl", &["-D", &data, "-w", "-l", &log, "start", "-o", &opts]);
    for (db, sql) in [
        ("postgres", "CREATE DATABASE loom"),
        ("loom", "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"),
    ] {
        let url = format!("postgres://postgres@/{db}?host={}", run.display());
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        conn.batch_execute(sql).await.unwrap();
    }
    pg("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusting_cluster_from_an_older_loom_gets_the_password_and_keeps_its_data() {
    let dir = data_dir("loom-old-");
    old_trusting_cluster(dir.path()).await;

    let pg = LocalPostgres::start(dir.path()).await.unwrap();

    refused_without_password(&pg).await;
    let mut conn = AsyncPgConnection::establish(pg.url().expose()).await.unwrap();
    conn.batch_execute("SELECT x FROM kept").await.unwrap();
    drop(conn);
    pg.stop().await.unwrap();
    // And it starts again as any cluster with a password does.
    let again = LocalPostgres::start(dir.path()).await.unwrap();
    refused_without_password(&again).await;
    again.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_or_wrong_password_file_stops_the_start_saying_so() {
    let dir = data_dir("loom-lost-");
    LocalPostgres::start(dir.path()).await.unwrap().stop().await.unwrap();
    std::fs::remove_file(dir.path().join(PASSWORD_FILE)).unwrap();

    let err = LocalPostgres::start(dir.path()).await.expect_err("the old password is gone");

    let message = format!("{err:#}");
    assert!(message.contains(PASSWORD_FILE) && message.contains("lost"), "{message}");
    assert!(!postmaster_running(dir.path()), "no server is left running");
    assert!(!dir.path().join(PASSWORD_FILE).exists(), "no new, wrong, password is made");

    std::fs::write(dir.path().join(PASSWORD_FILE), "not-the-password\n").unwrap();
    let err = LocalPostgres::start(dir.path()).await.expect_err("a wrong password");

    let message = format!("{err:#}");
    assert!(message.contains("with the password in"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
    assert!(!postmaster_running(dir.path()), "the server it started is stopped again");
}

/// A `loom serve` on the private database of `dir`, its stderr drained into a log.
struct Serve {
    child: std::process::Child,
    port: u16,
    log: std::thread::JoinHandle<String>,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loom"))
            .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
            .env("LOOM_DATA_DIR", dir)
            .env_remove("LOOM_DATABASE_URL")
            .env("RUST_LOG", "info,loom=debug")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Keep draining stderr so the server never writes into a closed pipe.
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("Loom is listening") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    let _ = tx.send(v["port"].as_u64());
                }
                log.push(line);
            }
            log.join("\n")
        });
        let port = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
        let port = port.expect("the server reported its port");
        Serve { child, port: u16::try_from(port).unwrap(), log }
    }

    /// SIGTERM, then waits for a clean exit; returns the log.
    fn terminate(mut self) -> String {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let mut exited = None;
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = exited.expect("loom serve exits on SIGTERM");
        assert!(status.success(), "{status}");
        self.log.join().unwrap()
    }
}

#[test]
fn serve_runs_on_its_own_database_and_stops_it_on_sigterm() {
    let dir = data_dir("loom-serve-");
    let serve = Serve::start(dir.path());
    let ready = plain_get(&format!("http://127.0.0.1:{}/readyz", serve.port));
    assert!(ready.contains("\"ready\":true"), "{ready}");
    assert!(postmaster_running(dir.path()));
    let log = serve.terminate();
    assert!(!postmaster_running(dir.path()), "the private database is stopped on shutdown");
    let password = std::fs::read_to_string(dir.path().join(PASSWORD_FILE)).unwrap();
    assert!(log.contains("Loom is listening"), "{log}");
    assert!(log.contains("the private database is stopped"), "{log}");
    assert!(!log.contains(password.trim()), "the database password is in the log:\n{log}");
}

/// The pid in the cluster's `postmaster.pid`.
fn postmaster_pid(data_dir: &Path) -> i32 {
    let file = std::fs::read_to_string(data_dir.join("postgres/data/postmaster.pid")).unwrap();
    file.lines().next().unwrap().trim().parse().unwrap()
}

/// Whether `pid` runs (a zombie no one has reaped yet does not).
fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next().unwrap();
    state != "Z" && state != "X"
}

/// Ends a server the test left behind when it fails (the data dir is deleted under it).
struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        if process_alive(self.0) {
            let pid = nix::unistd::Pid::from_raw(self.0);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        }
    }
}

#[test]
fn serve_adopts_the_database_a_killed_serve_left_running_and_stops_it() {
    let dir = data_dir("loom-kill-");
    let mut killed = Serve::start(dir.path());
    let orphan = postmaster_pid(dir.path());
    let _reap = Reap(orphan);
    killed.child.kill().unwrap(); // SIGKILL: no shutdown runs
    killed.child.wait().unwrap();
    assert!(process_alive(orphan), "the killed serve's PostgreSQL outlives it");

    let serve = Serve::start(dir.path());
    assert_eq!(postmaster_pid(dir.path()), orphan, "the next serve runs on that same server");
    let ready = plain_get(&format!("http://127.0.0.1:{}/readyz", serve.port));
    assert!(ready.contains("\"ready\":true"), "{ready}");
    let log = serve.terminate();

    assert!(log.contains("adopting the private PostgreSQL cluster"), "{log}");
    assert!(log.contains("the private database is stopped"), "{log}");
    assert!(!postmaster_running(dir.path()), "postmaster.pid is gone:\n{log}");
    assert!(!process_alive(orphan), "no server of that data dir is left:\n{log}");
    assert!(!dir.path().join(OWNER_FILE).exists(), "nobody owns a stopped server");
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
