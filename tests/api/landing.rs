//! Verified landing: a finished bead lands only through the project's merge queue, whose
//! check runs in the sandbox on the merged tree; reviews by people gate it when asked for.
//! Real git, the real sandbox, the scripted gateway.

use serde_json::{Value, json};

use crate::support::gateway::Reply;
use crate::support::work::Work;
use loom::executor::Limits;

/// A project whose queue runs `check` (with `settings` on top).
pub(crate) async fn work_with(files: &[(&str, &str)], agents: usize, settings: Value) -> Work {
    let w = Work::new(files, agents, Limits::default()).await;
    let admin = w.app.admin.clone();
    let res = w
        .app
        .call(reqwest::Method::PATCH, "/api/v1/projects/web", Some(&admin), Some(settings))
        .await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    w
}

/// The agent of `bead` writes `path` and is done.
pub(crate) fn writes(w: &Work, bead: &str, path: &str, content: &str) {
    let write = json!({"action": "write_file", "path": path, "content": content});
    w.script.push_for(bead, Reply::action(write));
    let done = json!({"action": "done", "summary": format!("Wrote {path}.")});
    w.script.push_for(bead, Reply::action(done));
}

async fn queue(w: &Work) -> Value {
    let res = w.app.get("/api/v1/projects/web/queue").await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    res.body
}

/// Waits until the member (who files the beads) is notified `reason` about `bead`.
pub(crate) async fn notified(w: &Work, bead: &str, reason: &str) {
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = w.app.get("/api/v1/notifications").await.body;
        let items = seen["items"].as_array().cloned().unwrap_or_default();
        if items.iter().any(|n| n["reason"] == reason && n["subject"] == bead) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no {reason} notification for {bead}: {seen}");
}

fn comments(bead: &Value) -> String {
    let all = bead["comments"].as_array().cloned().unwrap_or_default();
    all.iter().filter_map(|c| c["body"].as_str()).collect::<Vec<_>>().join("\n---\n")
}

#[tokio::test]
async fn a_green_check_lands_the_work_and_records_the_check() {
    let check = "test -f done.txt && echo all good";
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"check_command": check})).await;
    let bead = w.bead("Finish it").await;
    writes(&w, &bead, "done.txt", "done\n");
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert_eq!(shown["close_reason"], "Wrote done.txt.");
    assert_eq!(w.upstream.file("done.txt"), "done\n");
    let q = queue(&w).await;
    assert_eq!(q["depth"], 0);
    let check = &q["recent"][0];
    assert_eq!(
        (check["outcome"].as_str(), check["exit_code"].as_i64(), check["landed"].as_bool()),
        (Some("green"), Some(0), Some(true)),
        "{q}"
    );
    assert_eq!(check["beads"], json!([bead]));
    notified(&w, &bead, "landed").await;
    assert_eq!(check["tip_sha"].as_str(), Some(w.upstream.git(&["rev-parse", "main"]).trim()));
    let history = w.app.get(&format!("/api/v1/activity?bead={bead}")).await.body;
    let kinds: Vec<&str> =
        history["items"].as_array().unwrap().iter().filter_map(|i| i["kind"].as_str()).collect();
    for kind in ["bead.landing", "git.merged", "bead.closed"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    // Origin keeps no branch of a bead that landed.
    let branches = w.upstream.git(&["branch", "--list", "loom/*"]);
    assert_eq!(branches.trim(), "", "{branches}");
}

#[tokio::test]
async fn a_red_check_lands_nothing_and_its_output_reaches_the_bead_and_the_next_run() {
    let check = "grep -q fixed app.txt || { echo \"test_app FAILED: app.txt says $(cat app.txt)\"; exit 3; }";
    let mut w = work_with(&[("app.txt", "old\n")], 1, json!({"check_command": check})).await;
    let before = w.upstream.git(&["rev-parse", "main"]);
    let bead = w.bead("Fix the app").await;
    writes(&w, &bead, "app.txt", "broken\n");
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("open"), Some(1)));
    assert_eq!(w.upstream.git(&["rev-parse", "main"]), before, "nothing landed");
    let said = comments(&shown);
    assert!(said.contains("test_app FAILED: app.txt says broken"), "{said}");
    assert!(said.contains("[exit code 3]"), "{said}");
    notified(&w, &bead, "check_failed").await;
    let q = queue(&w).await;
    assert_eq!(
        (q["recent"][0]["outcome"].as_str(), q["recent"][0]["landed"].as_bool()),
        (Some("red"), Some(false)),
        "{q}"
    );

    // Its next run (after the back-off) is told why, continues on its branch, and lands.
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE beads SET not_before = NULL")
        .execute(&mut w.app.pool.get().await.unwrap())
        .await
        .unwrap();
    writes(&w, &bead, "app.txt", "fixed\n");
    let asked = w.script.completions().len();
    w.settle().await;
    let task = w.script.completions()[asked]["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(task.contains("test_app FAILED"), "{task}");
    assert_eq!(w.show(&bead).await["status"], "closed");
    assert_eq!(w.upstream.file("app.txt"), "fixed\n");
}

#[tokio::test]
async fn a_check_that_times_out_blocks_the_bead_check_unavailable_and_lands_nothing() {
    let settings = json!({"check_command": "echo checking; sleep 30", "check_timeout_s": 1});
    let mut w = work_with(&[("a.txt", "a\n")], 1, settings).await;
    let before = w.upstream.git(&["rev-parse", "main"]);
    let bead = w.bead("Hang the check").await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(
        (shown["status"].as_str(), shown["blocked_reason"].as_str()),
        (Some("blocked"), Some("check_unavailable")),
        "{shown}"
    );
    assert_eq!(w.upstream.git(&["rev-parse", "main"]), before, "nothing landed");
    let said = comments(&shown);
    assert!(said.contains("timed out") && said.contains("checking"), "{said}");
    assert_eq!(queue(&w).await["recent"][0]["outcome"], "unavailable");
}

#[tokio::test]
async fn a_check_command_that_is_not_there_blocks_the_bead_and_lands_nothing() {
    let settings = json!({"check_command": "no-such-checker --all"});
    let mut w = work_with(&[("a.txt", "a\n")], 1, settings).await;
    let before = w.upstream.git(&["rev-parse", "main"]);
    let bead = w.bead("Check with nothing").await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(shown["blocked_reason"], "check_unavailable", "{shown}");
    assert!(comments(&shown).contains("could not be run"), "{}", comments(&shown));
    assert_eq!(w.upstream.git(&["rev-parse", "main"]), before, "nothing landed");
}

#[tokio::test]
async fn a_human_review_approves_or_asks_for_changes_and_viewers_cannot() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "human"})).await;
    let before = w.upstream.git(&["rev-parse", "main"]);
    let bead = w.bead("Reviewed work").await;
    writes(&w, &bead, "b.txt", "first\n");
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "review", "{shown}");
    assert!(shown["landing_sha"].as_str().is_some_and(|s| s.len() == 40), "{shown}");
    assert_eq!(w.upstream.git(&["rev-parse", "main"]), before, "nothing lands unreviewed");
    let q = queue(&w).await;
    assert_eq!(q["in_review"][0]["id"], bead, "{q}");
    notified(&w, &bead, "review_requested").await;

    // Viewers cannot review; a request needs a body; approval is for beads in review.
    let approve = format!("/api/v1/beads/{bead}/approve");
    let changes = format!("/api/v1/beads/{bead}/request-changes");
    let res =
        w.app.call(reqwest::Method::POST, &approve, Some(&w.app.viewer), Some(json!({}))).await;
    assert_eq!(res.status.as_u16(), 403, "{:?}", res.body);
    let res = w.app.post(&changes, json!({"body": "  "})).await;
    assert_eq!(
        (res.status.as_u16(), res.body["error"]["code"].as_str()),
        (422, Some("body_required"))
    );

    let res = w.app.post(&changes, json!({"body": "Say second, not first."})).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    assert_eq!(res.body["status"], "open");
    writes(&w, &bead, "b.txt", "second\n");
    let asked = w.script.completions().len();
    w.settle().await;
    let task = w.script.completions()[asked]["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(task.contains("Say second, not first."), "{task}");
    assert_eq!(w.show(&bead).await["status"], "review");

    let res = w.app.post(&approve, json!({"comment": "Good."})).await;
    assert_eq!((res.status.as_u16(), res.body["status"].as_str()), (200, Some("landing")));
    let res = w.app.post(&approve, json!({})).await;
    assert_eq!(
        (res.status.as_u16(), res.body["error"]["code"].as_str()),
        (409, Some("not_in_review"))
    );
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    assert_eq!(w.upstream.file("b.txt"), "second\n");
}

#[tokio::test]
async fn review_rounds_are_bounded_then_a_person_decides() {
    let settings = json!({"review": "human", "max_review_rounds": 1});
    let mut w = work_with(&[("a.txt", "a\n")], 1, settings).await;
    let bead = w.bead("Never quite right").await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    let res =
        w.app.post(&format!("/api/v1/beads/{bead}/request-changes"), json!({"body": "No."})).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    assert_eq!(
        (res.body["status"].as_str(), res.body["blocked_reason"].as_str()),
        (Some("blocked"), Some("needs_human")),
        "{}",
        res.body
    );
}

/// Eight beads wait at once and one breaks the check: the train lands the seven green ones
/// and sends the red one back, in at most 1 + log2(8) + 1 checks.
#[tokio::test]
async fn a_train_of_eight_with_one_red_bead_lands_the_seven_and_sends_back_the_red() {
    let check = "if grep -l BROKEN *.txt; then echo 'a file is broken'; exit 1; fi";
    let settings = json!({"check_command": check, "review": "human"});
    let mut w = work_with(&[("a.txt", "a\n")], 4, settings).await;
    let mut beads = Vec::new();
    for i in 0..8 {
        let bead = w.bead(&format!("File {i}")).await;
        let content = if i == 5 { "BROKEN\n" } else { "fine\n" };
        writes(&w, &bead, &format!("f{i}.txt"), content);
        beads.push(bead);
    }
    // Reviews hold them until all eight wait; approved, they enter the queue together.
    w.settle().await;
    for bead in &beads {
        let res = w.app.post(&format!("/api/v1/beads/{bead}/approve"), json!({})).await;
        assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    }
    assert_eq!(queue(&w).await["depth"], 8);
    w.settle().await;
    for (i, bead) in beads.iter().enumerate() {
        let shown = w.show(bead).await;
        if i == 5 {
            assert_eq!(
                (shown["status"].as_str(), shown["attempts"].as_i64()),
                (Some("open"), Some(1))
            );
            let said = comments(&shown);
            assert!(said.contains("f5.txt") && said.contains("narrowing that train"), "{said}");
        } else {
            assert_eq!(shown["status"], "closed", "{i}: {shown}");
            assert_eq!(w.upstream.file(&format!("f{i}.txt")), "fine\n");
        }
    }
    let checks = queue(&w).await["recent"].as_array().cloned().unwrap_or_default();
    assert!((2..=5).contains(&checks.len()), "{checks:#?}");
    assert_eq!(
        checks.last().unwrap()["beads"].as_array().map(Vec::len),
        Some(8),
        "the first check took all eight"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_approves_and_requests_changes() {
    use crate::support::cli::Cli;
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "human"})).await;
    let bead = w.bead("Reviewed from a terminal").await;
    writes(&w, &bead, "b.txt", "one\n");
    w.settle().await;
    let viewer = Cli::with_token(&w.app.base, &w.app.viewer);
    let (ok, _, err) = viewer.run(&["bead", "approve", &bead], None);
    assert!(!ok && err.contains("forbidden"), "{err}");
    let member = Cli::with_token(&w.app.base, &w.app.member);
    let (ok, out, err) = member.run(&["bead", "request-changes", &bead, "Write two."], None);
    assert!(ok && out.contains("[open]"), "{out}{err}");
    writes(&w, &bead, "b.txt", "two\n");
    w.settle().await;
    let (ok, out, _) = member.run(&["bead", "show", &bead], None);
    assert!(ok && out.contains("review"), "{out}");
    let (ok, out, err) = member.run(&["bead", "approve", &bead, "--comment", "Good."], None);
    assert!(ok && out.contains("[landing]"), "{out}{err}");
    let (ok, _, err) = member.run(&["bead", "approve", &bead], None);
    assert!(!ok && err.contains("not_in_review"), "{err}");
    w.settle().await;
    assert_eq!(w.upstream.file("b.txt"), "two\n");
}

/// A `blocks` dependency added to a bead whose work already waits (in review, or in the
/// queue) holds its landing back until the blocker has closed: its work never lands before
/// the work it waits for. (A bead in progress finishes its run the same way and waits in
/// the queue.)
#[tokio::test]
async fn a_blocker_added_to_a_bead_in_the_queue_holds_its_landing_until_it_closes() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "human"})).await;
    let late = w.bead("Depends on something filed late").await;
    writes(&w, &late, "late.txt", "late\n");
    w.settle().await;
    assert_eq!(w.show(&late).await["status"], "review");
    let first = w.bead("Has to land first").await;
    let dep = json!({"depends_on": first, "kind": "blocks"});
    let res = w.app.post(&format!("/api/v1/beads/{late}/dependencies"), dep).await;
    assert!(res.status.is_success(), "{:?}", res.body);
    let res = w.app.post(&format!("/api/v1/beads/{late}/approve"), json!({})).await;
    assert_eq!(res.body["status"], "landing", "{:?}", res.body);
    // Nothing else to do: the queue leaves it waiting.
    w.executors.run_until_idle().await.unwrap();
    assert_eq!(w.show(&late).await["status"], "landing");
    assert_eq!(queue(&w).await["waiting"][0]["waiting_on"], 1);

    writes(&w, &first, "first.txt", "first\n");
    w.settle().await;
    let res = w.app.post(&format!("/api/v1/beads/{first}/approve"), json!({})).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    w.settle().await;
    let (a, b) = (w.show(&first).await, w.show(&late).await);
    assert_eq!((a["status"].as_str(), b["status"].as_str()), (Some("closed"), Some("closed")));
    assert!(a["closed_at"].as_str() < b["closed_at"].as_str(), "{a}\n{b}");
    let subjects = w.upstream.git(&["log", "--format=%s", "main"]);
    let pos = |what: &str| subjects.lines().position(|l| l.contains(what));
    let merged_late = pos(&format!("Merge loom/{late} into main"));
    assert!(merged_late.is_some() && merged_late < pos("first.txt"), "newest first: {subjects}");
}

/// `kill -9` of the replica running a project's check: nothing lands meanwhile, the next
/// owner of the project ends the check it left `interrupted`, checks the train again and
/// lands the bead exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_check_lands_nothing_and_the_next_owner_lands_it_once() {
    use diesel_async::RunQueryDsl;
    use std::time::Duration;
    let settings = json!({"check_command": "echo checking; sleep 60"});
    let mut w = work_with(&[("a.txt", "a\n")], 1, settings).await;
    let before = w.upstream.git(&["rev-parse", "main"]);
    let bead = w.bead("Outlive a crash in the check").await;
    writes(&w, &bead, "b.txt", "b\n");
    let mut server = w.serve_beside();
    #[derive(diesel::QueryableByName)]
    struct Running {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let running = "SELECT count(*) AS n FROM checks WHERE outcome IS NULL";
    for _ in 0..600 {
        let mut conn = w.app.pool.get().await.unwrap();
        let found: Running = diesel::sql_query(running).get_result(&mut conn).await.unwrap();
        if found.n > 0 {
            break;
        }
        server.assert_running();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(queue(&w).await["checking"]["beads"], json!([bead]), "{}", server.log());
    server.kill_hard().await;
    assert_eq!(w.upstream.git(&["rev-parse", "main"]), before, "nothing landed mid-check");

    // A quick check now; this process takes the project over once the dead owner's lease
    // lapses (3 s).
    let admin = w.app.admin.clone();
    let quick = json!({"check_command": "test -f b.txt"});
    w.app.call(reqwest::Method::PATCH, "/api/v1/projects/web", Some(&admin), Some(quick)).await;
    w.take_over(&bead).await;
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("closed"), Some(0)));
    let q = queue(&w).await;
    let outcomes: Vec<&str> =
        q["recent"].as_array().unwrap().iter().filter_map(|c| c["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["green", "interrupted"], "newest first: {q}");
    let with_trailer =
        w.upstream.git(&["log", "--format=%B", "main"]).matches(&format!("Bead: {bead}")).count();
    assert_eq!(with_trailer, 1, "the bead's work is in the history once");
    let merged = w.app.get(&format!("/api/v1/activity?bead={bead}&kind=git.merged")).await;
    assert_eq!(merged.body["items"].as_array().map(Vec::len), Some(1), "{}", merged.body);
}

/// A replica that loses a project while its check runs (cut off, not dead) finishes that
/// check; the project's new owner does not start a second one meanwhile, and the bead lands
/// once: two replicas never run one project's queue at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_check_one_project_at_once() {
    use diesel_async::RunQueryDsl;
    use std::time::Duration;
    let settings = json!({"check_command": "sleep 2; test -f b.txt"});
    let mut w = work_with(&[("a.txt", "a\n")], 1, settings).await;
    let bead = w.bead("Checked once").await;
    writes(&w, &bead, "b.txt", "b\n");
    w.dispatcher.run_until_idle().await.unwrap();
    // The first replica runs the bead and starts its check.
    for _ in 0..200 {
        w.executors.step().await.unwrap();
        if !queue(&w).await["checking"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!queue(&w).await["checking"].is_null(), "a check runs");
    // Its lease lapses under it: a second replica takes the project over.
    diesel::sql_query("UPDATE executor_leases SET expires_at = now() - interval '1 second'")
        .execute(&mut w.app.pool.get().await.unwrap())
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut second = loom::executor::Executors::start(
        w.app.pool.clone(),
        w.gateway.clone(),
        other.path(),
        loom::beads::RetryPolicy::default(),
        Default::default(),
    );
    second.run_until_idle().await.unwrap();
    assert_eq!(second.owned(), ["web"]);
    let q = queue(&w).await;
    assert_eq!(q["recent"].as_array().map(Vec::len), Some(0), "no second check: {q}");
    // The first replica's check ends and lands the bead; the second has nothing left.
    for _ in 0..100 {
        w.executors.step().await.unwrap();
        if w.show(&bead).await["status"] == "closed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.run_until_idle().await.unwrap();
    assert_eq!(w.show(&bead).await["status"], "closed");
    let checks = queue(&w).await["recent"].as_array().cloned().unwrap_or_default();
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(
        (checks[0]["outcome"].as_str(), checks[0]["landed"].as_bool()),
        (Some("green"), Some(true))
    );
    let merged = w.app.get(&format!("/api/v1/activity?bead={bead}&kind=git.merged")).await;
    assert_eq!(merged.body["items"].as_array().map(Vec::len), Some(1), "{}", merged.body);
}

#[tokio::test]
async fn landing_settings_are_checked_shown_and_reset_with_null() {
    let w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let admin = w.app.admin.clone();
    let patch = |body: Value| {
        w.app.call(reqwest::Method::PATCH, "/api/v1/projects/web", Some(&admin), Some(body))
    };
    let shown = w.app.get("/api/v1/projects/web").await.body;
    assert_eq!(
        (&shown["check_command"], &shown["check_timeout_s"], &shown["review"], &shown["max_train"]),
        (&Value::Null, &json!(1800), &json!("none"), &json!(8)),
        "{shown}"
    );
    for (body, code) in [
        (json!({"check_timeout_s": 0}), "invalid_check_timeout_s"),
        (json!({"max_train": 65}), "invalid_max_train"),
        (json!({"max_review_rounds": 0}), "invalid_max_review_rounds"),
        (json!({"review": "bogus"}), "invalid_review"),
        (json!({"check_command": "x".repeat(10_001)}), "invalid_check_command"),
    ] {
        let res = patch(body.clone()).await;
        assert_eq!(
            (res.status.as_u16(), res.body["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}: {:?}",
            res.body
        );
    }
    let set = json!({"check_command": " cargo test ", "check_timeout_s": 60, "max_train": 4, "review": "human"});
    let res = patch(set).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    assert_eq!(
        (
            &res.body["check_command"],
            &res.body["check_timeout_s"],
            &res.body["max_train"],
            &res.body["review"]
        ),
        (&json!("cargo test"), &json!(60), &json!(4), &json!("human"))
    );
    let reset =
        json!({"check_command": null, "check_timeout_s": null, "max_train": null, "review": null});
    let res = patch(reset).await;
    assert_eq!(
        (
            &res.body["check_command"],
            &res.body["check_timeout_s"],
            &res.body["max_train"],
            &res.body["review"]
        ),
        (&Value::Null, &json!(1800), &json!(8), &json!("none"))
    );
    // Members do not change a project's landing.
    let res = w.app.patch("/api/v1/projects/web", json!({"check_command": "true"})).await;
    assert_eq!(res.status.as_u16(), 403);
    let res = w.app.get("/api/v1/projects/nope/queue").await;
    assert_eq!(res.status.as_u16(), 404);
}

/// A project whose repository is someone's working copy with the branch checked out: the
/// queue lands in Loom's clone only, never moves the person's branch, and says so on the bead.
#[tokio::test]
async fn work_for_a_checked_out_working_copy_lands_in_loom_s_clone_and_says_so() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({})).await;
    let working_copy = w.upstream.dir.path().join("work");
    let before = crate::support::work::git(&working_copy, &["rev-parse", "main"]);
    let repo = working_copy.to_string_lossy().into_owned();
    let admin = w.app.admin.clone();
    let body =
        json!({"id": "mine", "name": "Mine", "repo": repo, "check_command": "test -f b.txt"});
    let res = w.app.call(reqwest::Method::POST, "/api/v1/projects", Some(&admin), Some(body)).await;
    assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
    let bead = w.app.bead("mine", "Work on my copy", json!({})).await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert!(comments(&shown).contains("Landed in Loom's clone only"), "{}", comments(&shown));
    let after = crate::support::work::git(&working_copy, &["rev-parse", "main"]);
    assert_eq!(after, before, "the person's checked-out branch is untouched");
    let branches = crate::support::work::git(&working_copy, &["branch", "--list", "loom/*"]);
    assert_eq!(branches.trim(), "", "no bead branch is published into a working copy");
    let clone = w.data.path().join("repos/mine");
    let landed = crate::support::work::git(&clone, &["show", "main:b.txt"]);
    assert_eq!(landed, "b\n");
}

/// A child filed under a bead whose work waits in the queue: the work lands, but the bead
/// cannot close before its child, so it waits for a person instead of failing the queue.
#[tokio::test]
async fn a_bead_that_gained_an_open_child_lands_its_work_and_waits_for_a_person() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "human"})).await;
    let parent = w.bead("Parent whose work waits").await;
    writes(&w, &parent, "p.txt", "p\n");
    w.settle().await;
    let child = w.app.bead("web", "Filed under it meanwhile", json!({"parent": parent})).await;
    // Held back, so no agent works it in this test.
    let res = w.app.post(&format!("/api/v1/beads/{child}/block"), json!({"reason": "later"})).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    let res = w.app.post(&format!("/api/v1/beads/{parent}/approve"), json!({})).await;
    assert_eq!(res.body["status"], "landing", "{:?}", res.body);
    w.settle().await;
    let shown = w.show(&parent).await;
    assert_eq!(
        (shown["status"].as_str(), shown["blocked_reason"].as_str()),
        (Some("blocked"), Some("needs_human")),
        "{shown}"
    );
    assert!(shown["blocked_note"].as_str().unwrap_or_default().contains("child"), "{shown}");
    assert_eq!(w.upstream.file("p.txt"), "p\n", "its work landed");
}

/// A queue whose steps fail (its repository gone, here) says why and since when, in the
/// queue view and on the project page; once a step goes through it says nothing.
#[tokio::test]
async fn a_stuck_queue_says_why_until_a_step_goes_through() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "human"})).await;
    let bead = w.bead("Held up").await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    assert_eq!(queue(&w).await["error"], Value::Null);
    let origin = w.upstream.path();
    let away = origin.with_extension("away");
    std::fs::rename(&origin, &away).unwrap();
    let res = w.app.post(&format!("/api/v1/beads/{bead}/approve"), json!({})).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    w.settle().await;
    let stuck = queue(&w).await;
    let why = stuck["error"]["message"].as_str().unwrap_or_default();
    assert!(!why.is_empty() && stuck["error"]["since"].is_string(), "{stuck}");
    let mut viewer = crate::support::browser::logged_in(&w.app, "viewer").await;
    let page = viewer.get("/projects/web").await.body;
    assert!(page.contains("<strong>Nothing can land:</strong>"), "{page}");

    std::fs::rename(&away, &origin).unwrap();
    for _ in 0..100 {
        w.settle().await;
        if w.show(&bead).await["status"] == "closed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(w.show(&bead).await["status"], "closed");
    assert_eq!(queue(&w).await["error"], Value::Null);
}
