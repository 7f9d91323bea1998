//! `probe`: whether a project's repository answers, nothing cloned.

use super::*;

#[tokio::test]
async fn a_repository_with_the_branch_or_with_no_branch_at_all_answers() {
    let fx = Fixture::new();
    source_with(&fx.path("src"), &[("a.txt", "a\n")]);
    Repository::init_bare(fx.path("empty.git")).expect("git init --bare");

    fx.repos.probe(&project("web", &fx.path("src"))).await.expect("has main");
    fx.repos.probe(&project("web", &fx.path("empty.git"))).await.expect("empty");

    assert!(!fx.clone_dir("web").exists(), "nothing is cloned");
}

#[tokio::test]
async fn a_missing_path_a_missing_branch_and_a_closed_port_are_errors_that_say_so() {
    let fx = Fixture::new();
    source_with(&fx.path("src"), &[("a.txt", "a\n")]);
    let mut dev = project("web", &fx.path("src"));
    dev.branch = "dev".into();
    let port = closed_port();
    let url = format!("https://loom:s3cret@127.0.0.1:{port}/r.git");
    let remote = ProjectRepo { id: "web".into(), repo: url, branch: "main".into() };

    let missing = fx.repos.probe(&project("web", &fx.path("nowhere"))).await;
    let branch = fx.repos.probe(&dev).await;
    let closed = fx.repos.probe(&remote).await;

    assert!(matches!(missing, Err(GitError::SourceMissing(_))), "{missing:?}");
    assert!(matches!(branch, Err(GitError::BranchNotFound { .. })), "{branch:?}");
    let Err(closed) = closed else { panic!("a closed port answered") };
    assert!(matches!(closed, GitError::Unreachable { .. }), "{closed:?}");
    assert!(!closed.to_string().contains("s3cret"), "{closed}");
    assert!(missing.is_err_and(|e| e.is_source_unusable()) && closed.is_source_unusable());
}
