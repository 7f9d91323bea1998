//! A PostgreSQL cluster of the test's own, so it can be stopped and started under the
//! replicas: the machine's server is shared with other people's tests and must never be.
//! Served on a Unix socket only (no port to collide with), with the same options `.ci/run`
//! gives its private cluster; as root the server runs as `postgres`, as `LocalPostgres` does.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

/// The database the replicas share.
const DATABASE: &str = "loom";

impl PrivatePostgres {
    /// Initialises a cluster under `root` (which every user must be able to traverse) and
    /// starts it with an empty database `loom`.
    pub async fn start(root: &Path) -> PrivatePostgres {
        let bin = loom::db::local::find_binaries().await.expect("PostgreSQL server binaries");
        let pg = PrivatePostgres {
            bin,
            data: root.join("pg-data"),
            socket: root.join("pg-run"),
            log: root.join("pg-run/server.log"),
        };
        for dir in [&pg.data, &pg.socket] {
            std::fs::create_dir_all(dir).expect("a directory for the cluster");
            if as_root() {
                run(Command::new("chown").arg("postgres:").arg(dir)).await;
            }
        }
        run(pg.command("initdb").args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]).args([
            "--locale=C",
            "-D",
            &pg.data.display().to_string(),
        ]))
        .await;
        pg.start_server().await;
        let mut conn = pg.connect("postgres").await;
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query(format!("CREATE DATABASE {DATABASE}")),
            &mut conn,
        )
        .await
        .expect("create the replicas' database");
        pg
    }

    /// The replicas' database.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@/{db}?host={}", self.socket.display())
    }

    async fn connect(&self, db: &str) -> diesel_async::AsyncPgConnection {
        use diesel_async::AsyncConnection;
        diesel_async::AsyncPgConnection::establish(&self.url_for(db))
            .await
            .expect("connect to the private cluster")
    }

    /// Stops the server the way a crash would (`-m immediate`: no checkpoint, every
    /// connection cut), so the next start runs crash recovery.
    pub async fn crash(&self) {
        run(&mut self.pg_ctl(&["-m", "immediate", "-w", "stop"])).await;
    }

    /// Starts the server again on the same data directory and socket.
    pub async fn start_server(&self) {
        let opts = format!(
            "-k {} -c listen_addresses='' -c max_connections=300 -c fsync=off",
            self.socket.display()
        );
        let log = self.log.display().to_string();
        run(&mut self.pg_ctl(&["-l", &log, "-w", "-t", "60", "start", "-o", &opts])).await;
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&self.data).args(args);
        cmd
    }

    /// One of the server's programs, as the user the server runs as.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.current_dir("/").env_remove("PGDATA");
        cmd
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]).output();
    }
}

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `cmd` to its end off the runtime's threads; fails the test with its output.
async fn run(cmd: &mut Command) {
    let what = format!("{cmd:?}");
    let cmd = std::mem::replace(cmd, Command::new("true"));
    let out = tokio::process::Command::from(cmd).output().await.expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
