//! `ensure`: Loom's bare clone of a project, created on first use and brought up to date
//! with origin afterwards without ever dropping Loom's own merges.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use tracing::{info, instrument, warn};

use super::error::{GitContext, GitError, Result};
use super::names::{Source, check_branch, check_id, redact};
use super::own_config::OwnConfig;
use super::push::{LocalOrigin, local_origin};
use super::train::follow;
use super::upstream::{fetch_origin, integrate};
use super::{
    EnsureOutcome, LOOM_EMAIL, LOOM_NAME, MergeOutcome, ProjectRepo, Repos, blocking, remove_path,
};

impl Repos {
    /// Makes sure `<data_dir>/repos/<id>` is a bare clone of the project with its branch:
    /// clones it when absent (or when a crash left something that is not a usable clone),
    /// otherwise fetches origin and points Loom's branch at origin's: work lands only by
    /// being pushed (the landing queue), so commits Loom's branch has and origin's lacks are
    /// merges a replica never pushed, dropped with a warning. When origin is a local
    /// repository with the branch checked out (work lands in Loom's clone), origin's branch
    /// is brought into Loom's instead: a fast-forward when Loom's has nothing of its own, a
    /// merge commit by Loom when the two have diverged; when that merge conflicts Loom's
    /// branch is kept as it was and the outcome says so. Origin is always the project's
    /// `repo`, whatever the clone's config says.
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn ensure(&self, project: &ProjectRepo) -> Result<EnsureOutcome> {
        check_id("project id", &project.id)?;
        check_branch(&project.branch)?;
        let path = self.clone_path(&project.id);
        let (repo, branch, config) =
            (project.repo.clone(), project.branch.clone(), self.git_config());
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let url = Source::parse(&repo)?.url();
            match open_usable(&config, &path) {
                Some(clone) => {
                    forget_origin(&path)?;
                    fetch_origin(&clone, &url, &config, "fetching")?;
                    let lands_by_push =
                        !matches!(local_origin(&config, &url, &branch), LocalOrigin::CheckedOut(_));
                    match ref_target(&clone, &format!("refs/remotes/origin/{branch}"))? {
                        // Work lands only by being pushed: what Loom's branch has that
                        // origin's lacks never landed, and new worktrees must not build on it.
                        Some(theirs) if lands_by_push => {
                            follow(&clone, &branch, theirs)?;
                            Ok(EnsureOutcome::Ready)
                        }
                        _ => settle_branch(&clone, &url, &branch),
                    }
                }
                None => fresh_clone(&config, &path, &url, &branch),
            }
        })
        .await
    }
}

/// The clone at `path` when it is one Loom can use: a bare repository. (Its `origin` in
/// the config is not needed: fetches go to the project's URL.)
fn open_usable(config: &OwnConfig, path: &Path) -> Option<Repository> {
    let repo = config.open(path).ok()?;
    repo.is_bare().then_some(repo)
}

/// Clones into a staging directory beside the final one and renames it into place, so a
/// crash mid-clone leaves nothing at the final path that looks like a clone.
fn fresh_clone(config: &OwnConfig, path: &Path, url: &str, branch: &str) -> Result<EnsureOutcome> {
    if path.exists() {
        warn!(path = %path.display(), "not a usable clone (left by a crash?): cloning again");
        remove_path(path)?;
    }
    let staging = staging_path(path);
    remove_path(&staging)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| GitError::io(format!("creating {}", parent.display()), e))?;
    }
    if let Err(e) = clone_into(config, &staging, url, branch) {
        // Best effort: the next attempt removes a leftover staging directory anyway.
        let _ = remove_path(&staging);
        return Err(e);
    }
    std::fs::rename(&staging, path)
        .map_err(|e| GitError::io(format!("moving the new clone to {}", path.display()), e))?;
    info!(url = %redact(url), "cloned the project");
    Ok(EnsureOutcome::Ready)
}

/// Drops `remote.origin.*` from the clone's config file. Clones made by Loom before it
/// fetched from the project's URL have origin there, URL and credentials included, where a
/// `git remote -v` in a bead's worktree shows them to the agent. Nothing reads it now.
fn forget_origin(clone_path: &Path) -> Result<()> {
    let file = clone_path.join("config");
    let mut config = git2::Config::open(&file).ctx("reading the clone's config")?;
    let mut names = Vec::new();
    config
        .entries(Some(r"^remote\.origin\."))
        .and_then(|entries| entries.for_each(|entry| names.extend(entry.name().map(String::from))))
        .ctx("reading the clone's config")?;
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    names.dedup();
    for name in &names {
        config.remove_multivar(name, ".*").ctx("removing origin from the clone's config")?;
    }
    info!("removed origin (and any credentials in its URL) from the clone's config");
    Ok(())
}

fn staging_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// What `git clone --bare` does, made of parts that read Loom's configuration only (libgit2's
/// own clone reads the user's and the system's): an empty bare repository, origin's branches
/// fetched into `refs/remotes/origin/*`, the project branch made from origin's.
fn clone_into(config: &OwnConfig, staging: &Path, url: &str, branch: &str) -> Result<()> {
    let repo = config.init_bare(staging, branch).ctx("creating the clone")?;
    fetch_origin(&repo, url, config, "cloning")?;
    settle_branch(&repo, url, branch)?;
    repo.set_head(&format!("refs/heads/{branch}")).ctx("pointing the clone's HEAD at the branch")
}

/// Creates the local project branch from `origin/<branch>`, or brings that into it.
fn settle_branch(repo: &Repository, url: &str, branch: &str) -> Result<EnsureOutcome> {
    let local_name = format!("refs/heads/{branch}");
    let local = ref_target(repo, &local_name)?;
    let remote = ref_target(repo, &format!("refs/remotes/origin/{branch}"))?;
    match (local, remote) {
        (None, None) if !has_remote_branches(repo)? => {
            start_branch(repo, &local_name)?;
            info!(
                branch,
                "origin has no commits yet: started the branch (the first push creates it)"
            );
            Ok(EnsureOutcome::Ready)
        }
        (None, None) => {
            Err(GitError::BranchNotFound { branch: branch.to_owned(), repo: redact(url) })
        }
        (None, Some(theirs)) => {
            repo.reference(&local_name, theirs, false, "loom: branch from origin")
                .ctx("creating the project branch")?;
            Ok(EnsureOutcome::Ready)
        }
        (Some(_), None) => {
            if has_remote_branches(repo)? {
                warn!(branch, "origin no longer has the project branch: keeping Loom's");
            }
            Ok(EnsureOutcome::Ready)
        }
        (Some(_), Some(_)) => match integrate(repo, branch)? {
            MergeOutcome::UpToDate | MergeOutcome::FastForward { .. } => Ok(EnsureOutcome::Ready),
            MergeOutcome::Merged { sha } => {
                info!(branch, sha, "origin's branch had diverged: merged it into Loom's");
                Ok(EnsureOutcome::MergedUpstream { sha })
            }
            MergeOutcome::Conflict { paths } => {
                warn!(
                    branch, paths = ?paths,
                    "origin's branch has diverged and merging it conflicts: keeping Loom's"
                );
                Ok(EnsureOutcome::UpstreamConflict { paths })
            }
        },
    }
}

/// Starts the project branch of a clone whose origin has no commits (a fresh `git init
/// --bare`): one empty root commit by Loom, so worktrees, merges and pushes work as on any
/// other branch. The first push creates the branch on origin.
fn start_branch(repo: &Repository, refname: &str) -> Result<()> {
    let loom = git2::Signature::now(LOOM_NAME, LOOM_EMAIL).ctx("making Loom's signature")?;
    let tree_id =
        repo.treebuilder(None).and_then(|builder| builder.write()).ctx("writing an empty tree")?;
    let tree = repo.find_tree(tree_id).ctx("reading the empty tree")?;
    let sha = repo
        .commit(None, &loom, &loom, "Start the project branch\n", &tree, &[])
        .ctx("writing the first commit")?;
    repo.reference(refname, sha, false, "loom: start the branch of an empty repository")
        .ctx("creating the project branch")?;
    Ok(())
}

/// Where a reference points, `None` when it does not exist.
pub(crate) fn ref_target(repo: &Repository, name: &str) -> Result<Option<Oid>> {
    match repo.refname_to_id(name) {
        Ok(oid) => Ok(Some(oid)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e).with_ctx(|| format!("reading {name}")),
    }
}

/// The commit a local branch of the clone points at; a missing branch is an error.
pub(crate) fn branch_tip(clone: &Repository, branch: &str) -> Result<Oid> {
    ref_target(clone, &format!("refs/heads/{branch}"))?.ok_or_else(|| GitError::BranchNotFound {
        branch: branch.to_owned(),
        repo: "Loom's clone".into(),
    })
}

fn has_remote_branches(repo: &Repository) -> Result<bool> {
    let refs = repo.references_glob("refs/remotes/origin/*").ctx("listing origin's branches")?;
    for reference in refs {
        let reference = reference.ctx("listing origin's branches")?;
        if reference.name_bytes() != b"refs/remotes/origin/HEAD" {
            return Ok(true);
        }
    }
    Ok(false)
}
