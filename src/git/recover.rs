//! What a process killed in the middle of a git operation leaves in Loom's clones: the
//! `*.lock` files libgit2 writes a ref, the index or the config through and renames into
//! place. A lock that outlives its writer wedges the clone (every later fetch or commit of
//! that ref fails with "failed to lock file"), so a starting `loom serve`, which holds the
//! data dir alone (`data_dir::claim`) and has not touched a clone yet, removes them.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::error::{GitError, Result};
use super::{Repos, blocking};

impl Repos {
    /// Removes every `*.lock` file in Loom's clones (not in their object stores, where
    /// libgit2 keeps none) and returns their paths. Only for a process that holds the data
    /// dir alone and before it touches a clone: a lock of a live operation is not stale.
    pub async fn clear_stale_locks(&self) -> Result<Vec<PathBuf>> {
        let repos = self.inner.data_dir.join("repos");
        blocking(move || {
            let mut removed = Vec::new();
            for clone in entries(&repos)? {
                // `.<id>.partial`: a clone a crash interrupted, removed by its next `ensure`.
                let hidden =
                    clone.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
                // Not through a link: only what is in the data dir is Loom's to clear.
                let dir = std::fs::symlink_metadata(&clone).is_ok_and(|m| m.is_dir());
                if dir && !hidden {
                    sweep(&clone, &clone, &mut removed)?;
                }
            }
            for path in &removed {
                warn!(path = %path.display(), "removed a git lock file a stopped process left");
            }
            Ok(removed)
        })
        .await
    }
}

/// Removes the `*.lock` files under `dir`, not following links, skipping the clone's
/// `objects`.
fn sweep(clone: &Path, dir: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    for path in entries(dir)? {
        let kind = std::fs::symlink_metadata(&path)
            .map_err(|e| GitError::io(format!("reading {}", path.display()), e))?
            .file_type();
        if kind.is_dir() {
            if path != clone.join("objects") {
                sweep(clone, &path, removed)?;
            }
        } else if path.extension().is_some_and(|e| e == "lock") {
            std::fs::remove_file(&path)
                .map_err(|e| GitError::io(format!("removing {}", path.display()), e))?;
            removed.push(path);
        }
    }
    Ok(())
}

/// The entries of `dir`; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(GitError::io(format!("reading {}", dir.display()), e)),
    };
    read.map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| GitError::io(format!("reading {}", dir.display()), e))
}
