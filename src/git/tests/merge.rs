//! Merging bead branches into the project branch.

use super::*;
use crate::git::MergeOutcome;

#[tokio::test]
async fn two_beads_touching_different_files_both_merge_the_second_with_a_merge_commit() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let first = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    let second = bead_commits(&fx, &project, "b2", &[("two.txt", "2\n")]).await;

    let outcome = fx.repos.merge(&project, "b1").await.expect("merge b1");
    assert_eq!(outcome, MergeOutcome::FastForward { sha: first.clone() });
    let outcome = fx.repos.merge(&project, "b2").await.expect("merge b2");

    let MergeOutcome::Merged { sha } = outcome else { panic!("expected a merge: {outcome:?}") };
    let head = fx.repos.head(&project).await.expect("head");
    assert_eq!(head.sha, sha);
    assert_eq!(head.parents, [first, second]);
    assert_eq!(head.message, "Merge loom/b2 into main\n");
    assert_eq!(head.author, Signature::new("Loom", "loom@localhost"));
    assert_eq!(head.committer, head.author);
    assert_eq!(head.files, ["two.txt"]);
    for file in ["one.txt", "two.txt", "README.md"] {
        assert!(fx.repos.read_file(&project, file).await.expect("read").is_some(), "{file}");
    }
    assert_eq!(fx.repos.merge(&project, "b2").await.expect("again"), MergeOutcome::UpToDate);
}

#[tokio::test]
async fn two_beads_touching_the_same_lines_conflict_and_the_branch_stays() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "line\n"), ("other.txt", "o\n")]).await;
    bead_commits(&fx, &project, "b1", &[("README.md", "ours\n")]).await;
    bead_commits(&fx, &project, "b2", &[("README.md", "theirs\n"), ("extra.txt", "e\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge b1");
    let before = tip(&fx.clone_dir("web"), "main");

    let outcome = fx.repos.merge(&project, "b2").await.expect("merge b2");

    assert_eq!(outcome, MergeOutcome::Conflict { paths: vec!["README.md".into()] });
    assert_eq!(tip(&fx.clone_dir("web"), "main"), before);
    let readme = fx.repos.read_file(&project, "README.md").await.expect("read");
    assert_eq!(readme.as_deref(), Some(&b"ours\n"[..]));
    assert_eq!(fx.repos.read_file(&project, "extra.txt").await.expect("read"), None);
}

#[tokio::test]
async fn concurrent_merges_of_one_project_both_land() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let first = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    let second = bead_commits(&fx, &project, "b2", &[("two.txt", "2\n")]).await;

    let (a, b) = tokio::join!(fx.repos.merge(&project, "b1"), fx.repos.merge(&project, "b2"));

    let outcomes = [a.expect("merge b1"), b.expect("merge b2")];
    assert!(outcomes.iter().any(|o| matches!(o, MergeOutcome::FastForward { .. })));
    assert!(outcomes.iter().any(|o| matches!(o, MergeOutcome::Merged { .. })));
    let clone = fx.clone_repo("web");
    let main = clone.refname_to_id("refs/heads/main").expect("main");
    for sha in [first, second] {
        let id = Oid::from_str(&sha).expect("oid");
        assert!(main == id || clone.graph_descendant_of(main, id).expect("graph"), "{sha} lost");
    }
}

#[tokio::test]
async fn merging_a_bead_without_a_branch_is_a_branch_not_found_error() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;

    let err = fx.repos.merge(&project, "never-started").await.expect_err("no branch");

    assert!(
        matches!(&err, GitError::BranchNotFound { branch, .. } if branch == "loom/never-started"),
        "{err}"
    );
}

#[tokio::test]
async fn the_project_branch_merged_into_a_conflicting_worktree_is_finished_by_the_next_commit() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("config.toml", "level = 1\n")]).await;
    bead_commits(&fx, &project, "a", &[("config.toml", "level = 2\n")]).await;
    bead_commits(&fx, &project, "b", &[("config.toml", "level = 3\n")]).await;
    fx.repos.merge(&project, "a").await.expect("merge a");
    let worktree = fx.repos.worktree(&project, "b").await.expect("worktree");

    let paths = fx.repos.merge_base(&project, &worktree).await.expect("merge_base");
    assert_eq!(paths, Some(vec!["config.toml".to_owned()]));
    let marked = std::fs::read_to_string(worktree.path.join("config.toml")).expect("read");
    assert!(marked.contains("<<<<<<<") && marked.contains(">>>>>>>"), "{marked}");
    // Asked again before the commit (a run that stopped before its first turn): the same.
    let again = fx.repos.merge_base(&project, &worktree).await.expect("again");
    assert_eq!(again, Some(vec!["config.toml".to_owned()]));

    write(&worktree, "config.toml", "level = 5\n");
    let sha = fx.repos.commit(&worktree, &agent(), "Merge main", &[]).await.expect("commit");
    assert!(sha.is_some());
    let outcome = fx.repos.merge(&project, "b").await.expect("merge b");
    assert!(matches!(outcome, MergeOutcome::FastForward { .. }), "{outcome:?}");
    // Merged now: nothing more to merge.
    assert_eq!(fx.repos.merge_base(&project, &worktree).await.expect("merged"), None);
}

#[tokio::test]
async fn ahead_lists_what_a_bead_branch_holds_that_the_project_branch_does_not() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    assert!(fx.repos.ahead(&project, "loom/b1", 10).await.expect("no branch").is_empty());
    let first = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    let ahead = fx.repos.ahead(&project, "loom/b1", 10).await.expect("ahead");
    assert_eq!(ahead.iter().map(|c| c.sha.clone()).collect::<Vec<_>>(), [first]);
    fx.repos.merge(&project, "b1").await.expect("merge");
    assert!(fx.repos.ahead(&project, "loom/b1", 10).await.expect("merged").is_empty());
}
