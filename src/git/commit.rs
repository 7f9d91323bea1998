//! Inside a bead's worktree: the uncommitted diff, and committing everything as the agent.

use std::path::Path;

use git2::{Diff, DiffFormat, DiffOptions, IndexAddOption, Repository};
use tracing::{info, instrument};

use super::error::{GitContext, GitError, Result};
use super::own_config::OwnConfig;
use super::{LOOM_EMAIL, LOOM_NAME, Repos, Signature, Worktree, blocking};

impl Repos {
    /// The worktree's uncommitted changes (index and working tree against HEAD, untracked
    /// files included, ignored ones not) as a unified patch.
    #[instrument(skip_all, fields(worktree.branch = %worktree.branch))]
    pub async fn diff(&self, worktree: &Worktree) -> Result<String> {
        let (config, path) = (self.git_config(), worktree.path.clone());
        blocking(move || {
            let repo = open_worktree(&config, &path)?;
            let head = repo.head().ctx("reading HEAD")?.peel_to_tree().ctx("reading HEAD")?;
            let mut options = DiffOptions::new();
            options.include_untracked(true).recurse_untracked_dirs(true);
            options.show_untracked_content(true);
            let diff = repo
                .diff_tree_to_workdir_with_index(Some(&head), Some(&mut options))
                .ctx("diffing the worktree")?;
            patch_text(&diff)
        })
        .await
    }

    /// Stages everything (additions, changes, deletions; `.gitignore` respected) and commits
    /// it on the worktree's branch with `author` as author and Loom as committer. The message
    /// is followed by a blank line and one `Key: value` line per trailer. `None` when there
    /// was nothing to commit.
    #[instrument(skip_all, fields(worktree.branch = %worktree.branch))]
    pub async fn commit(
        &self,
        worktree: &Worktree,
        author: &Signature,
        message: &str,
        trailers: &[(&str, &str)],
    ) -> Result<Option<String>> {
        let message = commit_message(message, trailers)?;
        let (config, path, author) = (self.git_config(), worktree.path.clone(), author.clone());
        blocking(move || commit_all(&config, &path, &author, &message)).await
    }
}

fn open_worktree(config: &OwnConfig, path: &Path) -> Result<Repository> {
    config.open(path).with_ctx(|| format!("opening the worktree at {}", path.display()))
}

fn patch_text(diff: &Diff<'_>) -> Result<String> {
    let mut out = Vec::new();
    diff.print(DiffFormat::Patch, |_, _, line| {
        // Content and context lines come without their marker; headers carry their own.
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin() as u8);
        }
        out.extend_from_slice(line.content());
        true
    })
    .ctx("formatting the diff")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub(crate) fn commit_message(message: &str, trailers: &[(&str, &str)]) -> Result<String> {
    let message = message.trim();
    if message.is_empty() {
        return Err(GitError::invalid_input("a commit needs a message"));
    }
    if message.contains('\0') {
        return Err(GitError::invalid_input("a commit message cannot contain a NUL character"));
    }
    let mut text = format!("{message}\n");
    if !trailers.is_empty() {
        text.push('\n');
    }
    for (key, value) in trailers {
        let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value = value.trim();
        if !key_ok || value.is_empty() || value.contains(['\n', '\r', '\0']) {
            return Err(GitError::invalid_input(format!(
                "{key:?}: {value:?} is not a trailer (a key of letters, digits and '-', \
                 and a one-line value)"
            )));
        }
        text.push_str(&format!("{key}: {value}\n"));
    }
    Ok(text)
}

fn commit_all(
    config: &OwnConfig,
    path: &Path,
    author: &Signature,
    message: &str,
) -> Result<Option<String>> {
    let author = git2::Signature::now(&author.name, &author.email).map_err(|e| {
        GitError::invalid_input(format!(
            "{:?} <{}> cannot author a commit: {}",
            author.name,
            author.email,
            e.message()
        ))
    })?;
    let committer = git2::Signature::now(LOOM_NAME, LOOM_EMAIL).ctx("making Loom's signature")?;
    let repo = open_worktree(config, path)?;
    let mut index = repo.index().ctx("reading the index")?;
    index.add_all(["*"], IndexAddOption::DEFAULT, None).ctx("staging changes")?;
    index.update_all(["*"], None).ctx("staging deletions")?;
    index.write().ctx("writing the index")?;
    let tree_id = index.write_tree().ctx("writing the tree")?;
    let head = repo.head().ctx("reading HEAD")?.peel_to_commit().ctx("reading HEAD")?;
    // A merge Loom started in the worktree (`merge_base`) is finished by this commit.
    let merging = match repo.find_reference("MERGE_HEAD") {
        Ok(r) => Some(r.peel_to_commit().ctx("reading MERGE_HEAD")?),
        Err(_) => None,
    };
    if head.tree_id() == tree_id && merging.is_none() {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id).ctx("reading the new tree")?;
    let parents: Vec<&git2::Commit<'_>> = std::iter::once(&head).chain(merging.as_ref()).collect();
    let oid = repo
        .commit(Some("HEAD"), &author, &committer, message, &tree, &parents)
        .ctx("committing")?;
    if merging.is_some() {
        repo.cleanup_state().ctx("ending the merge")?;
    }
    info!(sha = %oid, "committed the worktree's changes");
    Ok(Some(oid.to_string()))
}
