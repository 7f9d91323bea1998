//! The sandbox every command of an agent runs in (DESIGN.md, "The sandbox"): bubblewrap
//! (`bwrap`) builds a view of the machine holding the agent's worktree read-write, its git
//! metadata read-only (each at its own path, so the worktree's `.git` file and the clone's
//! links hold), the system and the toolchains read-only, the project's cache as `HOME`
//! (read-write), a private `/tmp`,
//! `/proc` of its own PID namespace and a minimal `/dev`; nothing else of the host (the data
//! dir, other worktrees, Loom's home, the database's sockets). The network is a namespace of
//! its own with only loopback, unless the project opens it. Limits on CPU time, memory,
//! processes and file size are rlimits set by `prlimit`; when Loom runs as root the command
//! drops to an unprivileged user with `setpriv`. Everything the command started dies with it:
//! its PID namespace ends when its first process does.
//!
//! Fail closed: in mode `auto` (the default) a sandbox that cannot be made refuses the
//! command (`ToolError::SandboxUnavailable`); only `off`, an operator's explicit choice,
//! runs commands unconfined.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::ToolError;
use crate::projects::Network;

/// Whether agents' commands are confined.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Confine every command; refuse commands when no sandbox can be made.
    #[default]
    Auto,
    /// Run commands unconfined, as Loom's user (an operator's explicit choice).
    Off,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// When Loom runs as root, the user commands run as (they never run as root).
    pub user: String,
    /// More host paths commands may read (toolchains outside `/usr`).
    pub read_only: Vec<PathBuf>,
    /// Data (heap) one process may allocate, in MiB.
    pub memory_mb: u64,
    /// Processes the command may have at once.
    pub processes: u64,
    /// Largest file the command may write, in MiB.
    pub file_size_mb: u64,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Off => "off",
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            mode: SandboxMode::Auto,
            user: "nobody".into(),
            read_only: Vec::new(),
            memory_mb: 4096,
            processes: 512,
            file_size_mb: 1024,
        }
    }
}

/// The sandbox as `/api/v1/status` and the overview show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SandboxStatus {
    /// `bubblewrap`, or `none` when commands run unconfined or cannot run.
    pub backend: &'static str,
    pub mode: SandboxMode,
    /// Whether agents' commands run confined.
    pub available: bool,
    /// Why not, when they do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The network projects get unless they open it.
    pub network_default: Network,
}

/// What one workspace's commands may see.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Read-write; the command starts there.
    pub worktree: PathBuf,
    /// Loom's bare clone: read-only, at its own path (the worktree's `.git` names it).
    pub clone: PathBuf,
    /// The worktree's own entry in the clone (`<clone>/worktrees/<name>`): read-only.
    pub admin: PathBuf,
    /// The project's cache, read-write, as `HOME`.
    pub cache: PathBuf,
    pub network: Network,
}

/// The process's sandbox: cheap to clone; finds out once whether it can be made.
#[derive(Clone)]
pub struct Sandbox(Arc<Inner>);

struct Inner {
    config: SandboxConfig,
    probe: tokio::sync::OnceCell<Probe>,
}

/// What the first use found.
#[derive(Debug, Clone)]
struct Probe {
    /// Ready to run commands, or why not.
    ready: Result<Ready, String>,
}

#[derive(Debug, Clone)]
struct Ready {
    bwrap: PathBuf,
    prlimit: PathBuf,
    /// As root: `setpriv` and the uid/gid to drop to.
    drop_to: Option<(PathBuf, u32, u32)>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("config", &self.0.config).finish_non_exhaustive()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new(SandboxConfig::default())
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Sandbox {
        Sandbox(Arc::new(Inner { config, probe: tokio::sync::OnceCell::new() }))
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.0.config
    }

    /// The uid and gid commands run as when Loom is root (files they must write are given
    /// to them); `None` when they run as Loom's own user.
    pub async fn owner(&self) -> Option<(u32, u32)> {
        match &self.probe().await.ready {
            Ok(r) => r.drop_to.as_ref().map(|(_, uid, gid)| (*uid, *gid)),
            Err(_) => None,
        }
    }

    pub async fn status(&self) -> SandboxStatus {
        let mode = self.0.config.mode;
        let network_default = Network::None;
        if mode == SandboxMode::Off {
            return SandboxStatus {
                backend: "none",
                mode,
                available: false,
                reason: Some(
                    "turned off by LOOM_SANDBOX=off: agents' commands run unconfined, as Loom's \
                     user"
                        .into(),
                ),
                network_default,
            };
        }
        match &self.probe().await.ready {
            Ok(_) => SandboxStatus {
                backend: "bubblewrap",
                mode,
                available: true,
                reason: None,
                network_default,
            },
            Err(why) => SandboxStatus {
                backend: "bubblewrap",
                mode,
                available: false,
                reason: Some(why.clone()),
                network_default,
            },
        }
    }

    async fn probe(&self) -> &Probe {
        self.0
            .probe
            .get_or_init(|| async {
                let config = self.0.config.clone();
                let found = tokio::task::spawn_blocking(move || probe(&config)).await;
                let ready = found.unwrap_or_else(|e| Err(format!("the probe failed: {e}")));
                if let Err(why) = &ready {
                    tracing::error!(reason = %why, "no sandbox can be made: agents' commands are refused");
                }
                Probe { ready }
            })
            .await
    }

    /// The command that runs `script` with `sh -c` for `cell`, with `env` as its whole
    /// environment, for at most `cpu_s` seconds of CPU per process. Unconfined (in the
    /// worktree itself) in mode `off`; refused when no sandbox can be made.
    pub async fn command(
        &self,
        cell: &Cell,
        script: &str,
        env: Vec<(String, OsString)>,
        cpu_s: u64,
    ) -> Result<tokio::process::Command, ToolError> {
        if self.0.config.mode == SandboxMode::Off {
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(script).current_dir(&cell.worktree).env_clear().envs(env);
            return Ok(cmd);
        }
        let ready = match &self.probe().await.ready {
            Ok(ready) => ready.clone(),
            Err(why) => return Err(unavailable(why)),
        };
        Ok(confined(&ready, &self.0.config, cell, env, cpu_s, script).into())
    }
}

/// `script` in a sandbox showing `cell`: bwrap, then the limits, then (as root) the drop to
/// the unprivileged user, then `sh -c`.
fn confined(
    ready: &Ready,
    config: &SandboxConfig,
    cell: &Cell,
    env: Vec<(String, OsString)>,
    cpu_s: u64,
    script: &str,
) -> std::process::Command {
    let env = inside_env(env, &cell.cache);
    let mut cmd = std::process::Command::new(&ready.bwrap);
    cmd.args(mounts(cell, &config.read_only, &env))
        .args(namespaces(cell.network, ready.drop_to.is_some()))
        .arg("--chdir")
        .arg(&cell.worktree)
        .args(["--die-with-parent", "--new-session", "--"])
        .args(limits(&ready.prlimit, config, cpu_s));
    if let Some((setpriv, uid, gid)) = &ready.drop_to {
        cmd.arg(setpriv).args(drop_args(*uid, *gid));
    }
    cmd.arg("/bin/sh").arg("-c").arg(script).env_clear().envs(env).current_dir("/");
    cmd
}

/// What a refused command tells the model (and, through the run's ending, people).
fn unavailable(why: &str) -> ToolError {
    ToolError::SandboxUnavailable(format!(
        "the command was not run: no sandbox can be made for agents' commands on this server \
         ({why}). Commands cannot run until an operator fixes it; the bead waits for them."
    ))
}

/// The environment inside: `HOME` and cargo's home are the project's cache, where tools
/// keep what they download.
fn inside_env(mut env: Vec<(String, OsString)>, cache: &Path) -> Vec<(String, OsString)> {
    env.retain(|(k, _)| k != "HOME" && k != "CARGO_HOME");
    env.push(("HOME".into(), cache.into()));
    env.push(("CARGO_HOME".into(), cache.join(".cargo").into()));
    // Git refuses repositories another user owns; the clone is Loom's and read-only here.
    env.push(("GIT_CONFIG_COUNT".into(), "1".into()));
    env.push(("GIT_CONFIG_KEY_0".into(), "safe.directory".into()));
    env.push(("GIT_CONFIG_VALUE_0".into(), "*".into()));
    env
}

fn namespaces(network: Network, as_root: bool) -> Vec<&'static str> {
    // As root, no user namespace: bwrap is privileged already, and the command drops to an
    // unprivileged user of the host itself (a namespace would map it back onto root).
    let mut args = if as_root {
        vec!["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    } else {
        vec![
            "--unshare-user",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]
    };
    if network == Network::None {
        args.push("--unshare-net");
    }
    args.extend(["--hostname", "sandbox"]);
    args
}

fn limits(prlimit: &Path, config: &SandboxConfig, cpu_s: u64) -> Vec<OsString> {
    const MIB: u64 = 1024 * 1024;
    vec![
        prlimit.into(),
        format!("--cpu={cpu_s}").into(),
        format!("--data={}", config.memory_mb.saturating_mul(MIB)).into(),
        format!("--nproc={}", config.processes).into(),
        format!("--fsize={}", config.file_size_mb.saturating_mul(MIB)).into(),
        "--core=0".into(),
        "--".into(),
    ]
}

fn drop_args(uid: u32, gid: u32) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
        "--bounding-set=-all".into(),
        "--no-new-privs".into(),
        "--".into(),
    ]
}

/// The filesystem the command sees.
fn mounts(cell: &Cell, extra: &[PathBuf], env: &[(String, OsString)]) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let ro = |path: &Path, args: &mut Vec<OsString>| {
        parents(path, args);
        args.extend(["--ro-bind-try".into(), path.into(), path.into()]);
    };
    // The system: /usr, and /bin, /lib... as the host has them (symlinks into /usr or not).
    ro(Path::new("/usr"), &mut args);
    for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        match std::fs::read_link(dir) {
            Ok(target) => args.extend(["--symlink".into(), target.into(), dir.into()]),
            Err(_) => ro(Path::new(dir), &mut args),
        }
    }
    for dir in ["/etc", "/opt"] {
        ro(Path::new(dir), &mut args);
    }
    // Toolchains: every directory on PATH, rustup's and pyenv's homes, and what the
    // operator adds.
    for dir in toolchains(env).iter().chain(extra) {
        ro(dir, &mut args);
    }
    args.extend(["--proc".into(), "/proc".into(), "--dev".into(), "/dev".into()]);
    for tmp in ["/tmp", "/var/tmp"] {
        args.extend(["--perms".into(), "1777".into(), "--tmpfs".into(), tmp.into()]);
    }
    // The git metadata, read-only: the clone without the other worktrees' entries, then this
    // worktree's own entry.
    let worktrees = cell.clone.join("worktrees");
    for path in [&cell.clone, &cell.worktree, &cell.cache] {
        parents(path, &mut args);
    }
    args.extend(["--ro-bind".into(), cell.clone.clone().into(), cell.clone.clone().into()]);
    args.extend(["--tmpfs".into(), worktrees.clone().into()]);
    args.extend(["--ro-bind".into(), cell.admin.clone().into(), cell.admin.clone().into()]);
    args.extend(["--remount-ro".into(), worktrees.into()]);
    // The worktree, writable; its `.git` file (which says where the metadata is) is not.
    let gitlink = cell.worktree.join(".git");
    args.extend(["--bind".into(), cell.worktree.clone().into(), cell.worktree.clone().into()]);
    if gitlink.exists() {
        args.extend(["--ro-bind".into(), gitlink.clone().into(), gitlink.into()]);
    }
    args.extend(["--bind".into(), cell.cache.clone().into(), cell.cache.clone().into()]);
    args
}

/// Makes the directories above a mount point traversable (bwrap would make them with
/// the process's umask, and Loom's, 077 say, would close them to an unprivileged user).
fn parents(path: &Path, args: &mut Vec<OsString>) {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.pop(); // `/`
    for dir in ancestors.into_iter().rev() {
        args.extend(["--perms".into(), "0755".into(), "--dir".into(), dir.into()]);
    }
}

/// Host directories commands need to find their tools: those on `PATH` outside the system
/// directories, and the homes named by `RUSTUP_HOME` and `PYENV_ROOT`.
fn toolchains(env: &[(String, OsString)]) -> Vec<PathBuf> {
    let system = ["/usr", "/bin", "/sbin", "/lib", "/etc", "/opt"];
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (name, value) in env {
        let paths: Vec<PathBuf> = match name.as_str() {
            "PATH" => std::env::split_paths(value).collect(),
            "RUSTUP_HOME" | "PYENV_ROOT" => vec![PathBuf::from(value)],
            _ => continue,
        };
        for path in paths {
            let inside_system = system.iter().any(|s| path.starts_with(s));
            if path.is_absolute() && !inside_system && path.is_dir() && !dirs.contains(&path) {
                dirs.push(path);
            }
        }
    }
    dirs
}

/// Finds the tools and makes one sandbox that runs `true`: what is missing is said.
fn probe(config: &SandboxConfig) -> Result<Ready, String> {
    let bwrap = which("bwrap").ok_or(
        "bubblewrap is not installed (the `bwrap` command); install it (Debian/Ubuntu: `apt-get \
         install bubblewrap`) or set LOOM_SANDBOX=off to run commands unconfined",
    )?;
    let prlimit = which("prlimit").ok_or("`prlimit` (util-linux) is not installed")?;
    let drop_to = if nix::unistd::Uid::effective().is_root() {
        let setpriv = which("setpriv").ok_or("`setpriv` (util-linux) is not installed")?;
        let user = nix::unistd::User::from_name(&config.user)
            .map_err(|e| format!("looking up the user {}: {e}", config.user))?
            .ok_or_else(|| {
                format!(
                    "the user {:?} (LOOM_SANDBOX_USER) does not exist on this host",
                    config.user
                )
            })?;
        if user.uid.is_root() {
            return Err("LOOM_SANDBOX_USER must not be root".into());
        }
        Some((setpriv, user.uid.as_raw(), user.gid.as_raw()))
    } else {
        None
    };
    let ready = Ready { bwrap, prlimit, drop_to };
    let dir = std::env::temp_dir().join(format!("loom-sandbox-probe-{}", uuid::Uuid::new_v4()));
    let made = std::fs::create_dir_all(dir.join("work"))
        .and_then(|()| std::fs::create_dir_all(dir.join("cache")))
        .map_err(|e| format!("could not make a probe directory: {e}"));
    let result = made.and_then(|()| try_true(&ready, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| ready)
}

fn try_true(ready: &Ready, dir: &Path) -> Result<(), String> {
    let clone = dir.join("clone");
    std::fs::create_dir_all(clone.join("worktrees/probe")).map_err(|e| e.to_string())?;
    let cell = Cell {
        worktree: dir.join("work"),
        admin: clone.join("worktrees/probe"),
        clone,
        cache: dir.join("cache"),
        network: Network::None,
    };
    let env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    let out = confined(ready, &SandboxConfig::default(), &cell, env, 10, "true")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("could not start bwrap: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(format!(
        "bubblewrap could not make a sandbox ({}{}); user namespaces may be disabled (inside \
         a container they must be allowed: see docs/DEPLOYMENT.md)",
        out.status,
        if said.is_empty() { String::new() } else { format!(": {said}") }
    ))
}

/// The first executable named `name` on Loom's `PATH` or in the system directories.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let system = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path).chain(system).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
