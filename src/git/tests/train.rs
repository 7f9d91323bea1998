//! Trains: bead commits merged onto the tip in Loom's clone, then landed as one push.

use super::push::bare_origin;
use super::*;
use crate::git::{Car, Landed, Published, Waiting};

fn waiting(bead: &str, sha: &str) -> Waiting {
    Waiting { bead_id: bead.into(), sha: sha.into() }
}

#[tokio::test]
async fn a_train_is_built_beside_the_branch_and_lands_as_one_fast_forward_push() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let before = tip(&fx.path("origin.git"), "main").expect("main");
    let first = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    let second = bead_commits(&fx, &project, "b2", &[("two.txt", "2\n")]).await;

    let train = fx
        .repos
        .train(&project, &[waiting("b1", &first), waiting("b2", &second)])
        .await
        .expect("train");

    assert_eq!(train.base, before);
    let [Car::Merged { tip: after_first, .. }, Car::Merged { tip: after_second, .. }] =
        train.cars.as_slice()
    else {
        panic!("both merged: {train:?}")
    };
    assert_eq!(*after_first, first, "the first car is a fast-forward");
    assert_eq!(*after_second, train.tip);
    let clone = fx.clone_repo("web");
    let merge = clone.find_commit(git2::Oid::from_str(&train.tip).expect("oid"));
    let merge = merge.expect("the merge commit");
    assert_eq!(merge.message().ok(), Some("Merge loom/b2 into main\n"));
    let parents: Vec<String> = merge.parent_ids().map(|p| p.to_string()).collect();
    assert_eq!(parents, [first.clone(), second.clone()]);
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(before.clone()), "nothing moved yet");
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(before));

    let landed = fx.repos.land(&project, &train).await.expect("land");

    assert_eq!(landed, Landed::Pushed { sha: train.tip.clone() });
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(train.tip.clone()));
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(train.tip.clone()));
    // The same work again (a replica that lost track of it): it is there already.
    let again = fx
        .repos
        .train(&project, &[waiting("b1", &first), waiting("b2", &second)])
        .await
        .expect("train again");
    assert_eq!(
        again.cars,
        [Car::Landed { bead_id: "b1".into() }, Car::Landed { bead_id: "b2".into() }]
    );
    assert_eq!(again.tip, again.base);
}

#[tokio::test]
async fn a_conflicting_or_missing_commit_is_left_out_of_the_train() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let ours = bead_commits(&fx, &project, "b1", &[("README.md", "ours\n")]).await;
    let theirs = bead_commits(&fx, &project, "b2", &[("README.md", "theirs\n")]).await;
    let other = bead_commits(&fx, &project, "b3", &[("three.txt", "3\n")]).await;
    let gone = "0123456789abcdef0123456789abcdef01234567";

    let train = fx
        .repos
        .train(
            &project,
            &[
                waiting("b1", &ours),
                waiting("b2", &theirs),
                waiting("b4", gone),
                waiting("b3", &other),
            ],
        )
        .await
        .expect("train");

    assert_eq!(train.cars[0], Car::Merged { bead_id: "b1".into(), tip: ours.clone() });
    assert_eq!(
        train.cars[1],
        Car::Conflict { bead_id: "b2".into(), paths: vec!["README.md".into()] }
    );
    assert_eq!(train.cars[2], Car::Missing { bead_id: "b4".into() });
    let Car::Merged { tip: last, .. } = &train.cars[3] else { panic!("{train:?}") };
    assert_eq!(*last, train.tip, "the train goes on past the cars left out");
    let landed = fx.repos.land(&project, &train).await.expect("land");
    assert_eq!(landed, Landed::Pushed { sha: train.tip.clone() });
    let readme = fx.repos.read_file(&project, "README.md").await.expect("read");
    assert_eq!(readme.as_deref(), Some(&b"ours\n"[..]));
}

#[tokio::test]
async fn a_train_whose_base_moved_on_origin_does_not_land() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let work = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    let train = fx.repos.train(&project, &[waiting("b1", &work)]).await.expect("train");
    let origin = Repository::open(fx.path("origin.git")).expect("origin");
    let moved = commit_to_ref(&origin, "main", &[("elsewhere.txt", "x\n")]).to_string();

    let landed = fx.repos.land(&project, &train).await.expect("land");

    assert_eq!(landed, Landed::Moved);
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(moved.clone()), "origin untouched");
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(train.base.clone()));
    // Built again, the train starts from origin's new tip and lands.
    let again = fx.repos.train(&project, &[waiting("b1", &work)]).await.expect("train");
    assert_eq!(again.base, moved);
    assert_eq!(
        fx.repos.land(&project, &again).await.expect("land"),
        Landed::Pushed { sha: again.tip.clone() }
    );
}

#[tokio::test]
async fn an_origin_with_the_branch_checked_out_is_left_alone_and_loom_keeps_the_landing() {
    let fx = Fixture::new();
    let project = fx.ready("src", &[("README.md", "hi\n")]).await;
    let before = tip(&fx.path("src"), "main");
    let work = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    let train = fx.repos.train(&project, &[waiting("b1", &work)]).await.expect("train");

    let landed = fx.repos.land(&project, &train).await.expect("land");

    let Landed::Kept { reason } = landed else { panic!("{landed:?}") };
    assert!(reason.contains("checked out"), "{reason}");
    assert_eq!(tip(&fx.path("src"), "main"), before);
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(work));
}

#[tokio::test]
async fn the_check_worktree_follows_the_commit_to_check_keeping_only_ignored_leftovers() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let files = [(".gitignore", "target/\n"), ("a.txt", "1\n"), ("gone.txt", "x\n")];
    let first = bead_commits(&fx, &project, "b1", &files).await;
    let wt = fx.repos.check_worktree(&project, &first).await.expect("check worktree");
    assert!(wt.path.ends_with("worktrees/web/_check"), "{}", wt.path.display());
    assert_eq!(std::fs::read_to_string(wt.path.join("a.txt")).expect("a.txt"), "1\n");
    write(&wt, "target/cache.bin", "built");
    write(&wt, "stray.txt", "left by the check");
    write(&wt, "a.txt", "changed by the check");
    // The bead goes on: b.txt added, gone.txt deleted.
    let bead = fx.repos.worktree(&project, "b1").await.expect("bead worktree");
    std::fs::remove_file(bead.path.join("gone.txt")).expect("rm");
    let second = bead_commits(&fx, &project, "b1", &[("b.txt", "2\n")]).await;

    let again = fx.repos.check_worktree(&project, &second).await.expect("again");

    assert_eq!(again, wt, "the same worktree, reused");
    let read = |rel: &str| std::fs::read_to_string(wt.path.join(rel)).ok();
    assert_eq!(read("a.txt").as_deref(), Some("1\n"), "tracked files as committed");
    assert_eq!(read("b.txt").as_deref(), Some("2\n"));
    assert_eq!(read("gone.txt"), None, "deleted in the commit");
    assert_eq!(read("stray.txt"), None, "untracked files go");
    assert_eq!(read("target/cache.bin").as_deref(), Some("built"), "ignored ones stay");
    let bad = fx.repos.check_worktree(&project, "0123456789abcdef0123456789abcdef01234567").await;
    assert!(bad.is_err());
}

/// A merge a replica made in its clone and never pushed (it died; the bead landed again
/// through another replica since) is dropped when the next train is built: it never reaches
/// origin as a second landing.
#[tokio::test]
async fn a_merge_loom_never_pushed_is_dropped_not_landed_late() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let origin_tip = tip(&fx.path("origin.git"), "main").expect("main");
    let stale = commit_to_ref(&fx.clone_repo("web"), "main", &[("stale.txt", "twice\n")]);
    // As a run does before it makes its worktree.
    fx.repos.ensure(&project).await.expect("ensure");
    let work = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;

    let train = fx.repos.train(&project, &[waiting("b1", &work)]).await.expect("train");

    assert_eq!(train.base, origin_tip, "built on origin's tip, not Loom's stale branch");
    assert_eq!(tip(&fx.clone_dir("web"), "main"), Some(origin_tip), "Loom's branch follows origin");
    let landed = fx.repos.land(&project, &train).await.expect("land");
    assert!(matches!(landed, Landed::Pushed { .. }), "{landed:?}");
    let origin = git2::Repository::open(fx.path("origin.git")).expect("origin");
    let head = origin.refname_to_id("refs/heads/main").expect("main");
    assert!(
        !origin.graph_descendant_of(head, stale).unwrap_or(false) && head != stale,
        "the stale merge never reached origin"
    );
}

/// A finished bead's branch is published to origin so another replica's queue can fetch
/// it, and a replica whose own copy of the branch is older takes origin's; once landed it
/// is removed from origin.
#[tokio::test]
async fn a_published_bead_branch_is_taken_by_another_clone_and_removed_once_landed() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let work = bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    assert_eq!(fx.repos.publish(&project, "b1").await.expect("publish"), Published::Pushed);
    assert_eq!(tip(&fx.path("origin.git"), "loom/b1"), Some(work.clone()));

    // Another replica: its own data dir, the same origin.
    let other = Repos::new(fx.path("other-data"));
    other.ensure(&project).await.expect("ensure");
    let train = other.train(&project, &[waiting("b1", &work)]).await.expect("train");
    assert!(matches!(train.cars.as_slice(), [Car::Merged { .. }]), "{train:?}");
    let worktree = other.worktree(&project, "b1").await.expect("worktree");
    let opened = git2::Repository::open(&worktree.path).expect("open");
    let head = opened.head().expect("head").target().map(|o| o.to_string());
    assert_eq!(head, Some(work.clone()), "origin's branch taken");

    other.land(&project, &train).await.expect("land");
    other.unpublish(&project, "b1").await.expect("unpublish");
    assert_eq!(tip(&fx.path("origin.git"), "loom/b1"), None);
    assert_eq!(tip(&fx.path("origin.git"), "main"), Some(work));
}
