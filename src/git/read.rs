//! Read helpers on the project branch of Loom's clone: its recent commits, a file's content
//! at its head, one commit with its patch, and what a bead's branch changes.

use std::path::{Path, PathBuf};

use git2::{Commit, DiffLine, ErrorCode, ObjectType, Oid, Repository, Sort};
use tracing::instrument;

use super::clone::{branch_tip, ref_target};
use super::error::{GitContext, GitError, Result};
use super::names::{check_branch, check_id};
use super::own_config::OwnConfig;
use super::worktree::bead_branch;
use super::{
    BeadDiff, CommitInfo, CommitPatch, PatchLimit, ProjectRepo, Repos, Signature, blocking,
    open_clone,
};

impl Repos {
    /// The project branch's head commit.
    pub async fn head(&self, project: &ProjectRepo) -> Result<CommitInfo> {
        let mut commits = self.log(project, 1).await?;
        // A branch always has a head commit, so `log` found one.
        commits.pop().ok_or_else(|| GitError::BranchNotFound {
            branch: project.branch.clone(),
            repo: "Loom's clone".into(),
        })
    }

    /// Up to `n` commits of the project branch, newest first.
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn log(&self, project: &ProjectRepo, n: usize) -> Result<Vec<CommitInfo>> {
        let (config, clone_path, project_id, branch) = self.read_args(project)?;
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let tip = branch_tip(&clone, &branch)?;
            let mut walk = clone.revwalk().ctx("walking the branch")?;
            walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME).ctx("walking the branch")?;
            walk.push(tip).ctx("walking the branch")?;
            let mut commits = Vec::new();
            for oid in walk.take(n) {
                let commit = clone.find_commit(oid.ctx("walking the branch")?).ctx("reading")?;
                commits.push(commit_info(&clone, &commit)?);
            }
            Ok(commits)
        })
        .await
    }

    /// Up to `n` commits of `branch` (a bead's, in Loom's clone) that the project branch does
    /// not hold, newest first: what earlier attempts left on it. None when it does not exist.
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn ahead(
        &self,
        project: &ProjectRepo,
        branch: &str,
        n: usize,
    ) -> Result<Vec<CommitInfo>> {
        let (config, clone_path, project_id, base) = self.read_args(project)?;
        check_branch(branch)?;
        let branch = branch.to_owned();
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let Ok(tip) = branch_tip(&clone, &branch) else { return Ok(Vec::new()) };
            let mut walk = clone.revwalk().ctx("walking the bead's branch")?;
            walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME).ctx("walking the bead's branch")?;
            walk.push(tip).ctx("walking the bead's branch")?;
            if let Ok(base) = branch_tip(&clone, &base) {
                walk.hide(base).ctx("walking the bead's branch")?;
            }
            let mut commits = Vec::new();
            for oid in walk.take(n) {
                let oid = oid.ctx("walking the bead's branch")?;
                let commit = clone.find_commit(oid).ctx("reading")?;
                commits.push(commit_info(&clone, &commit)?);
            }
            Ok(commits)
        })
        .await
    }

    /// A file's content at the head of the project branch; `None` when there is no such path.
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn read_file(&self, project: &ProjectRepo, path: &str) -> Result<Option<Vec<u8>>> {
        let (config, clone_path, project_id, branch) = self.read_args(project)?;
        let path = path.to_owned();
        blocking(move || {
            let clone = open_clone(&config, &clone_path, &project_id)?;
            let tip = branch_tip(&clone, &branch)?;
            let tree = clone.find_commit(tip).and_then(|c| c.tree()).ctx("reading the tree")?;
            let entry = match tree.get_path(Path::new(&path)) {
                Ok(entry) => entry,
                Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
                Err(e) => return Err(e).with_ctx(|| format!("looking up {path}")),
            };
            if entry.kind() != Some(ObjectType::Blob) {
                return Err(GitError::invalid_input(format!("{path} is not a file")));
            }
            let object = entry.to_object(&clone).with_ctx(|| format!("reading {path}"))?;
            let blob = object.peel_to_blob().with_ctx(|| format!("reading {path}"))?;
            Ok(Some(blob.content().to_vec()))
        })
        .await
    }

    /// A commit of the clone with its patch against its first parent, the patch cut after
    /// `max_bytes`; `None` when the clone does not have that commit (or is not there: another
    /// replica did the work).
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn show(
        &self,
        project: &ProjectRepo,
        sha: &str,
        max_bytes: usize,
    ) -> Result<Option<CommitPatch>> {
        let (config, clone_path, project_id, _) = self.read_args(project)?;
        let Ok(oid) = git2::Oid::from_str(sha) else {
            return Err(GitError::invalid_input(format!("{sha:?} is not a commit id")));
        };
        blocking(move || {
            let clone = match open_clone(&config, &clone_path, &project_id) {
                Ok(c) => c,
                Err(GitError::NotCloned(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let commit = match clone.find_commit(oid) {
                Ok(c) => c,
                Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
                Err(e) => return Err(e).ctx("reading the commit"),
            };
            let info = commit_info(&clone, &commit)?;
            let tree = commit.tree().ctx("reading the commit's tree")?;
            let parent_tree = match commit.parent(0) {
                Ok(parent) => Some(parent.tree().ctx("reading the parent's tree")?),
                Err(_) => None,
            };
            let diff = clone
                .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
                .ctx("diffing the commit")?;
            let mut patch = Vec::new();
            let mut truncated = false;
            let printed = diff.print(git2::DiffFormat::Patch, |_, _, line| {
                let origin = line.origin();
                if matches!(origin, '+' | '-' | ' ') {
                    patch.push(origin as u8);
                }
                patch.extend_from_slice(line.content());
                truncated = patch.len() > max_bytes;
                !truncated
            });
            // Stopping early is how the cut is made, not a failure.
            if !truncated {
                printed.ctx("printing the patch")?;
            }
            patch.truncate(max_bytes);
            Ok(Some(CommitPatch {
                info,
                patch: String::from_utf8_lossy(&patch).into_owned(),
                truncated,
            }))
        })
        .await
    }

    /// What bead `bead_id`'s branch changes since it left the project branch (the diff from
    /// their merge base to its tip), cut at `limit`. The branch is Loom's `loom/<bead-id>`, or
    /// origin's when this clone has none (another replica did the work); `None` when neither
    /// exists or the project is not cloned here.
    #[instrument(skip_all, fields(project.id = %project.id, bead.id = bead_id))]
    pub async fn bead_diff(
        &self,
        project: &ProjectRepo,
        bead_id: &str,
        limit: PatchLimit,
    ) -> Result<Option<BeadDiff>> {
        let (config, clone_path, project_id, base) = self.read_args(project)?;
        check_id("bead id", bead_id)?;
        let branch = bead_branch(bead_id);
        blocking(move || {
            let clone = match open_clone(&config, &clone_path, &project_id) {
                Ok(c) => c,
                Err(GitError::NotCloned(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let Some(tip) = bead_tip(&clone, &branch)? else { return Ok(None) };
            let base = branch_tip(&clone, &base)?;
            let from = match clone.merge_base(tip, base) {
                Ok(oid) => Some(clone.find_commit(oid).and_then(|c| c.tree()).ctx("reading")?),
                // Unrelated histories: everything on the branch is its change.
                Err(e) if e.code() == ErrorCode::NotFound => None,
                Err(e) => return Err(e).ctx("finding where the bead's branch began"),
            };
            let to = clone.find_commit(tip).and_then(|c| c.tree()).ctx("reading the tip")?;
            let diff = clone
                .diff_tree_to_tree(from.as_ref(), Some(&to), None)
                .ctx("diffing the bead's branch")?;
            let mut cut = PatchCut::new(limit);
            diff.print(git2::DiffFormat::Patch, |_, _, line| cut.push(&line))
                .ctx("printing the patch")?;
            Ok(Some(cut.finish(tip, diff.deltas().len())))
        })
        .await
    }

    fn read_args(&self, project: &ProjectRepo) -> Result<(OwnConfig, PathBuf, String, String)> {
        check_id("project id", &project.id)?;
        check_branch(&project.branch)?;
        let clone_path = self.clone_path(&project.id);
        Ok((self.git_config(), clone_path, project.id.clone(), project.branch.clone()))
    }
}

fn commit_info(repo: &Repository, commit: &Commit<'_>) -> Result<CommitInfo> {
    let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
    let signature = |s: git2::Signature<'_>| Signature {
        name: String::from_utf8_lossy(s.name_bytes()).into_owned(),
        email: String::from_utf8_lossy(s.email_bytes()).into_owned(),
    };
    let trailers = git2::message_trailers_strs(&message)
        .ctx("reading the trailers")?
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(CommitInfo {
        sha: commit.id().to_string(),
        author: signature(commit.author()),
        committer: signature(commit.committer()),
        parents: commit.parent_ids().map(|id| id.to_string()).collect(),
        files: changed_files(repo, commit)?,
        trailers,
        message,
    })
}

fn changed_files(repo: &Repository, commit: &Commit<'_>) -> Result<Vec<String>> {
    let tree = commit.tree().ctx("reading the commit's tree")?;
    let parent_tree = match commit.parent(0) {
        Ok(parent) => Some(parent.tree().ctx("reading the parent's tree")?),
        Err(_) => None,
    };
    let diff = repo
        .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
        .ctx("diffing the commit")?;
    Ok(diff
        .deltas()
        .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()).map(Path::to_owned))
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

/// A bead branch's tip: Loom's own branch, else origin's.
fn bead_tip(clone: &Repository, branch: &str) -> Result<Option<Oid>> {
    match ref_target(clone, &format!("refs/heads/{branch}"))? {
        Some(tip) => Ok(Some(tip)),
        None => ref_target(clone, &format!("refs/remotes/origin/{branch}")),
    }
}

/// A patch as it is printed, kept in whole lines up to a limit and counted past it.
struct PatchCut {
    limit: PatchLimit,
    kept: Vec<u8>,
    kept_lines: usize,
    omitted_bytes: usize,
    omitted_lines: usize,
}

impl PatchCut {
    fn new(limit: PatchLimit) -> Self {
        PatchCut { limit, kept: Vec::new(), kept_lines: 0, omitted_bytes: 0, omitted_lines: 0 }
    }

    /// Takes one printed piece (a file's header is several lines); always asks for more, so
    /// the whole patch is counted.
    fn push(&mut self, line: &DiffLine<'_>) -> bool {
        let origin = line.origin();
        let prefix = matches!(origin, '+' | '-' | ' ');
        let bytes = line.content().len() + usize::from(prefix);
        let lines = line.content().iter().filter(|&&b| b == b'\n').count();
        let fits = self.omitted_bytes == 0
            && self.kept.len() + bytes <= self.limit.bytes
            && self.kept_lines + lines <= self.limit.lines;
        if fits {
            if prefix {
                self.kept.push(origin as u8);
            }
            self.kept.extend_from_slice(line.content());
            self.kept_lines += lines;
        } else {
            self.omitted_bytes += bytes;
            self.omitted_lines += lines;
        }
        true
    }

    fn finish(self, tip: Oid, files: usize) -> BeadDiff {
        BeadDiff {
            sha: tip.to_string(),
            patch: String::from_utf8_lossy(&self.kept).into_owned(),
            files,
            omitted_bytes: self.omitted_bytes,
            omitted_lines: self.omitted_lines,
        }
    }
}
