//! Pushing the project branch to origin: never forced, and never into a checked-out branch
//! of a local repository.

use std::path::Path;

use git2::{AutotagOption, ErrorCode, FetchOptions, Oid, PushOptions, Repository};
use tracing::{info, instrument};

use super::auth::Auth;
use super::clone::{branch_tip, ref_target};
use super::error::{GitContext, GitError, Result};
use super::names::{Source, check_branch, check_id, file_url, local_path, redact};
use super::own_config::OwnConfig;
use super::upstream::{fetch_origin, integrate};
use super::{MergeOutcome, ProjectRepo, PushOutcome, Repos, blocking, open_clone};

impl Repos {
    /// Pushes the project branch to `origin` as a fast-forward, never forced.
    ///
    /// When origin refuses because its branch has moved on, Loom fetches it, merges it into
    /// the project branch with a merge commit and pushes once more. When that merge
    /// conflicts nothing changes and the error is [`GitError::UpstreamConflict`], naming the
    /// paths; any other refusal is [`GitError::PushRejected`].
    ///
    /// When origin is a local repository with the project branch checked out (in its main
    /// working tree or a linked worktree) nothing is pushed: moving the branch under the
    /// person's working tree would leave their files stale (git itself refuses this with
    /// `receive.denyCurrentBranch`). The outcome says so. libgit2 cannot push into a local
    /// non-bare repository at all, so for one on another branch Loom does what a push would
    /// do: it fetches the commits into that repository and fast-forwards the branch there.
    ///
    /// Origin is the project's `repo`, never a URL from the clone's config (`pushurl`,
    /// `insteadOf`), which an agent's commands can write.
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn push(&self, project: &ProjectRepo) -> Result<PushOutcome> {
        check_id("project id", &project.id)?;
        check_branch(&project.branch)?;
        let clone_path = self.clone_path(&project.id);
        let (project_id, branch) = (project.id.clone(), project.branch.clone());
        let (repo, config) = (project.repo.clone(), self.git_config());
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let url = Source::parse(&repo)?.url();
            let origin = match local_origin(&config, &url, &branch) {
                LocalOrigin::CheckedOut(reason) => {
                    info!(reason, "not pushing");
                    return Ok(PushOutcome::Skipped { reason });
                }
                origin => origin,
            };
            let source = format!("refs/heads/{branch}");
            let target = Target { url: &url, branch: &branch, config: &config, source: &source };
            let tip = push_integrating(&clone, &origin, &target)?;
            info!(sha = %tip, "pushed the project branch to origin");
            Ok(PushOutcome::Pushed { sha: tip.to_string() })
        })
        .await
    }
}

/// Where a push goes: the project's URL and branch, with Loom's git configuration, and
/// which ref of the clone it sends (the project branch, or a train to land).
pub(super) struct Target<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub config: &'a OwnConfig,
    pub source: &'a str,
}

/// Where a bead's work was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Origin has `loom/<bead-id>` at the commit.
    Pushed,
    /// Origin is a local repository with the project branch checked out: Loom's clone is
    /// where work lands, so the branch stays there.
    Kept,
}

impl Repos {
    /// Publishes a bead's branch `loom/<bead-id>` to origin as it is in Loom's clone (the
    /// branch is Loom's own: it is replaced, not merged, when origin's differs), so that
    /// whichever replica runs the project's landing queue can fetch the work. Nothing is
    /// published to a local origin that has the project branch checked out (see
    /// [`Repos::push`]): work lands in Loom's clone then.
    #[instrument(skip_all, fields(project.id = %project.id, bead.id = bead_id))]
    pub async fn publish(&self, project: &ProjectRepo, bead_id: &str) -> Result<Published> {
        self.bead_ref(project, bead_id, true).await
    }

    /// Deletes `loom/<bead-id>` from origin once the work has landed: a forge or a shared
    /// repository does not fill up with Loom's branches. Missing is fine.
    #[instrument(skip_all, fields(project.id = %project.id, bead.id = bead_id))]
    pub async fn unpublish(&self, project: &ProjectRepo, bead_id: &str) -> Result<Published> {
        self.bead_ref(project, bead_id, false).await
    }

    async fn bead_ref(&self, project: &ProjectRepo, bead_id: &str, put: bool) -> Result<Published> {
        check_id("project id", &project.id)?;
        check_id("bead id", bead_id)?;
        check_branch(&project.branch)?;
        let clone_path = self.clone_path(&project.id);
        let (project_id, branch, bead) =
            (project.id.clone(), project.branch.clone(), super::worktree::bead_branch(bead_id));
        let (repo, config) = (project.repo.clone(), self.git_config());
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let url = Source::parse(&repo)?.url();
            if let LocalOrigin::CheckedOut(_) = local_origin(&config, &url, &branch) {
                return Ok(Published::Kept);
            }
            let local = format!("refs/heads/{bead}");
            let tip = if put { Some(branch_tip(&clone, &bead)?) } else { None };
            match local_origin(&config, &url, &bead) {
                LocalOrigin::NonBare(origin) => set_in_non_bare(&origin, &clone, &local, tip)?,
                _ => {
                    let refspec = match tip {
                        Some(_) => format!("+{local}:{local}"),
                        None => format!(":{local}"),
                    };
                    push_refspec(&clone, &url, &config, &refspec)?;
                }
            }
            info!(branch = %bead, put, "published the bead's branch");
            Ok(Published::Pushed)
        })
        .await
    }
}

/// `git push <url> <refspec>` for one of Loom's own branches, which it may replace or delete.
fn push_refspec(clone: &Repository, url: &str, config: &OwnConfig, refspec: &str) -> Result<()> {
    let auth = Auth::new(url, config);
    let (result, refused) = push_once(clone, &auth, url, refspec)?;
    result.map_err(|source| auth.error("pushing to", source))?;
    match refused {
        Some(status) => Err(GitError::PushRejected {
            branch: refspec.rsplit(':').next().unwrap_or(refspec).to_owned(),
            url: redact(url),
            reason: format!("origin refused it: {status}"),
        }),
        None => Ok(()),
    }
}

/// One push of `refspec` to an anonymous remote of `url` (no `remote.origin.*`, `pushurl`
/// or `insteadOf` of the clone's config is read; see `own_config.rs`): libgit2's result, and
/// the status origin refused the update with, if it did.
fn push_once(
    clone: &Repository,
    auth: &Auth,
    url: &str,
    refspec: &str,
) -> Result<(std::result::Result<(), git2::Error>, Option<String>)> {
    let mut remote =
        clone.remote_anonymous(url).map_err(|source| auth.error("pushing to", source))?;
    let mut refused: Option<String> = None;
    let result = {
        let mut callbacks = auth.callbacks();
        callbacks.push_update_reference(|_, status| {
            if let Some(status) = status {
                refused = Some(status.to_owned());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        remote.push(&[refspec], Some(&mut options))
    };
    Ok((result, refused))
}

/// Sets (or with `None` deletes) `refname` in a local non-bare origin, which libgit2 cannot
/// push into: the commits are fetched from Loom's clone first.
fn set_in_non_bare(
    origin: &Repository,
    clone: &Repository,
    refname: &str,
    tip: Option<Oid>,
) -> Result<()> {
    let Some(tip) = tip else {
        return match origin.find_reference(refname) {
            Ok(mut r) => r.delete().ctx("deleting the bead's branch in origin"),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(()),
            Err(e) => Err(e).ctx("reading the bead's branch in origin"),
        };
    };
    let mut options = FetchOptions::new();
    options.update_fetchhead(false).download_tags(AutotagOption::None);
    origin
        .remote_anonymous(&file_url(clone.path()))
        .and_then(|mut remote| remote.fetch(&[refname], Some(&mut options), None))
        .map_err(|source| GitError::remote("copying commits into", "origin".into(), source))?;
    origin.reference(refname, tip, true, "loom: the bead's work").ctx("setting the branch")?;
    Ok(())
}

/// Pushes the branch; when origin refuses a non-fast-forward, fetches it, merges its branch
/// into Loom's and pushes once more. Returns what origin's branch now points at.
fn push_integrating(clone: &Repository, origin: &LocalOrigin, target: &Target<'_>) -> Result<Oid> {
    let Target { url, branch, config, .. } = *target;
    let tip = branch_tip(clone, branch)?;
    if let Sent::Pushed = send(clone, origin, target, tip)? {
        return Ok(tip);
    }
    info!(branch, "origin's branch has moved on: merging it into Loom's before pushing again");
    fetch_origin(clone, url, config, "fetching")?;
    if let MergeOutcome::Conflict { paths } = integrate(clone, branch)? {
        return Err(GitError::UpstreamConflict {
            branch: branch.to_owned(),
            url: redact(url),
            paths,
        });
    }
    let tip = branch_tip(clone, branch)?;
    match send(clone, origin, target, tip)? {
        Sent::Pushed => Ok(tip),
        // Moved on again between the fetch and the push: the next push tries again.
        Sent::NotFastForward(detail) => Err(rejected(url, branch, detail)),
    }
}

pub(super) enum Sent {
    Pushed,
    /// Origin has commits the branch does not; why, for the error.
    NotFastForward(String),
}

/// Sends `tip` (what `target.source` points at) to origin's branch as a fast-forward.
pub(super) fn send(
    clone: &Repository,
    origin: &LocalOrigin,
    target: &Target<'_>,
    tip: Oid,
) -> Result<Sent> {
    match origin {
        LocalOrigin::NonBare(origin) => push_into_non_bare(origin, clone, target, tip),
        LocalOrigin::CheckedOut(_) | LocalOrigin::Other => push_branch(clone, target),
    }
}

/// What origin is, when it is a repository on this machine.
pub(super) enum LocalOrigin {
    /// The branch is checked out there: why Loom does not push.
    CheckedOut(String),
    /// A repository with a working tree (on another branch), which libgit2 cannot push into.
    NonBare(Repository),
    /// Bare, remote, or not openable (the push itself then says why): push the usual way.
    Other,
}

pub(super) fn local_origin(config: &OwnConfig, url: &str, branch: &str) -> LocalOrigin {
    let Some(path) = local_path(url) else { return LocalOrigin::Other };
    let Ok(opened) = config.open(&path) else { return LocalOrigin::Other };
    let reason = if opened.is_worktree() {
        match config.open(opened.commondir()) {
            Ok(main) => checked_out(config, &main, &path, branch),
            Err(_) => return LocalOrigin::Other,
        }
    } else {
        checked_out(config, &opened, &path, branch)
    };
    match reason {
        Some(reason) => LocalOrigin::CheckedOut(reason),
        None if opened.is_bare() => LocalOrigin::Other,
        None => LocalOrigin::NonBare(opened),
    }
}

/// Why pushing `branch` into `main` (the repository at `path`, or the one it is a linked
/// worktree of) would leave a working tree stale, if it would.
fn checked_out(config: &OwnConfig, main: &Repository, path: &Path, branch: &str) -> Option<String> {
    let refname = format!("refs/heads/{branch}");
    if !main.is_bare() && head_is(main, &refname) {
        return Some(format!(
            "origin {} has {branch} checked out; pushing would leave its working tree stale",
            path.display()
        ));
    }
    let names = main.worktrees().ok()?;
    for name in names.iter().filter_map(|name| name.ok().flatten()) {
        let linked = main.find_worktree(name).ok().and_then(|wt| {
            let repo = config.open(wt.path()).ok()?;
            Some((wt.path().to_path_buf(), repo))
        });
        if let Some((wt_path, repo)) = linked
            && head_is(&repo, &refname)
        {
            return Some(format!(
                "origin {} has {branch} checked out in its worktree {}; pushing would leave \
                 that working tree stale",
                path.display(),
                wt_path.display()
            ));
        }
    }
    None
}

/// HEAD names `refname` (even when that branch has no commit yet).
fn head_is(repo: &Repository, refname: &str) -> bool {
    repo.find_reference("HEAD")
        .is_ok_and(|head| head.symbolic_target_bytes() == Some(refname.as_bytes()))
}

/// Pushes the branch to an anonymous remote of the project's URL: no `remote.origin.*`,
/// `pushurl` or `insteadOf` of the clone's config is read (see `own_config.rs`).
fn push_branch(clone: &Repository, target: &Target<'_>) -> Result<Sent> {
    let Target { url, branch, config, source } = *target;
    // No '+': libgit2 refuses a non-fast-forward update instead of forcing it.
    let refspec = format!("{source}:refs/heads/{branch}");
    let auth = Auth::new(url, config);
    let (result, refused) = push_once(clone, &auth, url, &refspec)?;
    match result {
        Err(e) if e.code() == ErrorCode::NotFastForward => {
            Ok(Sent::NotFastForward(format!("{NOT_FAST_FORWARD}: {}", e.message())))
        }
        Err(source) => Err(auth.error("pushing to", source)),
        Ok(()) => match refused {
            // A server that learnt of origin's new commits only as the push arrived.
            Some(status) if status.contains("fast-forward") || status.contains("fetch first") => {
                Ok(Sent::NotFastForward(format!("{NOT_FAST_FORWARD}: origin said {status}")))
            }
            Some(status) => Err(rejected(url, branch, format!("origin refused it: {status}"))),
            None => Ok(Sent::Pushed),
        },
    }
}

const NOT_FAST_FORWARD: &str =
    "origin has commits the project branch does not (not a fast-forward, and Loom never forces)";

fn rejected(url: &str, branch: &str, reason: String) -> GitError {
    GitError::PushRejected { branch: branch.to_owned(), url: redact(url), reason }
}

/// A push into a local non-bare repository, done from its side: fetch the commits from
/// Loom's clone (the fetch itself writes no ref), then fast-forward the branch there with a
/// compare-and-swap, or create it.
fn push_into_non_bare(
    origin: &Repository,
    clone: &Repository,
    target: &Target<'_>,
    tip: Oid,
) -> Result<Sent> {
    let (url, branch, source) = (target.url, target.branch, target.source);
    let refname = format!("refs/heads/{branch}");
    let clone_url = file_url(clone.path());
    let mut options = FetchOptions::new();
    options.update_fetchhead(false).download_tags(AutotagOption::None);
    origin
        .remote_anonymous(&clone_url)
        .and_then(|mut remote| remote.fetch(&[source], Some(&mut options), None))
        .map_err(|source| GitError::remote("copying commits into", redact(url), source))?;
    match ref_target(origin, &refname)? {
        Some(theirs) if theirs == tip => Ok(Sent::Pushed),
        Some(theirs) => {
            if !origin.graph_descendant_of(tip, theirs).ctx("comparing with origin")? {
                return Ok(Sent::NotFastForward(NOT_FAST_FORWARD.to_owned()));
            }
            origin
                .reference_matching(&refname, tip, true, theirs, "push from Loom")
                .ctx("moving the branch in origin")?;
            Ok(Sent::Pushed)
        }
        None => {
            origin
                .reference(&refname, tip, false, "push from Loom")
                .ctx("creating the branch in origin")?;
            Ok(Sent::Pushed)
        }
    }
}
