//! Loom's data directory (`LOOM_DATA_DIR`): clones, worktrees, agents' homes, Loom's git
//! config, the private database and its password. None of it is for other local users.
//!
//! [`secure`] runs at start, before anything is put there: the data dir and each entry in it
//! lose every group and other bit (what an older Loom left looser is tightened), and the
//! subdirectories Loom fills ([`SUBDIRS`]) are made 0700 before anything goes in them.
//! Deeper entries keep the modes they are made with: a directory no one else can enter hides
//! everything below it.
//!
//! There is no process-wide umask of 077 on purpose: as root, agents' commands run as an
//! unprivileged user in a sandbox that binds the clone (read-only) and the worktree at their
//! own paths (`workbench::sandbox`), so the parents' modes do not matter to them but the
//! modes of what is bound do; libgit2 must keep making the clone's files readable to them.
//!
//! One exception, when Loom runs as root with the embedded database: the server runs as
//! `postgres` (it refuses root) and must reach its own directory, `<data dir>/postgres`,
//! which is that user's (see `db::local`). The data dir is then 0711: others may pass
//! through it but not list it, and every entry in it but `postgres` is root's, 0700 or 0600.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// The entry of the data dir that belongs to the database server's user when Loom runs as
/// root with the embedded database.
pub const POSTGRES: &str = "postgres";

/// The subdirectories Loom fills, made 0700 before their owners create anything in them:
/// the clones and the worktrees (`git::Repos`) and agents' homes (the executor's and the
/// chat's workbench). With the data dir 0711, an entry that others could enter by its name
/// would be open to them.
pub const SUBDIRS: [&str; 3] = ["repos", "worktrees", "homes"];

/// Whether the embedded database's server runs as another user that has to pass through
/// the data dir: with the embedded database, as root (see `db::local`).
pub fn server_user_traverses(embedded: bool) -> bool {
    embedded && nix::unistd::geteuid().is_root()
}

/// The data dir's mode: 0711 when the embedded database's server, running as another user,
/// has to pass through it (`server_user_traverses`), else 0700.
pub fn dir_mode(server_user_traverses: bool) -> u32 {
    if server_user_traverses { 0o711 } else { 0o700 }
}

/// Creates the data dir and [`SUBDIRS`] if needed, and takes group and other access away
/// from the data dir and its entries (the data dir keeps 0711 when `server_user_traverses`;
/// `postgres` is then left to `db::local`). Logs once, at info, what it changed.
pub fn secure(dir: &Path, server_user_traverses: bool) -> anyhow::Result<()> {
    // Parents made here keep the usual modes: the database's user may have to pass them.
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for sub in SUBDIRS {
        let path = dir.join(sub);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("creating {}", path.display()));
            }
            _ => {}
        }
    }
    let mut changed = Vec::new();
    let want = dir_mode(server_user_traverses);
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != want {
        set_mode(dir, want)?;
        changed.push(format!("{}: {mode:04o} -> {want:04o}", dir.display()));
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let owned_by_the_server = server_user_traverses && entry.file_name() == POSTGRES;
        // A link's own mode means nothing, and chmod would follow it out of the data dir.
        if meta.file_type().is_symlink() || owned_by_the_server {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            set_mode(&entry.path(), mode & !0o077)?;
            changed.push(format!(
                "{}: {mode:04o} -> {:04o}",
                entry.path().display(),
                mode & !0o077
            ));
        }
    }
    if !changed.is_empty() {
        tracing::info!(
            changed = ?changed,
            "took group and other access away from the data dir: it is Loom's user's alone"
        );
    }
    Ok(())
}

/// The file in the data dir whose lock says a `loom serve` is using it.
pub const IN_USE: &str = "in-use.lock";

/// A process's hold on its data dir, until it is dropped (or the process ends, however it
/// ends: the lock is the kernel's).
#[derive(Debug)]
pub struct Claim {
    _file: std::fs::File,
}

/// Takes the data dir for this process alone, or says which other process has it. Two
/// processes on one data dir would work in each other's clones and worktrees (and a starting
/// one would remove the other's git locks as stale): each replica needs a data dir of its
/// own.
pub fn claim(dir: &Path) -> anyhow::Result<Claim> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(IN_USE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Claim { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Loom process is using the data directory {}: give each replica a data \
             directory of its own (LOOM_DATA_DIR)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Sets `path`'s permission bits.
pub fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting permissions on {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn a_loose_data_dir_and_its_entries_are_tightened_and_its_subdirectories_made_private() {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        for dir in ["repos", "worktrees/web/b1"] {
            std::fs::create_dir_all(data.join(dir)).expect("mkdir");
        }
        std::fs::write(data.join("gitconfig"), "").expect("write");
        for (path, m) in [("", 0o755), ("repos", 0o775), ("worktrees", 0o750), ("gitconfig", 0o644)]
        {
            set_mode(&data.join(path), m).expect("chmod");
        }
        std::os::unix::fs::symlink("/etc", data.join("link")).expect("symlink");

        secure(&data, false).expect("secure");

        assert_eq!(mode(&data), 0o700);
        for (path, m) in [("repos", 0o700), ("homes", 0o700), ("worktrees", 0o700)] {
            assert_eq!(mode(&data.join(path)), m, "{path}");
        }
        assert_eq!(mode(&data.join("gitconfig")), 0o600);
        assert_ne!(mode(Path::new("/etc")) & 0o005, 0, "a link is not followed");
        assert_eq!(mode(&data.join("worktrees/web")), 0o755, "deeper entries are left alone");
    }

    #[test]
    fn a_data_dir_is_claimed_by_one_process_at_a_time() {
        let tmp = tempfile::tempdir().expect("tmp");
        let first = claim(tmp.path()).expect("the first claim");
        assert_eq!(mode(&tmp.path().join(IN_USE)), 0o600);

        let second = claim(tmp.path()).expect_err("a second claim").to_string();
        assert!(second.contains("another Loom process is using the data directory"), "{second}");
        assert!(second.contains("LOOM_DATA_DIR"), "{second}");

        drop(first);
        claim(tmp.path()).expect("claimed again once the first is dropped");
    }

    #[test]
    fn with_the_database_user_passing_through_the_data_dir_is_0711_and_postgres_is_left_alone() {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join(POSTGRES)).expect("mkdir");
        std::fs::create_dir_all(data.join("repos")).expect("mkdir");
        set_mode(&data.join(POSTGRES), 0o750).expect("chmod");
        set_mode(&data.join("repos"), 0o755).expect("chmod");

        secure(&data, true).expect("secure");

        assert_eq!(mode(&data), 0o711);
        assert_eq!(mode(&data.join(POSTGRES)), 0o750, "db::local's to set");
        assert_eq!(mode(&data.join("repos")), 0o700);
    }
}
