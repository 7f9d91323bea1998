//! `ensure`: Loom's bare clone of a project, created on first use and brought up to date
//! with origin afterwards without ever dropping Loom's own merges.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, Oid, Repository, build::RepoBuilder};
use tracing::{info, instrument, warn};

use super::auth::Auth;
use super::error::{GitContext, GitError, Result};
use super::names::{Source, check_branch, check_id, redact};
use super::upstream::{fetch_origin, integrate};
use super::{EnsureOutcome, MergeOutcome, ProjectRepo, Repos, blocking, remove_path};

impl Repos {
    /// Makes sure `<data_dir>/repos/<id>` is a bare clone of the project with its branch:
    /// clones it when absent (or when a crash left something that is not a usable clone),
    /// otherwise fetches origin and brings origin's branch into Loom's: a fast-forward when
    /// Loom's has nothing of its own, a merge commit by Loom when the two have diverged.
    /// When that merge conflicts Loom's branch is kept as it was and the outcome says so.
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn ensure(&self, project: &ProjectRepo) -> Result<EnsureOutcome> {
        check_id("project id", &project.id)?;
        check_branch(&project.branch)?;
        let path = self.clone_path(&project.id);
        let (repo, branch) = (project.repo.clone(), project.branch.clone());
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let url = Source::parse(&repo)?.url();
            match open_usable(&path) {
                Some(clone) => update(&clone, &url, &branch),
                None => fresh_clone(&path, &url, &branch),
            }
        })
        .await
    }
}

/// The clone at `path` when it is one Loom can use: a bare repository with an origin.
fn open_usable(path: &Path) -> Option<Repository> {
    let repo = Repository::open(path).ok()?;
    if repo.is_bare() && repo.find_remote("origin").is_ok() { Some(repo) } else { None }
}

/// Clones into a staging directory beside the final one and renames it into place, so a
/// crash mid-clone leaves nothing at the final path that looks like a clone.
fn fresh_clone(path: &Path, url: &str, branch: &str) -> Result<EnsureOutcome> {
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
    if let Err(e) = clone_into(&staging, url, branch) {
        // Best effort: the next attempt removes a leftover staging directory anyway.
        let _ = remove_path(&staging);
        return Err(e);
    }
    std::fs::rename(&staging, path)
        .map_err(|e| GitError::io(format!("moving the new clone to {}", path.display()), e))?;
    info!(url = %redact(url), "cloned the project");
    Ok(EnsureOutcome::Ready)
}

fn staging_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

fn clone_into(staging: &Path, url: &str, branch: &str) -> Result<()> {
    let auth = Auth::new(url);
    let mut options = FetchOptions::new();
    options.remote_callbacks(auth.callbacks());
    let repo = RepoBuilder::new()
        .bare(true)
        .fetch_options(options)
        .clone(url, staging)
        .map_err(|source| auth.error("cloning", source))?;
    settle_branch(&repo, url, branch)?;
    repo.set_head(&format!("refs/heads/{branch}")).ctx("pointing the clone's HEAD at the branch")
}

fn update(repo: &Repository, url: &str, branch: &str) -> Result<EnsureOutcome> {
    let current = repo.find_remote("origin").ctx("reading remote origin")?;
    if current.url_bytes() != url.as_bytes() {
        info!(url = %redact(url), "the project's repository changed: repointing origin");
        repo.remote_set_url("origin", url).ctx("setting origin's URL")?;
    }
    fetch_origin(repo, url)?;
    settle_branch(repo, url, branch)
}

/// Creates the local project branch from `origin/<branch>`, or brings that into it.
fn settle_branch(repo: &Repository, url: &str, branch: &str) -> Result<EnsureOutcome> {
    let local_name = format!("refs/heads/{branch}");
    let local = ref_target(repo, &local_name)?;
    let remote = ref_target(repo, &format!("refs/remotes/origin/{branch}"))?;
    match (local, remote) {
        (None, None) if !has_remote_branches(repo)? => Err(GitError::EmptySource(redact(url))),
        (None, None) => {
            Err(GitError::BranchNotFound { branch: branch.to_owned(), repo: redact(url) })
        }
        (None, Some(theirs)) => {
            repo.reference(&local_name, theirs, false, "loom: branch from origin")
                .ctx("creating the project branch")?;
            Ok(EnsureOutcome::Ready)
        }
        (Some(_), None) => {
            warn!(branch, "origin no longer has the project branch: keeping Loom's");
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
