//! The merge queue's git work: a **train** of bead commits merged one after another onto the
//! project branch's tip, in Loom's clone only (a ref of its own, `refs/loom/train`), so it
//! can be checked before anything lands; and **landing** a train: pushing exactly that
//! commit to origin as a fast-forward (never forced), then moving Loom's branch there.
//! Nothing lands that was not the checked commit: when origin moved on meanwhile the push
//! is refused and the caller builds the train again. (A push only checks that it is a
//! fast-forward of origin's branch: had someone rewound origin's branch to an ancestor of
//! the train's base since, the landing would bring the commits they removed back, as any
//! plain push of a branch built on them would.)

use git2::{Oid, Repository};
use tracing::{info, instrument, warn};

use super::clone::{branch_tip, ref_target};
use super::error::{GitContext, GitError, Result};
use super::merge::conflict_paths;
use super::names::{Source, check_branch, check_id};
use super::push::{LocalOrigin, Sent, Target, local_origin, send};
use super::upstream::{fetch_origin, integrate};
use super::worktree::{create, discard, is_valid};
use super::{
    LOOM_EMAIL, LOOM_NAME, MergeOutcome, ProjectRepo, Repos, Worktree, blocking, open_clone,
};

/// Where a train is kept in Loom's clone while it is checked.
const TRAIN_REF: &str = "refs/loom/train";
/// The worktree checks run in, `<data>/worktrees/<project>/_check` on branch `loom/_check`
/// (no bead id has an underscore, so no bead's worktree or branch is ever this one).
pub const CHECK_WORKTREE: &str = "_check";

/// A bead's work waiting to land: the commit its agent finished on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub bead_id: String,
    pub sha: String,
}

/// What became of one bead's commit in a train.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Car {
    /// Merged: `tip` is the train's commit once it is on (the commit itself when the train
    /// could fast-forward to it).
    Merged { bead_id: String, tip: String },
    /// The project branch holds it already (it landed before, here or on another replica).
    Landed { bead_id: String },
    /// Merging it onto what is before it conflicts in these paths; it is left out.
    Conflict { bead_id: String, paths: Vec<String> },
    /// Loom's clone does not have the commit.
    Missing { bead_id: String },
}

/// A train: cars merged in order onto `base`, the project branch's tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Train {
    pub base: String,
    /// The last car's tip (`base` when no car was merged).
    pub tip: String,
    pub cars: Vec<Car>,
}

/// How landing a train went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// Origin's project branch is at `sha`, and so is Loom's.
    Pushed { sha: String },
    /// Origin's branch is no longer the train's base: nothing was pushed; build it again.
    Moved,
    /// Origin is a local repository with the branch checked out: Loom's branch moved, origin
    /// was left alone (as a push does), for this reason.
    Kept { reason: String },
}

impl Repos {
    /// Fetches origin and merges `waiting` in order onto the tip of origin's project branch,
    /// each commit as it is: a fast-forward when the train has nothing of its own yet, else
    /// a merge commit by Loom naming the bead. Loom's project branch follows origin's first:
    /// work lands only by being pushed, so a commit Loom's branch has and origin's lacks is
    /// a merge a replica made and never pushed (it died first, and the bead landed again
    /// since): it is dropped, never pushed late as a second landing. When origin is a local
    /// repository with the branch checked out (work lands in Loom's clone then), origin's
    /// branch is brought into Loom's as `ensure` does and the train starts from Loom's. The
    /// train is kept at `refs/loom/train`.
    #[instrument(skip_all, fields(project.id = %project.id, cars = waiting.len()))]
    pub async fn train(&self, project: &ProjectRepo, waiting: &[Waiting]) -> Result<Train> {
        check_id("project id", &project.id)?;
        check_branch(&project.branch)?;
        for c in waiting {
            check_id("bead id", &c.bead_id)?;
        }
        let (path, repo, branch, config) = (
            self.clone_path(&project.id),
            project.repo.clone(),
            project.branch.clone(),
            self.git_config(),
        );
        let (project_id, waiting) = (project.id.clone(), waiting.to_vec());
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let clone = open_clone(&config, &path, &project_id)?;
            let url = Source::parse(&repo)?.url();
            fetch_origin(&clone, &url, &config, "fetching")?;
            let remote = ref_target(&clone, &format!("refs/remotes/origin/{branch}"))?;
            let kept = matches!(local_origin(&config, &url, &branch), LocalOrigin::CheckedOut(_));
            match remote {
                Some(theirs) if !kept => follow(&clone, &branch, theirs)?,
                _ => {
                    if let MergeOutcome::Conflict { paths } = integrate(&clone, &branch)? {
                        return Err(GitError::UpstreamConflict {
                            branch,
                            url: super::names::redact(&url),
                            paths,
                        });
                    }
                }
            }
            let base = branch_tip(&clone, &branch)?;
            let train = build(&clone, &branch, base, &waiting)?;
            let tip = Oid::from_str(&train.tip).ctx("reading the train's tip")?;
            clone
                .reference(TRAIN_REF, tip, true, "loom: a train to check")
                .ctx("keeping the train")?;
            info!(base = %train.base, tip = %train.tip, "built a train");
            Ok(train)
        })
        .await
    }

    /// Lands `train`: pushes its tip to origin's project branch as a fast-forward (never
    /// forced), then moves Loom's branch there too. Once origin has it the landing is done,
    /// whatever happens to Loom's branch after.
    #[instrument(skip_all, fields(project.id = %project.id, tip = %train.tip))]
    pub async fn land(&self, project: &ProjectRepo, train: &Train) -> Result<Landed> {
        check_id("project id", &project.id)?;
        check_branch(&project.branch)?;
        let (path, repo, branch, config) = (
            self.clone_path(&project.id),
            project.repo.clone(),
            project.branch.clone(),
            self.git_config(),
        );
        let (project_id, base, tip) = (project.id.clone(), train.base.clone(), train.tip.clone());
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let clone = open_clone(&config, &path, &project_id)?;
            let base = Oid::from_str(&base).ctx("reading the train's base")?;
            let tip = Oid::from_str(&tip).ctx("reading the train's tip")?;
            clone.reference(TRAIN_REF, tip, true, "loom: the train to land").ctx("keeping it")?;
            let url = Source::parse(&repo)?.url();
            let origin = local_origin(&config, &url, &branch);
            if let LocalOrigin::CheckedOut(reason) = origin {
                advance(&clone, &branch, base, tip)?;
                info!(reason, "landed in Loom's clone only");
                return Ok(Landed::Kept { reason });
            }
            let target = Target { url: &url, branch: &branch, config: &config, source: TRAIN_REF };
            match send(&clone, &origin, &target, tip)? {
                Sent::NotFastForward(detail) => {
                    info!(detail, "origin moved on since the train was built: not landed");
                    Ok(Landed::Moved)
                }
                Sent::Pushed => {
                    info!(sha = %tip, "landed the train");
                    // Origin has it: that is the landing. Loom's own refs follow as they can;
                    // the next train's fetch and integration bring them level otherwise.
                    let remote = format!("refs/remotes/origin/{branch}");
                    if let Err(e) = clone.reference(&remote, tip, true, "loom: pushed") {
                        warn!(error = %e.message(), "could not note the push in Loom's clone");
                    }
                    if let Err(e) = follow(&clone, &branch, tip) {
                        warn!(error = %e, "the train landed on origin, but Loom's branch could not follow yet");
                    }
                    Ok(Landed::Pushed { sha: tip.to_string() })
                }
            }
        })
        .await
    }
}

impl Repos {
    /// The project's check worktree with `sha` checked out: its tracked files as in `sha`,
    /// files the last check left that git does not ignore removed, ignored ones (build
    /// caches such as `target/` or `node_modules/`) kept, so checks build incrementally.
    /// One check at a time per project: the lock is held only while checking out, so the
    /// caller (the project's one queue) must not run two checks at once.
    #[instrument(skip_all, fields(project.id = %project.id, sha))]
    pub async fn check_worktree(&self, project: &ProjectRepo, sha: &str) -> Result<Worktree> {
        check_id("project id", &project.id)?;
        let (config, clone_path, project_id) =
            (self.git_config(), self.clone_path(&project.id), project.id.clone());
        let path = self.worktree_path(&project.id, CHECK_WORKTREE);
        let sha = sha.to_owned();
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let commit = Oid::from_str(&sha)
                .ok()
                .and_then(|oid| clone.find_commit(oid).ok())
                .ok_or_else(|| GitError::invalid_input(format!("no commit {sha} to check")))?;
            let worktree = Worktree { path, branch: format!("loom/{CHECK_WORKTREE}") };
            clone.branch(&worktree.branch, &commit, true).ctx("pointing the check branch")?;
            if is_valid(&config, &clone, CHECK_WORKTREE, &worktree.path) {
                let repo = config.open(&worktree.path).ctx("opening the check worktree")?;
                let mut checkout = git2::build::CheckoutBuilder::new();
                checkout.force().remove_untracked(true);
                repo.set_head(&format!("refs/heads/{}", worktree.branch)).ctx("checking out")?;
                repo.checkout_head(Some(&mut checkout)).ctx("checking out the commit")?;
            } else {
                discard(&clone, CHECK_WORKTREE, &worktree.path)?;
                create(&clone, CHECK_WORKTREE, &worktree, &worktree.branch)?;
            }
            Ok(worktree)
        })
        .await
    }
}

/// Merges each car onto the train, starting at `base`.
fn build(clone: &Repository, branch: &str, base: Oid, waiting: &[Waiting]) -> Result<Train> {
    let mut tip = base;
    let mut cars = Vec::with_capacity(waiting.len());
    for c in waiting {
        let bead_id = c.bead_id.clone();
        let car = match Oid::from_str(&c.sha).ok().filter(|sha| clone.find_commit(*sha).is_ok()) {
            None => Car::Missing { bead_id },
            Some(sha) if contains(clone, base, sha)? => Car::Landed { bead_id },
            Some(sha) if contains(clone, tip, sha)? => {
                Car::Merged { bead_id, tip: tip.to_string() }
            }
            Some(sha) if contains(clone, sha, tip)? => {
                tip = sha;
                Car::Merged { bead_id, tip: tip.to_string() }
            }
            Some(sha) => match merge_commit(clone, branch, &bead_id, tip, sha)? {
                Ok(merged) => {
                    tip = merged;
                    Car::Merged { bead_id, tip: tip.to_string() }
                }
                Err(paths) => Car::Conflict { bead_id, paths },
            },
        };
        cars.push(car);
    }
    Ok(Train { base: base.to_string(), tip: tip.to_string(), cars })
}

/// Whether `ancestor` is `commit` or one of its ancestors.
fn contains(clone: &Repository, commit: Oid, ancestor: Oid) -> Result<bool> {
    Ok(commit == ancestor
        || clone.graph_descendant_of(commit, ancestor).ctx("comparing commits")?)
}

/// A merge commit by Loom of `theirs` onto `ours`, or the conflicting paths.
fn merge_commit(
    clone: &Repository,
    branch: &str,
    bead_id: &str,
    ours: Oid,
    theirs: Oid,
) -> Result<std::result::Result<Oid, Vec<String>>> {
    let ours = clone.find_commit(ours).ctx("reading the train")?;
    let theirs = clone.find_commit(theirs).ctx("reading a bead's commit")?;
    let mut index = clone.merge_commits(&ours, &theirs, None).ctx("merging into the train")?;
    if index.has_conflicts() {
        return Ok(Err(conflict_paths(&index)?));
    }
    let tree = index.write_tree_to(clone).ctx("writing the merged tree")?;
    let tree = clone.find_tree(tree).ctx("reading the merged tree")?;
    let loom = git2::Signature::now(LOOM_NAME, LOOM_EMAIL).ctx("making Loom's signature")?;
    // No `Bead:` trailer: that names the bead's own commits, which a reader counts.
    let message = format!("Merge loom/{bead_id} into {branch}\n");
    let sha = clone
        .commit(None, &loom, &loom, &message, &tree, &[&ours, &theirs])
        .ctx("writing a merge commit")?;
    Ok(Ok(sha))
}

/// Points Loom's project branch at `theirs`, origin's: what it had that origin lacks was
/// never landed (see `Repos::train`) and is dropped, with a warning.
pub(super) fn follow(clone: &Repository, branch: &str, theirs: Oid) -> Result<()> {
    let refname = format!("refs/heads/{branch}");
    let ours = ref_target(clone, &refname)?;
    if ours == Some(theirs) {
        return Ok(());
    }
    if let Some(ours) = ours
        && !contains(clone, theirs, ours)?
    {
        let (ahead, _) = clone.graph_ahead_behind(ours, theirs).ctx("comparing with origin")?;
        warn!(
            branch,
            ahead,
            "dropping commits of Loom's branch that origin never got (merges a replica did not push)"
        );
    }
    clone.reference(&refname, theirs, true, "loom: follow origin").ctx("moving the branch")?;
    Ok(())
}

/// Moves Loom's project branch from `base` to `tip`; if it moved meanwhile (origin's branch
/// integrated by another operation), brings `tip` into it instead.
fn advance(clone: &Repository, branch: &str, base: Oid, tip: Oid) -> Result<()> {
    let refname = format!("refs/heads/{branch}");
    match ref_target(clone, &refname)? {
        Some(now) if now == base => {
            clone
                .reference_matching(&refname, tip, true, base, "loom: landed a train")
                .ctx("moving the project branch")?;
        }
        Some(now) if contains(clone, now, tip)? => {}
        _ => {
            let merged = super::merge::merge_into(clone, branch, tip, "Merge a landed train")?;
            if let MergeOutcome::Conflict { paths } = merged {
                return Err(GitError::UpstreamConflict {
                    branch: branch.to_owned(),
                    url: "Loom's clone".into(),
                    paths,
                });
            }
        }
    }
    Ok(())
}
