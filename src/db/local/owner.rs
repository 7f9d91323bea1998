//! Which Loom process started the private cluster: `<data dir>/postgres-owner` holds its pid
//! (and, where `/proc` tells it, the process's start time, so a recycled pid is not mistaken
//! for it). A start that finds the server running reads it to tell a server in use by a live
//! Loom (left alone) from one orphaned by a Loom that never stopped (`kill -9`, a crash),
//! which it adopts and stops at its own shutdown.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// The owner file's name in the data dir.
pub const FILE: &str = "postgres-owner";

/// A process, as recorded in the owner file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    /// Clock ticks after boot at which it started (`/proc/<pid>/stat`), when known.
    started: Option<u64>,
}

impl Owner {
    /// This process.
    pub fn me() -> Owner {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        Owner { pid, started: start_time(pid) }
    }

    /// Whether the recorded process still runs (and is the same one, when its start time was
    /// recorded and can be read).
    pub fn is_alive(&self) -> bool {
        use nix::errno::Errno;
        let pid = nix::unistd::Pid::from_raw(self.pid);
        match nix::sys::signal::kill(pid, None) {
            Ok(()) | Err(Errno::EPERM) => {}
            Err(_) => return false,
        }
        match (self.started, start_time(self.pid)) {
            (Some(recorded), Some(now)) => recorded == now,
            _ => true,
        }
    }

    fn parse(text: &str) -> Option<Owner> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok().filter(|pid| *pid > 0)?;
        let started = words.next().and_then(|w| w.parse().ok());
        Some(Owner { pid, started })
    }

    fn render(&self) -> String {
        match self.started {
            Some(started) => format!("{} {started}\n", self.pid),
            None => format!("{}\n", self.pid),
        }
    }
}

/// Records this process as the cluster's owner (0600, Loom's user's).
pub fn record(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(FILE);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(Owner::me().render().as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The recorded owner; None when there is no (readable) record.
pub fn read(data_dir: &Path) -> Option<Owner> {
    Owner::parse(&std::fs::read_to_string(data_dir.join(FILE)).ok()?)
}

/// Forgets the owner once its server is stopped.
pub fn clear(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(FILE));
}

/// Field 22 of `/proc/<pid>/stat`, read after the command name (which may hold spaces and
/// parentheses).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name come field 3 (state) onwards: field 22 is the 20th of them.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not_it() {
        let me = Owner::me();
        assert!(me.started.is_some(), "/proc gives this process's start time");
        assert!(me.is_alive());
        assert_eq!(Owner::parse(&me.render()), Some(me));
        let recycled = Owner { started: me.started.map(|s| s + 1), ..me };
        assert!(!recycled.is_alive(), "same pid, another start time: another process");
        let unknown_start = Owner { started: None, ..me };
        assert!(unknown_start.is_alive(), "without a start time the pid decides");
    }

    #[test]
    fn a_finished_process_is_dead() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = i32::try_from(child.id()).expect("a pid fits in i32");
        child.wait().expect("wait for true");
        assert!(!Owner { pid, started: None }.is_alive());
    }

    #[test]
    fn a_missing_or_garbled_record_names_nobody() {
        assert_eq!(Owner::parse(""), None);
        assert_eq!(Owner::parse("abc 12"), None);
        assert_eq!(Owner::parse("-4"), None);
        assert_eq!(Owner::parse("42"), Some(Owner { pid: 42, started: None }));
    }
}
