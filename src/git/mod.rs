//! All of Loom's git work: its own clone of each project, one worktree per bead, commits,
//! merges and pushes. This is the only module that touches `git2`.
//!
//! git2 (libgit2) is blocking, so every public method is `async` and runs its git work in
//! `tokio::task::spawn_blocking`. Operations on one project's clone (ensure, worktree,
//! remove_worktree, merge, push) take a per-project lock so that two beads finishing at once
//! cannot interleave; branch updates are compare-and-swap as well.
//!
//! Layout under the data dir:
//! - `repos/<project-id>`: Loom's clone, **bare**. Nothing is ever checked out there, so a
//!   merge only has to move the project branch's ref, and no working tree can go stale.
//! - `worktrees/<project-id>/<bead-id>`: a linked worktree of that clone on `loom/<bead-id>`.
//!
//! Rules worth knowing:
//! - Nothing is ever forced or rewritten. When origin's branch has moved on while Loom holds
//!   merges it has not pushed, `ensure` (and `push`, once origin refuses a non-fast-forward)
//!   merges origin's branch into Loom's with a merge commit by Loom; when that merge
//!   conflicts, Loom's branch stays as it was and the caller is told the paths.
//! - `remove_worktree` deletes `loom/<bead-id>` only when the project branch contains it.
//! - The merge queue (`train.rs`) builds a train of bead commits at `refs/loom/train`,
//!   beside the project branch, and lands exactly that commit: a push that must be a
//!   fast-forward of the tip the train was built on (else nothing lands and the train is
//!   built again), after which Loom's branch moves there too.
//! - `push` never moves a branch that a local origin has checked out (see [`Repos::push`]).
//! - Remotes: local paths, `file://`, `git://`, `http(s)://`, `ssh://` and `user@host:path`.
//!   Fetches and pushes go to the URL in the project's record, never to a URL read from the
//!   clone's config (which an agent's commands can write). Credentials come from the URL,
//!   the ssh-agent, `~/.ssh/id_ed25519` / `id_rsa` or a credential helper in Loom's own git
//!   config (see `auth.rs`); an ssh host must be in `~/.ssh/known_hosts`. Errors and logs
//!   show URLs through [`redact_url`], which hides passwords and tokens.
//! - A process killed mid-write leaves libgit2's `*.lock` files behind; `loom serve` removes
//!   them from its clones as it starts, holding the data dir alone (`recover.rs`).
//! - libgit2 reads no git configuration but Loom's own file, `<data dir>/gitconfig`: see
//!   `own_config.rs` for why and how.

// clippy.toml forbids git2's entry types in the rest of the crate because they block; this
// module is where they are meant to be used, always inside `spawn_blocking`.
#![allow(clippy::disallowed_types)]

mod auth;
mod clone;
mod commit;
mod error;
mod merge;
mod names;
mod own_config;
mod probe;
mod push;
mod read;
mod recover;
mod train;
mod upstream;
mod worktree;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use error::{GitError, Result};
pub use names::{has_redacted_credentials, missing_local_repository, redact as redact_url};
pub use push::Published;
pub use train::{CHECK_WORKTREE, Car, Landed, Train, Waiting};

use own_config::OwnConfig;

/// The name and email Loom commits and merges under.
const LOOM_NAME: &str = "Loom";
const LOOM_EMAIL: &str = "loom@localhost";

/// Where a project's code comes from and which branch Loom works on.
#[derive(Clone, PartialEq, Eq)]
pub struct ProjectRepo {
    pub id: String,
    /// A local path or a git URL (`https://`, `ssh://`, `git@host:path`, `file://`).
    pub repo: String,
    pub branch: String,
}

/// Shows the URL redacted: a project's repository is logged with `?` now and then.
impl std::fmt::Debug for ProjectRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectRepo")
            .field("id", &self.id)
            .field("repo", &redact_url(&self.repo))
            .field("branch", &self.branch)
            .finish()
    }
}

/// A bead's checked-out worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    pub path: PathBuf,
    /// `loom/<bead-id>`
    pub branch: String,
}

/// A worktree's git metadata on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitDirs {
    /// Loom's bare clone of the project.
    pub clone: PathBuf,
    /// The worktree's entry in it (`<clone>/worktrees/<name>`).
    pub admin: PathBuf,
}

/// A commit author or committer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
}

impl Signature {
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Signature { name: name.into(), email: email.into() }
    }

    /// The identity Loom's own commits (merges, and the committer of agents' commits) carry.
    pub fn loom() -> Self {
        Signature::new(LOOM_NAME, LOOM_EMAIL)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The project branch already contains the bead's branch.
    UpToDate,
    FastForward {
        sha: String,
    },
    Merged {
        sha: String,
    },
    /// Nothing changed: the project branch is where it was.
    Conflict {
        paths: Vec<String>,
    },
}

/// What `ensure` found on origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// Loom's branch has everything origin's has: freshly cloned, unchanged, fast-forwarded,
    /// or ahead with merges not pushed yet.
    Ready,
    /// Origin's branch had diverged from Loom's; Loom merged it in with the merge commit
    /// `sha` (which the next push sends).
    MergedUpstream { sha: String },
    /// Origin's branch has diverged and merging it conflicts in `paths`: Loom's branch is
    /// unchanged and work can go on, but pushes fail until a person merges the two.
    UpstreamConflict { paths: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The project branch on origin is now at `sha` (it may already have been there). When
    /// origin had moved on, `sha` is Loom's merge of origin's branch, not what was merged
    /// last.
    Pushed { sha: String },
    /// Pushing was not safe and was not attempted.
    Skipped { reason: String },
}

/// One commit, as read helpers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    /// The full message, trailers included.
    pub message: String,
    pub author: Signature,
    pub committer: Signature,
    pub parents: Vec<String>,
    /// Paths changed against the first parent (every path for a root commit).
    pub files: Vec<String>,
    /// `Key: value` trailers at the end of the message, in order.
    pub trailers: Vec<(String, String)>,
}

/// A commit and what it changed, as a unified diff against its first parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPatch {
    pub info: CommitInfo,
    pub patch: String,
    /// The patch was cut at the size asked for.
    pub truncated: bool,
}

/// What a bead's branch changes: a unified diff from where it left the project branch (their
/// merge base) to its tip, for a reviewer to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeadDiff {
    /// The branch's tip.
    pub sha: String,
    /// Whole lines of the patch, within the limit asked for.
    pub patch: String,
    /// Files changed.
    pub files: usize,
    /// What the limit left out of the patch (both zero when it is whole).
    pub omitted_bytes: usize,
    pub omitted_lines: usize,
}

impl BeadDiff {
    pub fn truncated(&self) -> bool {
        self.omitted_bytes > 0
    }
}

/// How much of a patch to keep: it is cut before the line that would pass either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchLimit {
    pub bytes: usize,
    pub lines: usize,
}

/// Loom's clones and worktrees under one data dir. Cheap to clone.
#[derive(Clone)]
pub struct Repos {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Repos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repos").field("data_dir", &self.inner.data_dir).finish_non_exhaustive()
    }
}

struct Inner {
    data_dir: PathBuf,
    git_config: OwnConfig,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Repos {
    pub fn new(data_dir: PathBuf) -> Self {
        // Worktrees record absolute paths to their clone (and back), so a relative data dir
        // (the default is `./.loom`) must not depend on the process's directory later.
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        let git_config = OwnConfig::in_data_dir(&data_dir);
        Repos { inner: Arc::new(Inner { data_dir, git_config, locks: Mutex::new(HashMap::new()) }) }
    }

    /// The git configuration every repository Loom opens reads instead of its own.
    fn git_config(&self) -> OwnConfig {
        self.inner.git_config.clone()
    }

    fn clone_path(&self, project_id: &str) -> PathBuf {
        self.inner.data_dir.join("repos").join(project_id)
    }

    /// Where a worktree's git metadata is: the project's clone and, in it, the worktree's
    /// own entry (what an agent's sandbox shows it, read-only).
    pub fn git_dirs(&self, project_id: &str, worktree: &str) -> GitDirs {
        let clone = self.clone_path(project_id);
        GitDirs { admin: clone.join("worktrees").join(worktree), clone }
    }

    fn worktree_path(&self, project_id: &str, bead_id: &str) -> PathBuf {
        self.inner.data_dir.join("worktrees").join(project_id).join(bead_id)
    }

    /// Serialises the operations on one project's clone.
    async fn lock(&self, project_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks =
                self.inner.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(project_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// Runs blocking git work off the async threads, inside the caller's tracing span.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f)).await?
}

/// Loom's clone of a project, for the operations that need it to exist already.
fn open_clone(config: &OwnConfig, path: &Path, project_id: &str) -> Result<git2::Repository> {
    match config.open(path) {
        Ok(repo) if repo.is_bare() => Ok(repo),
        _ => Err(GitError::NotCloned(project_id.to_owned())),
    }
}

/// Removes a file or directory tree; a path that is already gone is fine.
fn remove_path(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GitError::io(format!("removing {}", path.display()), e)),
    }
}
