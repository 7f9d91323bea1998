//! The `run` action: `sh -c` in the worktree, in the sandbox (see `sandbox`), in its own
//! process group, with an environment built from nothing (so no secret of Loom's reaches
//! it), stdin closed, a timeout, and the output cut to its head and tail.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::time::Instant;

use super::sandbox::Cell;
use super::{ToolError, Workspace};
use crate::projects::Network;

pub(super) const DEFAULT_TIMEOUT_S: u64 = 120;
pub(super) const MAX_TIMEOUT_S: u64 = 600;
/// The output kept: this much of its start and (more) of its end, where test summaries and the
/// last error are; together under `clip::RESULT_MAX_CHARS`, so the result is never cut again.
pub(super) const OUTPUT_HEAD: usize = 4 * 1024;
pub(super) const OUTPUT_TAIL: usize = 6 * 1024;
/// How long to keep reading after the command ended and its group was killed. Only a process
/// that left the group (`setsid`) can hold the output open longer.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Workspace {
    /// Runs `command` with `sh -c` in the root and reports its exit code (or that it was
    /// killed) and its output, stdout and stderr interleaved. Whatever it leaves running in its
    /// process group is killed when it ends. A non-zero exit is a result, not an error.
    pub async fn run(&self, command: &str, timeout_s: Option<u64>) -> Result<String, ToolError> {
        self.run_ended(command, timeout_s).await.map(|(_, text)| text)
    }

    /// As `run`, with how the command ended.
    pub(super) async fn run_ended(
        &self,
        command: &str,
        timeout_s: Option<u64>,
    ) -> Result<(Ended, String), ToolError> {
        self.run_in(command, timeout_s, self.cell.network).await
    }

    /// Runs the project's setup command: as `run`, with the network open and the longest
    /// timeout.
    pub async fn setup(&self, command: &str) -> Result<String, ToolError> {
        let ran = self.run_in(command, Some(MAX_TIMEOUT_S), Network::Open).await;
        ran.map(|(_, text)| text)
    }

    async fn run_in(
        &self,
        command: &str,
        timeout_s: Option<u64>,
        network: Network,
    ) -> Result<(Ended, String), ToolError> {
        if command.trim().is_empty() {
            return Err(ToolError::Failed("run needs a command.".into()));
        }
        let wanted = timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
        let limit = wanted.clamp(1, MAX_TIMEOUT_S);
        let ran = self.execute(command, limit, network).await?;
        let mut text = ran.ended.to_string();
        if wanted > MAX_TIMEOUT_S {
            text.push_str(&format!(" [timeout_s is at most {MAX_TIMEOUT_S}; used that]"));
        }
        text.push('\n');
        text.push_str(&ran.output);
        Ok((ran.ended, text))
    }

    /// Runs a project's check (`check_command`) for at most `timeout_s` seconds, with the
    /// project's network, as an agent's command runs: how it ended and its output's head and
    /// tail.
    pub async fn check(&self, command: &str, timeout_s: u64) -> Result<Ran, ToolError> {
        self.execute(command, timeout_s.max(1), self.cell.network).await
    }

    /// `sh -c command` in the sandbox for at most `limit` seconds.
    async fn execute(&self, command: &str, limit: u64, network: Network) -> Result<Ran, ToolError> {
        let env = environment(&self.cell.cache, &self.extra_env);
        // CPU time per process: as much as all cores could spend over the wall-clock limit.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cell = Cell { network, ..self.cell.clone() };
        let cmd = self.sandbox.command(&cell, command, env, limit * cores).await?;
        let spawned = spawn(cmd)
            .map_err(|e| ToolError::Failed(format!("could not start the command: {e}")))?;
        let (mut child, mut output) = spawned;
        let mut group = Group(child.id());
        let mut capture = Capture::default();
        let deadline = Instant::now() + Duration::from_secs(limit);
        let status = wait_reading(&mut child, &mut output, &mut capture, deadline).await;
        group.kill().await;
        let status = match status {
            Some(status) => Some(status),
            None => {
                // Killed with its group above; reap it.
                let _ = child.wait().await;
                None
            }
        };
        let drained = drain(&mut output, &mut capture).await;
        let ended = match status {
            Some(Ok(status)) => Ended::of(status),
            Some(Err(e)) => Ended::Unknown(format!("could not wait for the command: {e}")),
            None => Ended::TimedOut(limit),
        };
        let mut output = capture.text();
        if !drained {
            output.push_str(
                "\n[stopped reading: a process the command started outside its process group \
                 still holds the output open]",
            );
        }
        Ok(Ran { ended, output })
    }
}

/// A command that was run: how it ended, and its output (stdout and stderr interleaved, its
/// head and tail when long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub ended: Ended,
    pub output: String,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed {
        signal: i32,
    },
    /// Killed at the time limit, in seconds.
    TimedOut(u64),
    Unknown(String),
}

impl Ended {
    fn of(status: ExitStatus) -> Ended {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ended::Exited(code),
            (None, Some(signal)) => Ended::Killed { signal },
            (None, None) => Ended::Unknown(status.to_string()),
        }
    }

    /// Exit code 0.
    pub fn succeeded(&self) -> bool {
        *self == Ended::Exited(0)
    }

    /// The shell could not find or execute the command (exit codes 127 and 126).
    pub fn not_runnable(&self) -> bool {
        matches!(self, Ended::Exited(126 | 127))
    }
}

/// As a result starts: `[exit code 3]`, `[killed after 120 s: timed out]`.
impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "[exit code {code}]"),
            Ended::Killed { signal } => write!(f, "[killed by signal {signal}]"),
            Ended::TimedOut(limit) => write!(f, "[killed after {limit} s: timed out]"),
            Ended::Unknown(what) => write!(f, "[{what}]"),
        }
    }
}

fn spawn(mut cmd: tokio::process::Command) -> std::io::Result<(Child, pipe::Receiver)> {
    // One pipe for stdout and stderr keeps them in the order they were written.
    let (reader, writer) = std::io::pipe()?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    // Our copies of the write end must close, or the pipe never reaches end-of-file.
    drop(cmd);
    let output = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    Ok((child, output))
}

/// The whole environment a command gets. Nothing of Loom's own passes except `PATH` and what
/// the operator listed (`extra`), so the gateway key, `LOOM_*` settings and tool variables
/// such as `CARGO_*` stay out.
fn environment(home: &Path, extra: &[(String, String)]) -> Vec<(String, OsString)> {
    let path = std::env::var_os("PATH").filter(|p| !p.is_empty());
    let mut env: Vec<(String, OsString)> = vec![
        ("PATH".into(), path.unwrap_or_else(|| DEFAULT_PATH.into())),
        ("HOME".into(), home.as_os_str().to_owned()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "dumb".into()),
        // Git must fail rather than wait for an answer that will never come.
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_ASKPASS".into(), "true".into()),
        ("GIT_SSH_COMMAND".into(), "ssh -o BatchMode=yes".into()),
        ("GIT_EDITOR".into(), "true".into()),
        ("GIT_PAGER".into(), "cat".into()),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.into()));
    }
    env
}

/// Reads output until the command exits (Some) or the deadline passes (None).
async fn wait_reading(
    child: &mut Child,
    output: &mut pipe::Receiver,
    capture: &mut Capture,
    deadline: Instant,
) -> Option<std::io::Result<ExitStatus>> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut open = true;
    loop {
        tokio::select! {
            status = child.wait() => return Some(status),
            read = output.read(&mut buf), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => capture.push(&buf[..n]),
            },
            () = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

/// Reads what is left; false when something still held the pipe open after the grace period.
async fn drain(output: &mut pipe::Receiver, capture: &mut Capture) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + DRAIN_GRACE;
    loop {
        match tokio::time::timeout_at(deadline, output.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(n)) => capture.push(&buf[..n]),
            Err(_) => return false,
        }
    }
}

/// The command's process group, killed explicitly when the command ends and, should the run
/// be cancelled half-way, when this is dropped.
struct Group(Option<u32>);

impl Group {
    async fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = tokio::process::Command::from(kill_command(pgid)).status().await;
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // Only on cancellation; a short blocking call is the price of not leaking processes.
            let _ = kill_command(pgid).status();
        }
    }
}

/// `kill` through the shell's builtin: std has no safe call that signals a process group, and
/// `unsafe` is forbidden in this crate.
fn kill_command(pgid: u32) -> std::process::Command {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("kill -s KILL -- -{pgid} 2>/dev/null"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The first `OUTPUT_HEAD` and last `OUTPUT_TAIL` bytes of the output, and how much there was.
#[derive(Default)]
struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: usize,
}

impl Capture {
    fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len();
        let room = OUTPUT_HEAD - self.head.len();
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        bytes = rest;
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(OUTPUT_TAIL);
        self.tail.drain(..excess);
    }

    fn text(&self) -> String {
        if self.total == 0 {
            return "(no output)".into();
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let omitted = self.total - self.head.len() - tail.len();
        if omitted == 0 {
            return String::from_utf8_lossy(&[self.head.as_slice(), &tail].concat()).into_owned();
        }
        // Cut at a line break near each edge, so that no line is shown in part.
        let near = OUTPUT_HEAD.min(OUTPUT_TAIL) / 4;
        let head_end = match self.head.iter().rposition(|&b| b == b'\n') {
            Some(i) if self.head.len() - i <= near => i + 1,
            _ => self.head.len(),
        };
        let tail_start = match tail.iter().position(|&b| b == b'\n') {
            Some(i) if i < near => i + 1,
            _ => 0,
        };
        let omitted = omitted + (self.head.len() - head_end) + tail_start;
        format!(
            "{}[... {omitted} bytes of output left out ...]\n{}",
            String::from_utf8_lossy(&self.head[..head_end]),
            String::from_utf8_lossy(&tail[tail_start..])
        )
    }
}
