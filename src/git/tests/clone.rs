//! `ensure`: cloning, fetching, fast-forwarding, recovering from crashes, and its errors.

use super::*;
use crate::git::{EnsureOutcome, MergeOutcome, PushOutcome};

#[tokio::test]
async fn ensure_clones_a_local_path_into_a_bare_repo_with_origin_s_branches() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hello\n")]).await;

    let clone = fx.clone_repo("web");
    assert!(clone.is_bare());
    assert!(clone.find_remote("origin").is_err(), "origin is the project's URL, not config");
    let theirs = clone.refname_to_id("refs/remotes/origin/main").expect("origin's main");
    assert_eq!(Some(theirs.to_string()), tip(&fx.path("src"), "main"));
    assert_eq!(clone.head().expect("HEAD").name().ok(), Some("refs/heads/main"));
    let head = fx.repos.head(&project).await.expect("head");
    assert_eq!(head.message, "Initial commit");
    assert_eq!(head.files, ["README.md"]);
    let readme = fx.repos.read_file(&project, "README.md").await.expect("read");
    assert_eq!(readme.as_deref(), Some(&b"hello\n"[..]));
    assert_eq!(fx.repos.read_file(&project, "nope.txt").await.expect("read"), None);
}

#[tokio::test]
async fn ensure_clones_a_file_url_and_a_path_with_awkward_characters() {
    let fx = Fixture::new();
    let dir = fx.path("my src:1");
    source_with(&dir, &[("a.txt", "a\n")]);
    let mut project = project("web", &dir);
    project.repo = format!("file://{}", dir.display()).replace(' ', "%20");

    fx.repos.ensure(&project).await.expect("ensure from a file:// URL");
    let file = fx.repos.read_file(&project, "a.txt").await.expect("read");
    assert_eq!(file.as_deref(), Some(&b"a\n"[..]));

    let by_path = ProjectRepo { id: "other".into(), ..super::project("x", &dir) };
    fx.repos.ensure(&by_path).await.expect("ensure from a path with ' ' and ':'");
    assert!(fx.repos.head(&by_path).await.is_ok());
}

#[tokio::test]
async fn ensure_fetches_and_fast_forwards_a_new_upstream_commit() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "one\n")]).await;
    let source = Repository::open(fx.path("src")).expect("source");
    let upstream = commit_files(&source, &[("NEW.md", "two\n")], "Upstream work");

    fx.repos.ensure(&project).await.expect("second ensure");

    let head = fx.repos.head(&project).await.expect("head");
    assert_eq!(head.sha, upstream.to_string());
    assert_eq!(head.files, ["NEW.md"]);
}

#[tokio::test]
async fn ensure_keeps_a_branch_that_is_ahead_of_origin() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "one\n")]).await;
    let ours = bead_commits(&fx, &project, "b1", &[("ours.txt", "x\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");

    let outcome = fx.repos.ensure(&project).await.expect("ensure");

    assert_eq!(outcome, EnsureOutcome::Ready);
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(ours));
}

#[tokio::test]
async fn a_half_cloned_repo_dir_is_removed_and_cloned_again() {
    let fx = Fixture::new();
    let dir = fx.path("src");
    source_with(&dir, &[("README.md", "hello\n")]);
    let project = project("web", &dir);
    let broken = fx.clone_dir("web");
    std::fs::create_dir_all(broken.join("objects")).expect("mkdir");
    std::fs::write(broken.join("config"), "not a git config [").expect("write");
    let staging = fx.path("data/repos/.web.partial");
    std::fs::create_dir_all(&staging).expect("a leftover staging dir");

    fx.repos.ensure(&project).await.expect("ensure recovers");

    assert!(fx.clone_repo("web").is_bare());
    assert!(!staging.exists());
    assert!(fx.repos.head(&project).await.is_ok());
}

#[tokio::test]
async fn an_empty_bare_repo_at_the_clone_s_path_is_filled_from_origin() {
    let fx = Fixture::new();
    let dir = fx.path("src");
    source_with(&dir, &[("README.md", "hello\n")]);
    let project = project("web", &dir);
    Repository::init_bare(fx.clone_dir("web")).expect("init");

    fx.repos.ensure(&project).await.expect("ensure");

    assert_eq!(tip(&fx.clone_dir("web"), "main"), tip(&dir, "main"));
    assert!(fx.repos.head(&project).await.is_ok());
}

#[tokio::test]
async fn origin_left_in_an_older_clone_s_config_is_removed_and_not_used() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hello\n")]).await;
    source_with(&fx.path("other"), &[("other.txt", "x\n")]);
    // Older Loom cloned with libgit2's clone, which keeps origin (and its login) in config.
    let clone = fx.clone_repo("web");
    clone.remote("origin", "https://loom:t0ken@example.invalid/x.git").expect("origin");
    clone.remote_add_push("origin", "refs/heads/x:refs/heads/x").expect("push refspec");

    fx.repos.ensure(&project).await.expect("fetched from the project's URL");

    let config = std::fs::read_to_string(fx.clone_dir("web").join("config")).expect("config");
    for gone in ["t0ken", "example.invalid", "refs/heads/x"] {
        assert!(!config.contains(gone), "{config}");
    }
    assert_eq!(tip(&fx.clone_dir("web"), "main"), tip(&fx.path("src"), "main"));
}

#[tokio::test]
async fn an_empty_bare_repository_gets_its_branch_from_the_first_push() {
    let fx = Fixture::new();
    let dir = fx.path("empty.git");
    Repository::init_bare(&dir).expect("git init --bare");
    let project = project("web", &dir);

    fx.repos.ensure(&project).await.expect("an empty source is fine");
    let sha = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    let merged = fx.repos.merge(&project, "b1").await.expect("merge");
    let pushed = fx.repos.push(&project).await.expect("push");

    assert_eq!(merged, MergeOutcome::FastForward { sha: sha.clone() });
    assert_eq!(pushed, PushOutcome::Pushed { sha: sha.clone() });
    assert_eq!(tip(&dir, "main"), Some(sha.clone()), "the push created the branch");
    let origin = Repository::open(&dir).expect("origin");
    let commit = origin.find_commit(git2::Oid::from_str(&sha).expect("oid")).expect("commit");
    let root = commit.parent(0).expect("the branch's first commit");
    assert_eq!((root.parent_count(), root.tree().expect("tree").len()), (0, 0), "an empty root");
    fx.repos.ensure(&project).await.expect("a second ensure finds the branch");
}

#[tokio::test]
async fn a_missing_branch_is_an_error_until_origin_has_it() {
    let fx = Fixture::new();
    let dir = fx.path("src");
    let source = source_with(&dir, &[("README.md", "hello\n")]);
    let mut dev = project("web", &dir);
    dev.branch = "dev".into();

    let err = fx.repos.ensure(&dev).await.expect_err("no dev on a fresh clone");
    assert!(matches!(&err, GitError::BranchNotFound { branch, .. } if branch == "dev"), "{err}");
    fx.repos.ensure(&project("web", &dir)).await.expect("main exists");
    let err = fx.repos.ensure(&dev).await.expect_err("no dev on an existing clone");
    assert!(matches!(err, GitError::BranchNotFound { .. }), "{err}");

    let sha = commit_to_ref(&source, "dev", &[("dev.txt", "d\n")]);
    fx.repos.ensure(&dev).await.expect("dev now exists upstream");
    assert_eq!(tip(&fx.clone_dir("web"), "dev"), Some(sha.to_string()));
}

#[tokio::test]
async fn a_missing_local_source_is_an_error() {
    let fx = Fixture::new();
    let err = fx.repos.ensure(&project("web", &fx.path("nowhere"))).await.expect_err("missing");
    assert!(matches!(err, GitError::SourceMissing(_)), "{err}");
}

#[tokio::test]
async fn https_and_ssh_urls_to_a_closed_port_say_the_remote_could_not_be_reached() {
    let fx = Fixture::new();
    let port = closed_port();
    for repo in [
        format!("https://loom:s3cret@127.0.0.1:{port}/nothing.git"),
        format!("ssh://git@127.0.0.1:{port}/nothing.git"),
    ] {
        let project = ProjectRepo { id: "web".into(), repo: repo.clone(), branch: "main".into() };
        let err = fx.repos.ensure(&project).await.expect_err("nothing listens");
        assert!(matches!(err, GitError::Unreachable { op: "cloning", .. }), "{repo}: {err:?}");
        let message = err.to_string();
        assert!(message.starts_with("could not reach"), "{message}");
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(crate::error::Error::from(err).code(), "unavailable");
        assert!(!fx.clone_dir("web").exists(), "no clone is left behind");
    }
}

#[tokio::test]
async fn a_scheme_libgit2_has_no_transport_for_is_an_unsupported_url_error() {
    let fx = Fixture::new();
    let project =
        ProjectRepo { id: "web".into(), repo: "svn://127.0.0.1/x".into(), branch: "main".into() };
    let err = fx.repos.ensure(&project).await.expect_err("no transport");
    assert!(matches!(err, GitError::UnsupportedUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("no transport"), "{err}");
    assert_eq!(crate::error::Error::from(err).code(), "git_unsupported_url");
}

#[tokio::test]
async fn a_source_that_vanished_makes_fetch_fail() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hello\n")]).await;
    // Point origin at a directory that is not a repository (the path itself must exist).
    std::fs::remove_dir_all(fx.path("src")).expect("rm");
    std::fs::create_dir_all(fx.path("src")).expect("mkdir");

    let err = fx.repos.ensure(&project).await.expect_err("fetch fails");

    assert!(matches!(err, GitError::Remote { op: "fetching", .. }), "{err}");
}

#[tokio::test]
async fn ids_and_branches_that_cannot_name_a_path_or_ref_are_rejected() {
    let fx = Fixture::new();
    let dir = fx.path("src");
    let mut bad = project("../escape", &dir);
    let err = fx.repos.ensure(&bad).await.expect_err("bad id");
    assert!(matches!(err, GitError::InvalidName { what: "project id", .. }), "{err}");
    bad.id = "web".into();
    bad.branch = "no..dots".into();
    let err = fx.repos.ensure(&bad).await.expect_err("bad branch");
    assert!(matches!(err, GitError::InvalidName { what: "branch", .. }), "{err}");
    bad.branch = "main".into();
    let err = fx.repos.worktree(&bad, "a/b").await.expect_err("bad bead id");
    assert!(matches!(err, GitError::InvalidName { what: "bead id", .. }), "{err}");
}

#[tokio::test]
async fn operations_before_ensure_say_the_project_is_not_cloned() {
    let fx = Fixture::new();
    let project = project("web", &fx.path("src"));
    let err = fx.repos.worktree(&project, "b1").await.expect_err("no clone");
    assert!(matches!(err, GitError::NotCloned(_)), "{err}");
    assert!(matches!(fx.repos.merge(&project, "b1").await, Err(GitError::NotCloned(_))));
    assert!(matches!(fx.repos.push(&project).await, Err(GitError::NotCloned(_))));
    assert!(matches!(fx.repos.log(&project, 5).await, Err(GitError::NotCloned(_))));
}

#[tokio::test]
async fn the_locks_a_killed_process_left_wedge_the_clone_until_a_start_clears_them() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "one\n")]).await;
    let source = Repository::open(fx.path("src")).expect("source");
    let upstream = commit_files(&source, &[("NEW.md", "two\n")], "Upstream work");
    let clone = fx.clone_dir("web");
    let left = ["refs/remotes/origin/main.lock", "packed-refs.lock", "worktrees/b1/index.lock"];
    for path in left {
        std::fs::create_dir_all(clone.join(path).parent().expect("a parent")).expect("mkdir");
        std::fs::write(clone.join(path), "").expect("a lock");
    }

    let wedged = fx.repos.ensure(&project).await.expect_err("a fetch through a stale lock");
    assert!(!wedged.is_source_unusable(), "Loom's own clone, not origin: {wedged:?}");
    assert!(wedged.to_string().contains("failed to lock file"), "{wedged}");

    let mut removed = fx.repos.clear_stale_locks().await.expect("clear");
    removed.sort();
    let mut expected: Vec<_> = left.iter().map(|p| clone.join(p)).collect();
    expected.sort();
    assert_eq!(removed, expected);
    fx.repos.ensure(&project).await.expect("ensure once the locks are gone");
    assert_eq!(tip(&clone, "main"), Some(upstream.to_string()));
    assert!(fx.repos.clear_stale_locks().await.expect("clear").is_empty());

    // A link in the repos dir is not followed, nor is a staging dir swept: neither is a
    // clone of this process's.
    let elsewhere = fx.path("elsewhere");
    std::fs::create_dir_all(elsewhere.join("refs")).expect("mkdir");
    std::fs::write(elsewhere.join("refs/x.lock"), "").expect("a lock");
    std::os::unix::fs::symlink(&elsewhere, fx.path("data/repos/linked")).expect("symlink");
    let staging = fx.path("data/repos/.web.partial");
    std::fs::create_dir_all(&staging).expect("mkdir");
    std::fs::write(staging.join("HEAD.lock"), "").expect("a lock");
    assert!(fx.repos.clear_stale_locks().await.expect("clear").is_empty());
    assert!(elsewhere.join("refs/x.lock").exists() && staging.join("HEAD.lock").exists());
}
