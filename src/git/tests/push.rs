//! Pushing the project branch to origin.

use super::*;
use crate::git::PushOutcome;

/// A bare origin made from a one-commit source, and a project cloned from it.
pub(super) async fn bare_origin(fx: &Fixture) -> ProjectRepo {
    source_with(&fx.path("seed"), &[("README.md", "hi\n")]);
    bare_copy(&fx.path("seed"), &fx.path("origin.git"));
    let project = project("web", &fx.path("origin.git"));
    fx.repos.ensure(&project).await.expect("ensure");
    project
}

#[tokio::test]
async fn the_project_branch_is_pushed_to_a_bare_origin() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");
    let main = tip(&fx.clone_dir("web"), "main").expect("main");

    let outcome = fx.repos.push(&project).await.expect("push");

    assert_eq!(outcome, PushOutcome::Pushed { sha: main.clone() });
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(main.clone()));
    let again = fx.repos.push(&project).await.expect("push again");
    assert_eq!(again, PushOutcome::Pushed { sha: main });
}

#[tokio::test]
async fn a_non_bare_origin_with_the_branch_checked_out_is_skipped() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let before = tip(&fx.path("src"), "main");
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");

    let outcome = fx.repos.push(&project).await.expect("push");

    let PushOutcome::Skipped { reason } = outcome else { panic!("pushed: {outcome:?}") };
    assert!(reason.contains("checked out"), "{reason}");
    assert_eq!(tip(&fx.path("src"), "main"), before);
    assert!(!fx.path("src/one.txt").exists());
}

#[tokio::test]
async fn a_branch_checked_out_in_a_worktree_of_a_bare_origin_is_skipped() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let origin = Repository::open(fx.path("origin.git")).expect("origin");
    let main = origin.find_reference("refs/heads/main").expect("main");
    let mut options = git2::WorktreeAddOptions::new();
    options.reference(Some(&main));
    origin.worktree("checkout", &fx.path("origin-checkout"), Some(&options)).expect("worktree");
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");

    let outcome = fx.repos.push(&project).await.expect("push");

    let PushOutcome::Skipped { reason } = outcome else { panic!("pushed: {outcome:?}") };
    assert!(reason.contains("origin-checkout"), "{reason}");
}

#[tokio::test]
async fn another_branch_of_a_non_bare_origin_is_pushed() {
    let fx = Fixture::new();
    let source = source_with(&fx.path("src"), &[("README.md", "hi\n")]);
    commit_to_ref(&source, "dev", &[("dev.txt", "d\n")]);
    let mut project = project("web", &fx.path("src"));
    project.branch = "dev".into();
    fx.repos.ensure(&project).await.expect("ensure");
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");
    let dev = tip(&fx.clone_dir("web"), "dev").expect("dev");

    let outcome = fx.repos.push(&project).await.expect("push");

    assert_eq!(outcome, PushOutcome::Pushed { sha: dev.clone() });
    assert_eq!(tip(&fx.path("src"), "dev"), Some(dev.clone()));
    let commit = source.find_commit(Oid::from_str(&dev).expect("oid")).expect("copied over");
    assert!(commit.tree().expect("tree").get_path(Path::new("one.txt")).is_ok());
    assert_eq!(source.head().expect("head").shorthand().ok(), Some("main"), "HEAD untouched");
}

#[tokio::test]
async fn a_push_goes_to_the_project_s_url_whatever_the_clone_s_config_says() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    bare_copy(&fx.path("seed"), &fx.path("elsewhere.git"));
    let elsewhere = crate::git::names::file_url(&fx.path("elsewhere.git"));
    let origin = crate::git::names::file_url(&fx.path("origin.git"));
    let mut config = git2::Config::open(&fx.clone_dir("web").join("config")).expect("config");
    config.set_str("remote.origin.url", &elsewhere).expect("url");
    config.set_str("remote.origin.pushurl", &elsewhere).expect("pushurl");
    config.set_str(&format!("url.{elsewhere}.pushInsteadOf"), &origin).expect("pushInsteadOf");
    config.set_str(&format!("url.{elsewhere}.insteadOf"), &origin).expect("insteadOf");
    let before = tip(&fx.path("elsewhere.git"), "main");
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");

    let outcome = fx.repos.push(&project).await.expect("push");

    let PushOutcome::Pushed { sha } = outcome else { panic!("not pushed: {outcome:?}") };
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(sha));
    assert_eq!(tip(&fx.path("elsewhere.git"), "main"), before);
}

#[tokio::test]
async fn an_origin_that_vanished_fails_the_push() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    std::fs::remove_dir_all(fx.path("origin.git")).expect("rm");

    let err = fx.repos.push(&project).await.expect_err("no origin");

    assert!(matches!(err, GitError::SourceMissing(_)), "{err}");
}
