//! Merging a bead's branch into the project branch of Loom's (bare) clone.

use std::collections::BTreeSet;

use git2::{Oid, Repository};
use tracing::{info, instrument};

use super::clone::branch_tip;
use super::error::{GitContext, Result};
use super::names::{check_branch, check_id};
use super::worktree::bead_branch;
use super::{
    LOOM_EMAIL, LOOM_NAME, MergeOutcome, ProjectRepo, Repos, Worktree, blocking, open_clone,
};

impl Repos {
    /// Merges `loom/<bead-id>` into the project branch: a fast-forward when possible, else a
    /// merge commit by Loom. On a conflict nothing is written and the paths are returned.
    /// The clone is bare, so moving the branch's ref is the whole update.
    #[instrument(skip_all, fields(project.id = %project.id, bead.id = bead_id))]
    pub async fn merge(&self, project: &ProjectRepo, bead_id: &str) -> Result<MergeOutcome> {
        check_id("project id", &project.id)?;
        check_id("bead id", bead_id)?;
        check_branch(&project.branch)?;
        let clone_path = self.clone_path(&project.id);
        let (project_id, base, theirs) =
            (project.id.clone(), project.branch.clone(), bead_branch(bead_id));
        let config = self.git_config();
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let tip = branch_tip(&clone, &theirs)?;
            merge_into(&clone, &base, tip, &format!("Merge {theirs} into {base}"))
        })
        .await
    }
}

impl Repos {
    /// Merges the project branch into a bead's worktree, as `git merge` would: a clean merge
    /// is left staged, a conflicting one with markers in the files; either way `MERGE_HEAD`
    /// is set, and the next `commit` makes the merge commit. For an agent whose branch
    /// conflicted with the project branch (it cannot run `git merge` itself: its git
    /// metadata is read-only). `None` when the branch contains the project branch already.
    #[instrument(skip_all, fields(project.id = %project.id, worktree.branch = %worktree.branch))]
    pub async fn merge_base(
        &self,
        project: &ProjectRepo,
        worktree: &Worktree,
    ) -> Result<Option<Vec<String>>> {
        check_branch(&project.branch)?;
        let (path, base, config) =
            (worktree.path.clone(), project.branch.clone(), self.git_config());
        let _guard = self.lock(&project.id).await;
        blocking(move || {
            let repo = config.open(&path).ctx("opening the worktree")?;
            // Started before (a run that stopped before its first turn): the merge is there,
            // waiting for its commit; merging again would fail.
            if repo.find_reference("MERGE_HEAD").is_ok() {
                let index = repo.index().ctx("reading the index")?;
                return Ok(Some(if index.has_conflicts() {
                    conflict_paths(&index)?
                } else {
                    Vec::new()
                }));
            }
            let tip = branch_tip(&repo, &base)?;
            let head = repo.head().ctx("reading HEAD")?.peel_to_commit().ctx("reading HEAD")?;
            if head.id() == tip || repo.graph_descendant_of(head.id(), tip).ctx("comparing")? {
                return Ok(None);
            }
            let theirs = repo.find_annotated_commit(tip).ctx("reading the project branch")?;
            let mut checkout = git2::build::CheckoutBuilder::new();
            checkout.allow_conflicts(true).conflict_style_merge(true);
            repo.merge(&[&theirs], None, Some(&mut checkout)).ctx("merging the project branch")?;
            let index = repo.index().ctx("reading the index")?;
            let paths = if index.has_conflicts() { conflict_paths(&index)? } else { Vec::new() };
            info!(paths = ?paths, "merged the project branch into the worktree");
            Ok(Some(paths))
        })
        .await
    }
}

/// Merges the commit `theirs` into the local branch `base`: a fast-forward when possible,
/// else a merge commit by Loom with `message` (ours first parent); on a conflict nothing is
/// written. The branch moves by compare-and-swap, so a commit that landed meanwhile is kept.
pub(super) fn merge_into(
    clone: &Repository,
    base: &str,
    theirs: Oid,
    message: &str,
) -> Result<MergeOutcome> {
    let refname = format!("refs/heads/{base}");
    let ours = branch_tip(clone, base)?;
    if ours == theirs || clone.graph_descendant_of(ours, theirs).ctx("comparing branches")? {
        return Ok(MergeOutcome::UpToDate);
    }
    if clone.graph_descendant_of(theirs, ours).ctx("comparing branches")? {
        // Compare-and-swap: fails rather than dropping a commit that landed meanwhile.
        clone
            .reference_matching(&refname, theirs, true, ours, &format!("loom: {message}"))
            .ctx("fast-forwarding the project branch")?;
        info!(sha = %theirs, "fast-forwarded the project branch");
        return Ok(MergeOutcome::FastForward { sha: theirs.to_string() });
    }
    let ours_commit = clone.find_commit(ours).ctx("reading the project branch")?;
    let theirs_commit = clone.find_commit(theirs).ctx("reading the branch to merge")?;
    let mut index =
        clone.merge_commits(&ours_commit, &theirs_commit, None).ctx("merging the branches")?;
    if index.has_conflicts() {
        let paths = conflict_paths(&index)?;
        info!(paths = ?paths, "the merge conflicts: the project branch is unchanged");
        return Ok(MergeOutcome::Conflict { paths });
    }
    let tree_id = index.write_tree_to(clone).ctx("writing the merged tree")?;
    let tree = clone.find_tree(tree_id).ctx("reading the merged tree")?;
    let loom = git2::Signature::now(LOOM_NAME, LOOM_EMAIL).ctx("making Loom's signature")?;
    let sha = clone
        .commit(None, &loom, &loom, &format!("{message}\n"), &tree, &[&ours_commit, &theirs_commit])
        .ctx("writing the merge commit")?;
    clone
        .reference_matching(&refname, sha, true, ours, &format!("loom: {message}"))
        .ctx("moving the project branch to the merge")?;
    info!(sha = %sha, "merged with a merge commit");
    Ok(MergeOutcome::Merged { sha: sha.to_string() })
}

pub(super) fn conflict_paths(index: &git2::Index) -> Result<Vec<String>> {
    let mut paths = BTreeSet::new();
    for conflict in index.conflicts().ctx("listing conflicts")? {
        let conflict = conflict.ctx("listing conflicts")?;
        for entry in [conflict.our, conflict.their, conflict.ancestor].into_iter().flatten() {
            paths.insert(String::from_utf8_lossy(&entry.path).into_owned());
        }
    }
    Ok(paths.into_iter().collect())
}
