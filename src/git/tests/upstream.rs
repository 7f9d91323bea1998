//! Origin moving on while Loom holds merges it has not pushed: `push` merges origin's branch
//! in (a conflicting one is reported, never forced); `ensure` follows origin's branch, where
//! work lands only by being pushed.

use super::push::bare_origin;
use super::*;
use crate::git::{EnsureOutcome, PushOutcome};

/// Loom merges a bead writing `ours` while someone pushes `theirs` to the bare origin.
/// Returns (Loom's tip, origin's tip).
async fn diverge(fx: &Fixture, ours: (&str, &str), theirs: (&str, &str)) -> (String, String) {
    let origin = Repository::open(fx.path("origin.git")).expect("origin");
    let project = project("web", &fx.path("origin.git"));
    let theirs = commit_to_ref(&origin, "main", &[theirs]).to_string();
    bead_commits(fx, &project, "b1", &[ours]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");
    (tip(&fx.clone_dir("web"), "main").expect("main"), theirs)
}

fn assert_upstream_merge(fx: &Fixture, sha: &str, ours: &str, theirs: &str) {
    let clone = fx.clone_repo("web");
    let commit = clone.find_commit(git2::Oid::from_str(sha).expect("oid")).expect("commit");
    let parents: Vec<String> = commit.parent_ids().map(|id| id.to_string()).collect();
    assert_eq!(parents, [ours, theirs], "Loom's branch first, upstream's second");
    assert_eq!(commit.message().ok(), Some("Merge upstream main into Loom's main\n"));
    assert_eq!(commit.author().name().ok(), Some("Loom"));
}

#[tokio::test]
async fn a_push_after_upstream_moved_merges_it_in_and_origin_gets_both() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let (ours, theirs) = diverge(&fx, ("ours.txt", "o\n"), ("theirs.txt", "t\n")).await;

    let outcome = fx.repos.push(&project).await.expect("push");

    let PushOutcome::Pushed { sha } = outcome else { panic!("not pushed: {outcome:?}") };
    assert_upstream_merge(&fx, &sha, &ours, &theirs);
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(sha.clone()));
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(sha.clone()));
    let origin = Repository::open(fx.path("origin.git")).expect("origin");
    let tree = origin.find_commit(git2::Oid::from_str(&sha).expect("oid")).expect("c").tree();
    let tree = tree.expect("tree");
    for file in ["README.md", "ours.txt", "theirs.txt"] {
        assert!(tree.get_path(Path::new(file)).is_ok(), "origin lacks {file}");
    }
    assert_eq!(fx.repos.push(&project).await.expect("again"), PushOutcome::Pushed { sha });
}

#[tokio::test]
async fn a_same_line_conflict_with_upstream_pushes_nothing_and_names_the_path() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let (ours, theirs) = diverge(&fx, ("README.md", "ours\n"), ("README.md", "theirs\n")).await;

    let err = fx.repos.push(&project).await.expect_err("conflict");

    let GitError::UpstreamConflict { paths, branch, .. } = &err else { panic!("{err:?}") };
    assert_eq!((paths.as_slice(), branch.as_str()), (&["README.md".to_owned()][..], "main"));
    let message = err.to_string();
    assert!(message.contains("README.md") && message.contains("never forces"), "{message}");
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(theirs.clone()), "origin untouched");
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(ours.clone()), "Loom's branch kept");
    assert_eq!(crate::error::Error::from(err).code(), "git_upstream_conflict");

    let again = fx.repos.push(&project).await.expect_err("still a conflict");
    assert!(matches!(again, GitError::UpstreamConflict { .. }), "{again:?}");
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(theirs));
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(ours));
}

/// Work lands only by being pushed: a merge Loom's branch holds that origin never got (a
/// replica died before pushing it) is dropped when the clone is brought up to date, even
/// one that would conflict, so no new worktree builds on it and no push sends it late.
#[tokio::test]
async fn ensure_after_divergence_follows_origin_and_drops_what_loom_never_pushed() {
    for (ours, theirs) in [
        (("ours.txt", "o\n"), ("theirs.txt", "t\n")),
        (("README.md", "ours\n"), ("README.md", "theirs\n")),
    ] {
        let fx = Fixture::new();
        let project = bare_origin(&fx).await;
        let (_, theirs) = diverge(&fx, ours, theirs).await;

        let outcome = fx.repos.ensure(&project).await.expect("ensure");

        assert_eq!(outcome, EnsureOutcome::Ready);
        assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(theirs.clone()), "Loom follows origin");
        assert_eq!(tip(&fx.path("origin.git"), "main"), Some(theirs), "ensure pushes nothing");
        let dropped = fx.repos.read_file(&project, ours.0).await.expect("read");
        assert_ne!(dropped.as_deref(), Some(ours.1.as_bytes()), "the unpushed merge is gone");
    }
}

#[tokio::test]
async fn another_branch_of_a_non_bare_origin_that_moved_is_merged_and_pushed() {
    let fx = Fixture::new();
    let source = source_with(&fx.path("src"), &[("README.md", "hi\n")]);
    commit_to_ref(&source, "dev", &[("dev.txt", "d\n")]);
    let mut project = project("web", &fx.path("src"));
    project.branch = "dev".into();
    fx.repos.ensure(&project).await.expect("ensure");
    let theirs = commit_to_ref(&source, "dev", &[("theirs.txt", "t\n")]).to_string();
    bead_commits(&fx, &project, "b1", &[("ours.txt", "o\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");

    let outcome = fx.repos.push(&project).await.expect("push");

    let PushOutcome::Pushed { sha } = outcome else { panic!("not pushed: {outcome:?}") };
    assert_eq!(tip(&fx.path("src"), "dev"), Some(sha.clone()));
    let merge = source.find_commit(git2::Oid::from_str(&sha).expect("oid")).expect("copied");
    assert_eq!(merge.parent_id(1).expect("second parent").to_string(), theirs);
    assert_eq!(merge.message().ok(), Some("Merge upstream dev into Loom's dev\n"));
    assert_eq!(source.head().expect("head").shorthand().ok(), Some("main"), "HEAD untouched");
}
