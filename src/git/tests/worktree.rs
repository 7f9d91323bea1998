//! Worktrees, diffs and commits.

use super::*;
use crate::git::MergeOutcome;

#[tokio::test]
async fn a_commit_with_trailers_by_the_agent_fast_forwards_the_project_branch() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hello\n")]).await;
    let worktree = fx.repos.worktree(&project, "web-abc").await.expect("worktree");
    assert_eq!(worktree.branch, "loom/web-abc");
    assert_eq!(worktree.path, fx.path("data/worktrees/web/web-abc"));
    write(&worktree, "src/new.rs", "fn main() {}\n");

    let diff = fx.repos.diff(&worktree).await.expect("diff");
    assert!(diff.contains("diff --git a/src/new.rs b/src/new.rs"), "{diff}");
    assert!(diff.contains("+fn main() {}"), "{diff}");

    let trailers = [("Bead", "web-abc"), ("Run", "0190a0a0-0000-7000-8000-000000000001")];
    let sha = fx.repos.commit(&worktree, &agent(), "Add main\n", &trailers).await.expect("commit");
    let sha = sha.expect("a commit");
    assert_eq!(fx.repos.diff(&worktree).await.expect("diff"), "");

    let outcome = fx.repos.merge(&project, "web-abc").await.expect("merge");
    assert_eq!(outcome, MergeOutcome::FastForward { sha: sha.clone() });
    let head = fx.repos.head(&project).await.expect("head");
    assert_eq!(head.sha, sha);
    assert_eq!(head.author, agent());
    assert_eq!(head.committer, Signature::new("Loom", "loom@localhost"));
    assert_eq!(
        head.message,
        "Add main\n\nBead: web-abc\nRun: 0190a0a0-0000-7000-8000-000000000001\n"
    );
    let expected: Vec<(String, String)> =
        trailers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(head.trailers, expected);
    assert_eq!(head.files, ["src/new.rs"]);
}

#[tokio::test]
async fn the_diff_shows_changes_and_deletions_against_head() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("a.txt", "old\n"), ("b.txt", "gone\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");
    assert_eq!(fx.repos.diff(&worktree).await.expect("diff"), "", "a fresh worktree is clean");
    write(&worktree, "a.txt", "new\n");
    std::fs::remove_file(worktree.path.join("b.txt")).expect("rm");

    let diff = fx.repos.diff(&worktree).await.expect("diff");

    assert!(diff.contains("-old\n+new\n"), "{diff}");
    assert!(diff.contains("deleted file mode") && diff.contains("-gone"), "{diff}");
}

#[tokio::test]
async fn deletions_are_committed_and_ignored_files_are_not() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n"), (".gitignore", "target/\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");
    std::fs::remove_file(worktree.path.join("README.md")).expect("rm");
    write(&worktree, "target/debug/out", "binary\n");
    write(&worktree, "kept.txt", "k\n");

    let sha = fx.repos.commit(&worktree, &agent(), "Tidy", &[]).await.expect("commit");
    assert!(sha.is_some());
    fx.repos.merge(&project, "b1").await.expect("merge");

    let head = fx.repos.head(&project).await.expect("head");
    assert_eq!(head.files, ["README.md", "kept.txt"]);
    assert_eq!(head.message, "Tidy\n");
    assert_eq!(fx.repos.read_file(&project, "README.md").await.expect("read"), None);
    assert_eq!(fx.repos.read_file(&project, "target/debug/out").await.expect("read"), None);
}

#[tokio::test]
async fn a_commit_with_nothing_to_commit_returns_none() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");

    let sha = fx.repos.commit(&worktree, &agent(), "Nothing", &[("Bead", "b1")]).await;

    assert_eq!(sha.expect("commit"), None);
    assert_eq!(fx.repos.merge(&project, "b1").await.expect("merge"), MergeOutcome::UpToDate);
}

#[tokio::test]
async fn bad_commit_input_is_rejected_before_anything_is_staged() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");
    write(&worktree, "x.txt", "x\n");
    let bad_author = Signature::new("", "nobody@example.com");
    let cases = [
        (agent(), "  \n", vec![]),
        (agent(), "has a \0 nul", vec![]),
        (agent(), "ok", vec![("Bad Key", "v")]),
        (agent(), "ok", vec![("Key", "two\nlines")]),
        (agent(), "ok", vec![("Key", " ")]),
        (bad_author, "ok", vec![]),
    ];
    for (author, message, trailers) in cases {
        let err = fx.repos.commit(&worktree, &author, message, &trailers).await;
        assert!(matches!(err, Err(GitError::InvalidInput(_))), "{message:?} {trailers:?}: {err:?}");
    }
    assert!(fx.repos.diff(&worktree).await.expect("diff").contains("+x"), "still uncommitted");
}

#[tokio::test]
async fn a_valid_worktree_is_reused_with_its_uncommitted_changes() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let first = fx.repos.worktree(&project, "b1").await.expect("worktree");
    write(&first, "wip.txt", "half done\n");

    let again = fx.repos.worktree(&project, "b1").await.expect("worktree again");

    assert_eq!(again, first);
    let wip = std::fs::read_to_string(again.path.join("wip.txt")).expect("read");
    assert_eq!(wip, "half done\n");
}

#[tokio::test]
async fn a_worktree_whose_git_file_is_gone_is_recreated_on_its_branch() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let sha = bead_commits(&fx, &project, "b1", &[("done.txt", "committed\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");
    std::fs::remove_file(worktree.path.join(".git")).expect("rm .git");

    let again = fx.repos.worktree(&project, "b1").await.expect("recreated");

    let repo = Repository::open(&again.path).expect("a repository again");
    assert!(repo.is_worktree());
    let head = repo.head().expect("head");
    assert_eq!(head.name().ok(), Some("refs/heads/loom/b1"));
    assert_eq!(head.target().map(|id| id.to_string()), Some(sha), "the branch was kept");
    assert!(again.path.join("done.txt").exists());
}

#[tokio::test]
async fn a_plain_directory_in_place_of_a_worktree_is_replaced() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let path = fx.path("data/worktrees/web/b1");
    std::fs::create_dir_all(&path).expect("mkdir");
    std::fs::write(path.join("junk"), "junk").expect("write");

    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");

    assert!(Repository::open(&worktree.path).expect("open").is_worktree());
    assert!(!worktree.path.join("junk").exists());
    assert!(worktree.path.join("README.md").exists());
}

#[tokio::test]
async fn a_worktree_whose_admin_data_is_gone_is_recreated() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");
    write(&worktree, "lost.txt", "uncommitted\n");
    std::fs::remove_dir_all(fx.clone_dir("web").join("worktrees/b1")).expect("rm admin");

    let again = fx.repos.worktree(&project, "b1").await.expect("recreated");

    assert!(Repository::open(&again.path).expect("open").is_worktree());
    assert!(fx.clone_repo("web").find_worktree("b1").expect("entry").validate().is_ok());
    assert!(!again.path.join("lost.txt").exists(), "a rebuilt worktree starts clean");
}

#[tokio::test]
async fn removing_a_worktree_deletes_merged_branches_keeps_others_and_is_idempotent() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    bead_commits(&fx, &project, "merged", &[("m.txt", "m\n")]).await;
    fx.repos.merge(&project, "merged").await.expect("merge");
    let unmerged = bead_commits(&fx, &project, "open", &[("o.txt", "o\n")]).await;

    for bead in ["merged", "open"] {
        fx.repos.remove_worktree(&project, bead).await.expect("remove");
        fx.repos.remove_worktree(&project, bead).await.expect("remove again");
        assert!(!fx.path("data/worktrees/web").join(bead).exists());
        assert!(fx.clone_repo("web").find_worktree(bead).is_err(), "{bead} was pruned");
    }

    assert_eq!(tip(&fx.clone_dir("web"), "loom/merged"), None);
    assert_eq!(tip(&fx.clone_dir("web"), "loom/open"), Some(unmerged));
    let back = fx.repos.worktree(&project, "open").await.expect("worktree again");
    assert!(back.path.join("o.txt").exists(), "the unmerged work is checked out again");
    let never = super::project("never-cloned", &fx.path("src"));
    fx.repos.remove_worktree(&never, "b1").await.expect("nothing to remove");
}

/// A process killed while the worktree's files were checked out leaves a worktree every
/// validity check accepts, with files missing; reusing it would commit their deletion.
#[tokio::test]
async fn a_worktree_whose_creation_was_interrupted_is_rebuilt_with_every_file() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n"), ("src/lib.rs", "// lib\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");
    // What the killed process left: the mark it made first, half the files.
    std::fs::write(fx.path("data/worktrees/web/b1.unfinished"), "").expect("mark");
    std::fs::remove_file(worktree.path.join("src/lib.rs")).expect("rm");

    let again = fx.repos.worktree(&project, "b1").await.expect("rebuilt");

    assert!(again.path.join("src/lib.rs").exists(), "every file is checked out");
    assert!(!fx.path("data/worktrees/web/b1.unfinished").exists(), "the mark is cleared");
    let sha = fx.repos.commit(&again, &agent(), "nothing", &[]).await.expect("commit");
    assert_eq!(sha, None, "nothing is deleted");
}

/// The same for a removal the process did not finish: the next attempt starts afresh.
#[tokio::test]
async fn a_worktree_whose_removal_was_interrupted_is_rebuilt() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n"), ("src/lib.rs", "// lib\n")]).await;
    let worktree = fx.repos.worktree(&project, "b1").await.expect("worktree");
    std::fs::write(fx.path("data/worktrees/web/b1.unfinished"), "").expect("mark");
    std::fs::remove_file(worktree.path.join("README.md")).expect("rm");

    let again = fx.repos.worktree(&project, "b1").await.expect("rebuilt");

    assert!(again.path.join("README.md").exists());
    fx.repos.remove_worktree(&project, "b1").await.expect("remove");
    assert!(!worktree.path.exists() && !fx.path("data/worktrees/web/b1.unfinished").exists());
}
