//! Reading what a bead's branch changes, for its review.

use super::push::bare_origin;
use super::*;
use crate::git::PatchLimit;

const ROOMY: PatchLimit = PatchLimit { bytes: 200 * 1024, lines: 4000 };

#[tokio::test]
async fn a_bead_diff_shows_only_what_its_branch_changed_since_it_left_the_project_branch() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let sha =
        bead_commits(&fx, &project, "b1", &[("one.txt", "1\n"), ("README.md", "<hi>\n")]).await;
    // The project branch moves on meanwhile; that is not the bead's change.
    bead_commits(&fx, &project, "b2", &[("two.txt", "2\n")]).await;
    fx.repos.merge(&project, "b2").await.expect("merge b2");

    let diff = fx.repos.bead_diff(&project, "b1", ROOMY).await.expect("diff").expect("a branch");

    assert_eq!((diff.sha.as_str(), diff.files), (sha.as_str(), 2));
    assert!(!diff.truncated(), "{diff:?}");
    assert!(diff.patch.contains("diff --git a/README.md b/README.md\n"), "{}", diff.patch);
    assert!(diff.patch.contains("\n-hi\n+<hi>\n"), "{}", diff.patch);
    assert!(diff.patch.contains("+++ b/one.txt\n@@ -0,0 +1 @@\n+1\n"), "{}", diff.patch);
    assert!(!diff.patch.contains("two.txt"), "{}", diff.patch);
}

#[tokio::test]
async fn a_bead_diff_past_its_limit_keeps_whole_lines_and_says_how_much_it_left_out() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let big: String = (0..100).map(|i| format!("line {i}\n")).collect();
    bead_commits(&fx, &project, "b1", &[("big.txt", &big)]).await;
    let whole = fx.repos.bead_diff(&project, "b1", ROOMY).await.expect("diff").expect("branch");
    let total_lines = whole.patch.lines().count();

    let limit = PatchLimit { bytes: 200 * 1024, lines: 20 };
    let by_lines = fx.repos.bead_diff(&project, "b1", limit).await.expect("diff").expect("branch");
    let limit = PatchLimit { bytes: 300, lines: 4000 };
    let by_bytes = fx.repos.bead_diff(&project, "b1", limit).await.expect("diff").expect("branch");

    assert!(by_lines.truncated() && by_bytes.truncated());
    assert_eq!(by_lines.patch.lines().count(), 20);
    assert!(by_bytes.patch.len() <= 300 && by_bytes.patch.len() > 200, "{}", by_bytes.patch);
    for cut in [&by_lines, &by_bytes] {
        assert!(cut.patch.ends_with('\n') && whole.patch.starts_with(&cut.patch));
        assert_eq!(cut.patch.len() + cut.omitted_bytes, whole.patch.len());
        assert_eq!(cut.patch.lines().count() + cut.omitted_lines, total_lines);
        assert_eq!(cut.files, 1);
    }
}

#[tokio::test]
async fn a_bead_diff_reads_origins_branch_when_this_clone_has_none() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let sha = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.publish(&project, "b1").await.expect("publish");
    // Another replica's clone: it has origin's loom/b1 and no branch of its own.
    let replica = Repos::new(fx.path("replica"));
    replica.ensure(&project).await.expect("ensure");
    let clone = Repository::open(fx.path("replica/repos/web")).expect("the replica's clone");
    assert!(clone.refname_to_id("refs/heads/loom/b1").is_err(), "no branch of its own");

    let diff = replica.bead_diff(&project, "b1", ROOMY).await.expect("diff").expect("origin's");

    assert_eq!((diff.sha.as_str(), diff.files), (sha.as_str(), 1));
    assert!(diff.patch.contains("+1\n"), "{}", diff.patch);
}

#[tokio::test]
async fn a_bead_diff_is_none_without_a_branch_or_a_clone_and_refuses_a_bad_id() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let uncloned = super::project("elsewhere", &fx.path("src"));

    assert_eq!(fx.repos.bead_diff(&project, "never", ROOMY).await.expect("diff"), None);
    assert_eq!(fx.repos.bead_diff(&uncloned, "b1", ROOMY).await.expect("diff"), None);
    let err = fx.repos.bead_diff(&project, "../b1", ROOMY).await.expect_err("a bad id");
    assert!(matches!(err, GitError::InvalidName { .. }), "{err}");
}
