//! The private PostgreSQL cluster Loom runs under its data directory when no
//! `LOOM_DATABASE_URL` is given: found on the machine, initialised on first start, served on
//! a Unix socket only (no TCP port to collide with) in a directory only the server's user can
//! enter, asking every connection for a password (`password.rs`), stopped on shutdown. A server
//! left running by a Loom that died without stopping it is adopted and stopped (`owner.rs`).
//!
//! Layout: `<data dir>/postgres/{data,run}` (the server's user's, 0700) and
//! `<data dir>/postgres-{password,owner}` (Loom's user's, 0600). As root the server runs as
//! `postgres` (initdb and postgres refuse root), so the data dir is 0711 for it to pass
//! through (see `crate::data_dir`).

mod owner;
mod password;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::config::Secret;
pub use owner::FILE as OWNER_FILE;
pub use password::FILE as PASSWORD_FILE;

const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found \
in PATH, `pg_config --bindir` or /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: \
`sudo apt-get install postgresql`; macOS: `brew install postgresql`) or point Loom at an \
existing server with LOOM_DATABASE_URL=postgres://user@host/db";

/// The database Loom keeps its data in, inside the private cluster.
pub const DATABASE: &str = "loom";

/// A running private cluster.
#[derive(Debug)]
pub struct LocalPostgres {
    bin: PathBuf,
    /// `<data dir>/postgres`: the server's user's.
    root: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    /// As root, the server runs as this unprivileged user (initdb refuses root).
    run_as: Option<String>,
    /// Loom's data dir, where the owner file is kept.
    data_dir: PathBuf,
    /// Who stops the server: this process (it started or adopted it), or another live one.
    stopped_by: StoppedBy,
    password: Secret,
    /// Where `password` is kept, for error messages.
    password_file: PathBuf,
}

/// Who stops a running private cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoppedBy {
    /// This process: it started the server, or adopted one whose owner is gone.
    ThisProcess,
    /// The live Loom process (this pid) that started it: it stays up for that one.
    Owner(i32),
}

impl LocalPostgres {
    /// Finds the binaries, initialises the cluster on first use and starts it, or reuses it
    /// when it is already running: left alone for its owner when that Loom still runs,
    /// adopted (stopped at this process's shutdown) when it does not. A cluster an older Loom
    /// made, which trusted every local connection, is given the password first.
    pub async fn start(data_dir: &Path) -> anyhow::Result<LocalPostgres> {
        let bin = find_binaries().await.context(INSTALL_HINT)?;
        let run_as = server_user().await?;
        crate::data_dir::secure(data_dir, run_as.is_some())?;
        let root = absolute(&data_dir.join(crate::data_dir::POSTGRES))?;
        let (data, socket_dir) = (root.join("data"), socket_dir_for(&root));
        let hba = data.join("pg_hba.conf");
        let trusting = password::trusts(&std::fs::read_to_string(&hba).unwrap_or_default());
        let password_file = absolute(&data_dir.join(PASSWORD_FILE))?;
        // A cluster that asks for a password already has one: a new one would be wrong.
        let password = if data.join("PG_VERSION").exists() && !trusting {
            password::load(&password_file)?
        } else {
            password::load_or_create(&password_file)?
        };
        let mut pg = LocalPostgres {
            bin,
            root,
            data,
            socket_dir,
            run_as,
            data_dir: absolute(data_dir)?,
            stopped_by: StoppedBy::ThisProcess,
            password,
            password_file,
        };
        pg.prepare_dirs().await?;
        if !pg.data.join("PG_VERSION").exists() {
            pg.initdb().await?;
        }
        pg.start_or_adopt().await?;
        let ready = async {
            if trusting {
                pg.require_password(&hba).await?;
            }
            pg.ensure_database().await
        };
        if let Err(e) = ready.await {
            // A server this start brought up is not left running for nobody.
            return Err(match pg.stop().await {
                Ok(_) => e,
                Err(stop) => e.context(format!("and stopping the server failed: {stop:#}")),
            });
        }
        Ok(pg)
    }

    /// The URL of Loom's database in this cluster (a Unix-socket connection, with the
    /// password: never to be logged).
    pub fn url(&self) -> Secret {
        Secret::new(self.url_for(DATABASE))
    }

    fn url_for(&self, db: &str) -> String {
        let login = format!("postgres:{}", password::for_url(&self.password));
        self.url_as(&login, db)
    }

    fn url_as(&self, login: &str, db: &str) -> String {
        let server = format!("postgres://{login}@/postgres?host={}", self.socket_dir.display());
        super::database_url(&server, db)
    }

    /// Stops the server if this process started or adopted it; says which it did.
    pub async fn stop(self) -> anyhow::Result<StoppedBy> {
        if let StoppedBy::Owner(pid) = self.stopped_by {
            tracing::info!(
                owner.pid = pid,
                "left the private PostgreSQL cluster running for the Loom process that started it"
            );
            return Ok(self.stopped_by);
        }
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]).await?;
        owner::clear(&self.data_dir);
        tracing::info!(data_dir = %data, "stopped the private PostgreSQL cluster");
        Ok(self.stopped_by)
    }

    /// Starts the server, recording this process as its owner; or, when it already runs,
    /// leaves it to its live owner or adopts it from a dead one.
    async fn start_or_adopt(&mut self) -> anyhow::Result<()> {
        if !self.is_running().await {
            owner::record(&self.data_dir)?;
            return self.pg_ctl_start().await.inspect_err(|_| owner::clear(&self.data_dir));
        }
        match owner::read(&self.data_dir) {
            Some(owner) if owner.is_alive() => {
                tracing::info!(
                    owner.pid = owner.pid,
                    "using the private PostgreSQL cluster another Loom process started; it \
                     stays up for that process"
                );
                self.stopped_by = StoppedBy::Owner(owner.pid);
            }
            previous => {
                owner::record(&self.data_dir)?;
                tracing::warn!(
                    previous_owner.pid = previous.map(|o| o.pid),
                    data_dir = %self.data.display(),
                    "adopting the private PostgreSQL cluster left running by a Loom process \
                     that did not stop it; it is stopped at this one's shutdown"
                );
            }
        }
        Ok(())
    }

    async fn prepare_dirs(&self) -> anyhow::Result<()> {
        for dir in [&self.root, &self.data, &self.socket_dir] {
            // The socket dir may sit in /tmp under a predictable name: never follow a link
            // someone planted there with our chmod and chown.
            if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
                bail!("{} is a symbolic link; refusing to use it for the database", dir.display());
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            crate::data_dir::set_mode(dir, 0o700)?;
            if let Some(user) = &self.run_as {
                chown(dir, user).await?;
            }
        }
        if let Some(user) = &self.run_as {
            let check = Command::new("runuser")
                .args(["-u", user, "--", "test", "-w"])
                .arg(&self.data)
                .status()
                .await?;
            if !check.success() {
                bail!(
                    "the PostgreSQL server runs as user `{user}` (it refuses root), but that \
                     user cannot reach {}; set LOOM_DATA_DIR to a directory every user can \
                     traverse (for example /var/lib/loom) or set LOOM_DATABASE_URL",
                    self.data.display()
                );
            }
        }
        Ok(())
    }

    async fn initdb(&self) -> anyhow::Result<()> {
        tracing::info!(data_dir = %self.data.display(), "initialising a private PostgreSQL cluster");
        let data = self.data.display().to_string();
        let pwfile = password::PwFile::write(&self.root, &self.password, self.run_as.as_deref())?;
        let pwfile_arg = format!("--pwfile={}", pwfile.path().display());
        let auth = "--auth=scram-sha-256";
        self.run(
            "initdb",
            &["-D", &data, "-U", "postgres", auth, &pwfile_arg, "-E", "UTF8", "--locale=C"],
        )
        .await
    }

    /// Gives a cluster that trusts local connections (made by an older Loom) the password
    /// and makes it ask for it: the role's password is set over the still-trusting socket,
    /// `pg_hba.conf` replaced, the configuration reloaded, and the change checked by a
    /// connection without the password being refused.
    async fn require_password(&self, hba: &Path) -> anyhow::Result<()> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let trusted = self.url_as("postgres", "postgres");
        let mut conn = AsyncPgConnection::establish(&trusted)
            .await
            .context("connecting to the private cluster to give it a password")?;
        // The password is base64url, no quote to escape; the statement is not logged.
        let set = format!(
            "SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD '{}'",
            self.password.expose().replace('\'', "''")
        );
        conn.batch_execute(&set).await.context("setting the database password")?;
        std::fs::write(hba, password::HBA).with_context(|| format!("writing {}", hba.display()))?;
        conn.batch_execute("SELECT pg_reload_conf()").await.context("reloading pg_hba.conf")?;
        drop(conn);
        for _ in 0..100 {
            if AsyncPgConnection::establish(&trusted).await.is_err() {
                tracing::info!(
                    "the private PostgreSQL cluster now asks for the password in the data dir \
                     (it trusted every local connection)"
                );
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        bail!("the private cluster still lets connections in without a password after a reload")
    }

    async fn is_running(&self) -> bool {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "status"]).await.is_ok()
    }

    async fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let data = self.data.display().to_string();
        let log = self.data.join("server.log").display().to_string();
        let opts = format!(
            "-k {} -c listen_addresses='' -c max_connections=200",
            self.socket_dir.display()
        );
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "start", "-o", &opts])
            .await
            .with_context(|| format!("starting PostgreSQL (its log: {log})"))?;
        tracing::info!(socket_dir = %self.socket_dir.display(), "started the private PostgreSQL cluster");
        Ok(())
    }

    async fn ensure_database(&self) -> anyhow::Result<()> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn =
            AsyncPgConnection::establish(&self.url_for("postgres")).await.with_context(|| {
                format!(
                    "connecting to the private cluster with the password in {}",
                    self.password_file.display()
                )
            })?;
        let exists: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
            "(SELECT count(*) FROM pg_database WHERE datname = '{DATABASE}')"
        )))
        .get_result(&mut conn)
        .await?;
        if exists == 0 {
            diesel::sql_query(format!("CREATE DATABASE {DATABASE}")).execute(&mut conn).await?;
        }
        Ok(())
    }

    async fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // The server must not inherit the caller's working directory (it may be
        // unreadable to the server user) nor a PGDATA pointing elsewhere.
        cmd.args(args).current_dir("/").env_remove("PGDATA");
        let out = cmd.output().await.with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Looks for a directory holding initdb, pg_ctl and postgres: PATH, then
/// `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
pub async fn find_binaries() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output().await
        && out.status.success()
    {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
    candidates.extend(versions);
    candidates
        .into_iter()
        .find(|dir| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file()))
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL server binaries not found"))
}

fn version_of(bin_dir: &Path) -> u32 {
    bin_dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Unix socket paths are limited to about 100 bytes; a deep data dir gets its socket in
/// /tmp under a name derived from the data dir, so it stays stable across restarts.
fn socket_dir_for(root: &Path) -> PathBuf {
    let preferred = root.join("run");
    if preferred.as_os_str().len() < 80 {
        return preferred;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    std::env::temp_dir().join(format!("loom-pg-{tag}"))
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_owned() } else { std::env::current_dir()?.join(path) })
}

/// None when not root; as root, the `postgres` system user (created when missing).
async fn server_user() -> anyhow::Result<Option<String>> {
    let uid = Command::new("id").arg("-u").output().await?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Ok(None);
    }
    let exists = Command::new("id").arg("postgres").output().await?.status.success();
    if !exists {
        let created = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"])
            .status()
            .await?;
        if !created.success() {
            bail!("running as root needs an unprivileged `postgres` user, and creating it failed");
        }
    }
    Ok(Some("postgres".into()))
}

async fn chown(dir: &Path, user: &str) -> anyhow::Result<()> {
    let status = Command::new("chown").arg(format!("{user}:")).arg(dir).status().await?;
    if !status.success() {
        bail!("chown {} to {user} failed", dir.display());
    }
    Ok(())
}
