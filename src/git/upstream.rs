//! Origin moving on while Loom holds merges it has not pushed: fetching origin, and merging
//! its branch into Loom's with a merge commit. Nothing is rewritten or forced, so both sides'
//! commits survive and the next push is a fast-forward again.

use git2::{FetchOptions, FetchPrune, Repository};

use super::MergeOutcome;
use super::auth::Auth;
use super::clone::ref_target;
use super::error::Result;
use super::merge::merge_into;
use super::own_config::OwnConfig;

/// Where origin's branches are kept in Loom's clone, as `git clone` would keep them.
const ORIGIN_BRANCHES: &str = "+refs/heads/*:refs/remotes/origin/*";

/// Fetches every branch of origin (the project's `url`) into `refs/remotes/origin/*`;
/// writes no local branch. The remote is made from `url` alone: whatever `remote.origin.*`
/// the clone's config holds is never read. `op` names the operation in errors ("cloning",
/// "fetching").
pub(super) fn fetch_origin(
    repo: &Repository,
    url: &str,
    config: &OwnConfig,
    op: &'static str,
) -> Result<()> {
    let auth = Auth::new(url, config);
    let mut remote = repo.remote_anonymous(url).map_err(|source| auth.error(op, source))?;
    let mut options = FetchOptions::new();
    options.prune(FetchPrune::On).remote_callbacks(auth.callbacks());
    remote
        .fetch(&[ORIGIN_BRANCHES], Some(&mut options), None)
        .map_err(|source| auth.error(op, source))
}

/// Brings what was fetched of origin's `branch` into Loom's `branch`: nothing when Loom's
/// already contains it, a fast-forward when Loom's has nothing of its own, else a merge
/// commit by Loom. On a conflict Loom's branch is left as it was and the paths returned.
pub(super) fn integrate(repo: &Repository, branch: &str) -> Result<MergeOutcome> {
    let Some(theirs) = ref_target(repo, &format!("refs/remotes/origin/{branch}"))? else {
        return Ok(MergeOutcome::UpToDate);
    };
    merge_into(repo, branch, theirs, &format!("Merge upstream {branch} into Loom's {branch}"))
}
