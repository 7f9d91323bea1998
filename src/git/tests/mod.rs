//! Tests of the git module against real repositories in temporary directories, and the
//! fixtures they share (source repositories made with git2, a Repos under a temp data dir).

// The fixtures open and make repositories the way a person's git would, configuration and
// all; only Loom's own code must go through `OwnConfig`.
#![allow(clippy::disallowed_methods)]

mod clone;
mod http;
mod merge;
mod probe;
mod push;
mod read;
mod train;
mod upstream;
mod worktree;

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, RepositoryInitOptions, build::RepoBuilder};
use tempfile::TempDir;

use super::{GitError, ProjectRepo, Repos, Signature, Worktree};

pub(super) struct Fixture {
    tmp: TempDir,
    pub repos: Repos,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let repos = Repos::new(tmp.path().join("data"));
        Fixture { tmp, repos }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn clone_dir(&self, project_id: &str) -> PathBuf {
        self.path("data/repos").join(project_id)
    }

    /// A source repository at `rel` with one commit of `files` on main, and a project on it,
    /// already cloned by Loom.
    pub async fn ready(&self, rel: &str, files: &[(&str, &str)]) -> ProjectRepo {
        let dir = self.path(rel);
        source_with(&dir, files);
        let project = project("web", &dir);
        self.repos.ensure(&project).await.expect("ensure");
        project
    }

    /// Loom's clone of the project, opened for looking at.
    pub fn clone_repo(&self, project_id: &str) -> Repository {
        Repository::open(self.clone_dir(project_id)).expect("the clone")
    }
}

pub(super) fn project(id: &str, repo: &Path) -> ProjectRepo {
    ProjectRepo { id: id.into(), repo: repo.display().to_string(), branch: "main".into() }
}

pub(super) fn agent() -> Signature {
    Signature::new("Ada Agent", "ada@agents.loom")
}

fn person() -> git2::Signature<'static> {
    git2::Signature::now("Pat Person", "pat@example.com").expect("a signature")
}

/// An empty non-bare repository whose first branch will be `main`.
pub(super) fn init_source(dir: &Path) -> Repository {
    Repository::init_opts(dir, RepositoryInitOptions::new().initial_head("main")).expect("init")
}

pub(super) fn source_with(dir: &Path, files: &[(&str, &str)]) -> Repository {
    let repo = init_source(dir);
    commit_files(&repo, files, "Initial commit");
    repo
}

/// Writes `files` into a non-bare repository's working tree and commits them on HEAD.
pub(super) fn commit_files(repo: &Repository, files: &[(&str, &str)], message: &str) -> Oid {
    let workdir = repo.workdir().expect("a working tree");
    let mut index = repo.index().expect("index");
    for (name, content) in files {
        let path = workdir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        index.add_path(Path::new(name)).expect("add");
    }
    index.write().expect("write index");
    let tree = repo.find_tree(index.write_tree().expect("tree")).expect("tree");
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &person(), &person(), message, &tree, &parents).expect("commit")
}

/// Commits top-level `files` onto `branch` of any repository (bare included) without
/// touching a working tree.
pub(super) fn commit_to_ref(repo: &Repository, branch: &str, files: &[(&str, &str)]) -> Oid {
    let refname = format!("refs/heads/{branch}");
    let parent = repo.refname_to_id(&refname).ok().map(|id| repo.find_commit(id).expect("tip"));
    let base = parent.as_ref().map(|c| c.tree().expect("tree"));
    let mut builder = repo.treebuilder(base.as_ref()).expect("treebuilder");
    for (name, content) in files {
        let blob = repo.blob(content.as_bytes()).expect("blob");
        builder.insert(name, blob, 0o100644).expect("insert");
    }
    let tree = repo.find_tree(builder.write().expect("tree")).expect("tree");
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some(&refname), &person(), &person(), "Upstream change", &tree, &parents)
        .expect("commit")
}

pub(super) fn bare_copy(source: &Path, dir: &Path) -> Repository {
    RepoBuilder::new().bare(true).clone(&source.display().to_string(), dir).expect("bare clone")
}

pub(super) fn tip(repo_dir: &Path, branch: &str) -> Option<String> {
    let repo = Repository::open(repo_dir).expect("open");
    repo.refname_to_id(&format!("refs/heads/{branch}")).ok().map(|id| id.to_string())
}

pub(super) fn write(worktree: &Worktree, rel: &str, content: &str) {
    let path = worktree.path.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// Worktree, one file, commit: the usual work of a bead.
pub(super) async fn bead_commits(
    fx: &Fixture,
    project: &ProjectRepo,
    bead: &str,
    files: &[(&str, &str)],
) -> String {
    let worktree = fx.repos.worktree(project, bead).await.expect("worktree");
    for (name, content) in files {
        write(&worktree, name, content);
    }
    let sha = fx.repos.commit(&worktree, &agent(), &format!("Work on {bead}"), &[]).await;
    sha.expect("commit").expect("something to commit")
}

#[test]
fn a_relative_data_dir_is_made_absolute() {
    let repos = Repos::new(PathBuf::from("relative/data"));
    assert!(repos.clone_path("p").is_absolute());
}

#[test]
fn git_errors_map_to_domain_errors_with_stable_codes() {
    use crate::error::Error;
    let cases: Vec<(GitError, &str)> = vec![
        (GitError::SourceMissing("/x".into()), "git_source_missing"),
        (GitError::BranchNotFound { branch: "b".into(), repo: "r".into() }, "git_branch_not_found"),
        (GitError::NotCloned("p".into()), "git_not_cloned"),
        (GitError::invalid_input("no"), "invalid_git_input"),
        (
            GitError::PushRejected { branch: "b".into(), url: "u".into(), reason: "r".into() },
            "git_push_rejected",
        ),
        (
            GitError::UpstreamConflict { branch: "b".into(), url: "u".into(), paths: vec![] },
            "git_upstream_conflict",
        ),
        (
            GitError::AuthFailed { host: "h".into(), url: "u".into(), detail: "d".into() },
            "git_auth_failed",
        ),
        (GitError::io("x", std::io::Error::other("boom")), "internal"),
    ];
    for (git, code) in cases {
        let message = git.to_string();
        let domain = Error::from(git);
        assert_eq!(domain.code(), code, "{message}");
        assert_eq!(domain.to_string(), message);
    }
    let remote = GitError::Remote {
        op: "fetching",
        url: "file:///x".into(),
        source: git2::Error::from_str("could not read"),
    };
    assert!(matches!(Error::from(remote), Error::Unavailable(_)));
    let unreachable = GitError::Unreachable {
        op: "fetching",
        url: "https://h/x".into(),
        source: git2::Error::from_str("failed to connect to h"),
    };
    assert!(matches!(Error::from(unreachable), Error::Unavailable(_)));
}

/// A port on 127.0.0.1 that nothing listens on (bound once by us, then released).
pub(super) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
