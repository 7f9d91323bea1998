//! Bead worktrees: `<data_dir>/worktrees/<project-id>/<bead-id>` on branch `loom/<bead-id>`,
//! reused while valid, rebuilt when broken, removed when the bead is finished.

use std::path::{Path, PathBuf};

use git2::{BranchType, Repository, WorktreeAddOptions, WorktreePruneOptions};
use tracing::{info, instrument, warn};

use super::clone::ref_target;
use super::error::{GitContext, GitError, Result};
use super::names::{check_branch, check_id};
use super::own_config::OwnConfig;
use super::{ProjectRepo, Repos, Worktree, blocking, open_clone, remove_path};

/// A bead's worktree as the blocking side needs it, its names checked.
struct Target {
    config: OwnConfig,
    clone_path: PathBuf,
    path: PathBuf,
    project_id: String,
    /// The project branch the bead's branch is cut from and merged into.
    base: String,
    bead: String,
}

impl Repos {
    fn target(&self, project: &ProjectRepo, bead_id: &str) -> Result<Target> {
        check_id("project id", &project.id)?;
        check_id("bead id", bead_id)?;
        check_branch(&project.branch)?;
        Ok(Target {
            config: self.git_config(),
            clone_path: self.clone_path(&project.id),
            path: self.worktree_path(&project.id, bead_id),
            project_id: project.id.clone(),
            base: project.branch.clone(),
            bead: bead_id.to_owned(),
        })
    }

    /// The bead's worktree, created from the project branch when it does not exist yet. A
    /// valid one is reused as it is, uncommitted changes included, so a resumed run carries
    /// on where it stopped. A broken one (a plain directory, a missing `.git` file, admin data
    /// gone from the clone) is removed and created again; an existing `loom/<bead-id>` branch
    /// is checked out, not reset. One whose creation or removal never finished (the process
    /// died in it) is broken too, however valid it looks: see [`Unfinished`].
    #[instrument(skip_all, fields(project.id = %project.id, bead.id = bead_id))]
    pub async fn worktree(&self, project: &ProjectRepo, bead_id: &str) -> Result<Worktree> {
        let Target { config, clone_path, path, project_id, base, bead } =
            self.target(project, bead_id)?;
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let worktree = Worktree { path, branch: bead_branch(&bead) };
            let unfinished = Unfinished::of(&worktree.path);
            if !unfinished.is_marked() && is_valid(&config, &clone, &bead, &worktree.path) {
                return Ok(worktree);
            }
            unfinished.mark()?;
            discard(&clone, &bead, &worktree.path)?;
            create(&clone, &bead, &worktree, &base)?;
            unfinished.clear()?;
            info!(path = %worktree.path.display(), "created the bead's worktree");
            Ok(worktree)
        })
        .await
    }

    /// Removes the bead's worktree and its entry in the clone; never an error when it is
    /// already gone. Branch `loom/<bead-id>` is deleted only when the project branch
    /// contains it: unmerged work stays reachable for a person to look at.
    #[instrument(skip_all, fields(project.id = %project.id, bead.id = bead_id))]
    pub async fn remove_worktree(&self, project: &ProjectRepo, bead_id: &str) -> Result<()> {
        let Target { config, clone_path, path, project_id, base, bead } =
            self.target(project, bead_id)?;
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let unfinished = Unfinished::of(&path);
            unfinished.mark()?;
            remove_path(&path)?;
            unfinished.clear()?;
            let clone = match open_clone(&config, &clone_path, &project_id) {
                Ok(clone) => clone,
                Err(GitError::NotCloned(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            prune_entry(&clone, &bead)?;
            delete_if_merged(&clone, &bead_branch(&bead), &base)
        })
        .await
    }
}

/// The mark of a worktree whose files are being written or deleted: a file beside it,
/// `<bead-id>.unfinished`, made before and removed after. A process killed while libgit2
/// checks the files out, or while they are deleted, leaves a worktree that passes every
/// validity check with some files missing; the next run would commit their deletion into
/// the project branch. A marked worktree is rebuilt instead.
struct Unfinished(PathBuf);

impl Unfinished {
    fn of(worktree: &Path) -> Unfinished {
        let mut name = worktree.file_name().unwrap_or_default().to_os_string();
        name.push(".unfinished");
        Unfinished(worktree.with_file_name(name))
    }

    fn is_marked(&self) -> bool {
        std::fs::symlink_metadata(&self.0).is_ok()
    }

    fn mark(&self) -> Result<()> {
        if let Some(parent) = self.0.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| GitError::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&self.0, b"")
            .map_err(|e| GitError::io(format!("writing {}", self.0.display()), e))
    }

    fn clear(&self) -> Result<()> {
        remove_path(&self.0)
    }
}

pub(crate) fn bead_branch(bead_id: &str) -> String {
    format!("loom/{bead_id}")
}

/// A worktree of this clone, registered under `name`, checked out at `path`.
pub(super) fn is_valid(config: &OwnConfig, clone: &Repository, name: &str, path: &Path) -> bool {
    let Ok(entry) = clone.find_worktree(name) else { return false };
    if entry.validate().is_err() || !same_dir(entry.path(), path) {
        return false;
    }
    match config.open(path) {
        Ok(repo) => repo.is_worktree() && same_dir(repo.commondir(), clone.path()),
        Err(_) => false,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Clears whatever is left of a broken worktree: its directory and the clone's entry.
pub(super) fn discard(clone: &Repository, name: &str, path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        warn!(path = %path.display(), "the worktree is broken: recreating it");
        remove_path(path)?;
    }
    prune_entry(clone, name)
}

/// Drops the clone's admin entry for the worktree (`<clone>/worktrees/<name>`).
fn prune_entry(clone: &Repository, name: &str) -> Result<()> {
    if let Ok(entry) = clone.find_worktree(name) {
        let mut options = WorktreePruneOptions::new();
        options.valid(true).locked(true);
        if let Err(e) = entry.prune(Some(&mut options)) {
            warn!(error = %e.message(), "libgit2 could not prune the worktree: removing its entry");
        }
    }
    // libgit2 cannot open an entry whose files are half gone; remove what is left directly.
    remove_path(&clone.path().join("worktrees").join(name))
}

pub(super) fn create(
    clone: &Repository,
    name: &str,
    worktree: &Worktree,
    base: &str,
) -> Result<()> {
    let full = format!("refs/heads/{}", worktree.branch);
    adopt_published(clone, &worktree.branch)?;
    if ref_target(clone, &full)?.is_none() {
        let base_id = ref_target(clone, &format!("refs/heads/{base}"))?.ok_or_else(|| {
            GitError::BranchNotFound { branch: base.to_owned(), repo: "Loom's clone".into() }
        })?;
        let commit = clone.find_commit(base_id).ctx("reading the project branch")?;
        clone.branch(&worktree.branch, &commit, false).ctx("creating the bead branch")?;
    }
    let reference = clone.find_reference(&full).ctx("reading the bead branch")?;
    if let Some(parent) = worktree.path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| GitError::io(format!("creating {}", parent.display()), e))?;
    }
    let mut options = WorktreeAddOptions::new();
    options.reference(Some(&reference));
    clone
        .worktree(name, &worktree.path, Some(&options))
        .with_ctx(|| format!("adding the worktree at {}", worktree.path.display()))?;
    Ok(())
}

/// Takes origin's `loom/<bead-id>` (published by whichever replica last finished the bead)
/// as the bead's branch when Loom's is missing, behind it, or diverged from it (a run that
/// died before publishing left commits that never landed); keeps Loom's when it is ahead
/// (commits of an attempt that failed here, which the next attempt builds on).
fn adopt_published(clone: &Repository, branch: &str) -> Result<()> {
    let Some(theirs) = ref_target(clone, &format!("refs/remotes/origin/{branch}"))? else {
        return Ok(());
    };
    let full = format!("refs/heads/{branch}");
    if let Some(ours) = ref_target(clone, &full)?
        && (ours == theirs || clone.graph_descendant_of(ours, theirs).ctx("comparing branches")?)
    {
        return Ok(());
    }
    clone.reference(&full, theirs, true, "loom: the bead's published work").ctx("taking it")?;
    info!(branch, "took the bead's branch as origin has it");
    Ok(())
}

fn delete_if_merged(clone: &Repository, branch: &str, base: &str) -> Result<()> {
    let Some(tip) = ref_target(clone, &format!("refs/heads/{branch}"))? else { return Ok(()) };
    let Some(base_id) = ref_target(clone, &format!("refs/heads/{base}"))? else { return Ok(()) };
    let merged =
        tip == base_id || clone.graph_descendant_of(base_id, tip).ctx("comparing branches")?;
    if !merged {
        info!(branch, "kept the bead branch: the project branch does not contain it");
        return Ok(());
    }
    let mut local = clone.find_branch(branch, BranchType::Local).ctx("reading the bead branch")?;
    local.delete().ctx("deleting the merged bead branch")
}
