//! `review: agent`: a finished bead's work is reviewed by an agent of the code-reviewer
//! persona that did none of it, in a review run that reads the work and its diff and ends
//! with `approve` or `request_changes`. Real git, the real sandbox, the scripted gateway.

use serde_json::{Value, json};

use crate::landing::{notified, work_with, writes};
use crate::support::gateway::Reply;
use crate::support::work::Work;

/// An agent of `persona` named `name`, bound to no project.
async fn agent(w: &Work, name: &str, persona: &str) -> String {
    let res = w.app.post("/api/v1/agents", json!({"name": name, "persona": persona})).await;
    assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// A bead only a software engineer takes, so reviewers review and do not work.
async fn engineer_bead(w: &Work, title: &str) -> String {
    w.app.bead("web", title, json!({"persona": "software-engineer"})).await
}

/// A project with agent review whose engineer finished a bead writing `b.txt`, waiting in
/// review with no reviewer yet.
async fn waiting_for_review(title: &str) -> (Work, String) {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "agent"})).await;
    let bead = engineer_bead(&w, title).await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    (w, bead)
}

/// The bead's runs, oldest first.
async fn runs(w: &Work, bead: &str) -> Vec<Value> {
    let res = w.app.get(&format!("/api/v1/beads/{bead}/runs")).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    let mut all = res.body["items"].as_array().or(res.body.as_array()).cloned().unwrap();
    all.reverse();
    all
}

/// The request the gateway was sent for the first turn of `bead`'s review run.
fn review_request(w: &Work, bead: &str) -> Value {
    let asked = w.script.completions();
    let first = asked.iter().find(|r| {
        let system = r["messages"][0]["content"].as_str().unwrap_or_default();
        system.contains("reviewing work") && system.contains(&format!("loom/{bead}"))
    });
    first.cloned().unwrap_or_else(|| panic!("no review of {bead} was asked for"))
}

fn comments(bead: &Value) -> String {
    let all = bead["comments"].as_array().cloned().unwrap_or_default();
    all.iter().filter_map(|c| c["body"].as_str()).collect::<Vec<_>>().join("\n---\n")
}

#[tokio::test]
async fn a_code_reviewer_agent_reviews_another_s_work_and_its_approval_lands_it() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "agent"})).await;
    let before = w.upstream.git(&["rev-parse", "main"]);
    let bead = engineer_bead(&w, "Say hello").await;
    writes(&w, &bead, "hello.txt", "hello\n");
    w.settle().await;
    // No reviewer yet: the work waits in review, unheld, and nothing lands.
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), &shown["assignee"]), (Some("review"), &Value::Null));
    assert_eq!(w.upstream.git(&["rev-parse", "main"]), before);

    let rita = agent(&w, "rita", "code-reviewer").await;
    let read = json!({"action": "read_file", "path": "hello.txt"});
    w.script.push_for(&bead, Reply::action(read));
    let approve = json!({"action": "approve", "summary": "Read hello.txt: it says hello."});
    w.script.push_for(&bead, Reply::action(approve));
    w.settle().await;

    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert_eq!(w.upstream.file("hello.txt"), "hello\n");
    assert_eq!(shown["close_reason"], "Wrote hello.txt.", "the author's summary closes it");
    assert!(comments(&shown).contains("**Approved.** Read hello.txt: it says hello."));
    let runs = runs(&w, &bead).await;
    let kinds: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["outcome"].as_str().unwrap_or("open")))
        .collect();
    assert_eq!(kinds, [("work", "success"), ("review", "success")], "{runs:?}");
    assert_eq!(runs[1]["agent"], rita.as_str());
    assert_ne!(runs[0]["agent"], runs[1]["agent"]);
    assert_eq!(runs[1]["summary"], "Read hello.txt: it says hello.");
    assert_eq!(shown["attempts"], 0, "a review charges no attempt");
    let approved = w.app.get(&format!("/api/v1/activity?bead={bead}&kind=bead.approved")).await;
    let by = &approved.body["items"][0]["actor_agent_id"];
    assert_eq!(by, rita.as_str(), "{}", approved.body);

    // The reviewer read the diff in its task and was offered a review's tools only.
    let asked = review_request(&w, &bead);
    let task = asked["messages"][1]["content"].as_str().unwrap();
    assert!(task.contains("## The work under review") && task.contains("Wrote hello.txt."));
    assert!(task.contains("+hello"), "the diff: {task}");
    let tools: Vec<&str> = asked["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(tools.contains(&"approve") && tools.contains(&"request_changes"), "{tools:?}");
    assert!(!tools.contains(&"write_file") && !tools.contains(&"run") && !tools.contains(&"done"));
}

#[tokio::test]
async fn requested_changes_go_back_to_the_author_and_the_reviewer_is_never_the_author() {
    let mut w = work_with(&[("a.txt", "a\n")], 0, json!({"review": "agent"})).await;
    // A bead for a code reviewer: the one that does its work may not review it.
    let bead = w.app.bead("web", "Tidy the docs", json!({"persona": "code-reviewer"})).await;
    let rex = agent(&w, "rex", "code-reviewer").await;
    writes(&w, &bead, "docs.txt", "first\n");
    w.settle().await;
    assert_eq!(runs(&w, &bead).await[0]["agent"], rex.as_str());
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), &shown["assignee"]), (Some("review"), &Value::Null));

    // rita asks for changes; rex, idle longest, redoes the work, told what to change; rita
    // reviews again and approves. rex never reviews its own work.
    let rita = agent(&w, "rita", "code-reviewer").await;
    let asked = json!({"action": "request_changes", "body": "Say second, not first."});
    w.script.push_for(&bead, Reply::action(asked));
    writes(&w, &bead, "docs.txt", "second\n");
    w.script.push_for(&bead, Reply::action(json!({"action": "approve", "summary": "Better."})));
    w.settle().await;

    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert!(
        comments(&shown).contains("**Changes requested in review:**\n\nSay second, not first.")
    );
    assert_eq!(w.upstream.file("docs.txt"), "second\n");
    let redo = w.script.completions().into_iter().rfind(|r| {
        let system = r["messages"][0]["content"].as_str().unwrap_or_default();
        !system.contains("reviewing work") && system.contains(&format!("loom/{bead}"))
    });
    let redo = redo.expect("a second work run");
    let told = redo["messages"][1]["content"].as_str().unwrap();
    assert!(told.contains("Say second, not first."), "{told}");
    let all = runs(&w, &bead).await;
    let who: Vec<(&str, &str)> =
        all.iter().map(|r| (r["kind"].as_str().unwrap(), r["agent"].as_str().unwrap())).collect();
    let (rex, rita) = (rex.as_str(), rita.as_str());
    assert_eq!(who, [("work", rex), ("review", rita), ("work", rex), ("review", rita)]);
}

#[tokio::test]
async fn a_review_that_never_decides_hands_the_work_to_people_and_a_member_can_decide_first() {
    let (mut w, bead) = waiting_for_review("Undecided").await;
    agent(&w, "rita", "code-reviewer").await;
    // Each review reads and then fails (the gateway refuses it): no decision, no charge;
    // the next review starts at once.
    for _ in 0..loom::beads::AGENT_REVIEW_TRIES {
        w.script.push_for(&bead, Reply::action(json!({"action": "read_file", "path": "b.txt"})));
        w.script.push_for(&bead, Reply::status_with(400, "the model refused"));
    }
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("review"), Some(0)));
    assert!(comments(&shown).contains("failed 3 times"), "{shown}");
    let reviews = runs(&w, &bead).await.into_iter().filter(|r| r["kind"] == "review").count();
    assert_eq!(reviews, 3, "no fourth review is started");
    // People are asked once it is theirs to review, not while agents review.
    notified(&w, &bead, "review_requested").await;
    let mine = w.app.get("/api/v1/notifications").await.body;
    let asked = mine["items"].as_array().unwrap().iter();
    let asked = asked.filter(|n| n["reason"] == "review_requested" && n["subject"] == bead);
    assert_eq!(asked.count(), 1, "{mine}");
    w.settle().await;
    assert_eq!(runs(&w, &bead).await.len(), 4);

    let res = w.app.post(&format!("/api/v1/beads/{bead}/approve"), json!({})).await;
    assert_eq!((res.status.as_u16(), res.body["status"].as_str()), (200, Some("landing")));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
}

#[tokio::test]
async fn a_review_whose_lease_lapses_leaves_the_work_in_review_and_a_member_can_take_over() {
    use diesel_async::RunQueryDsl;
    let (mut w, bead) = waiting_for_review("Outlived").await;
    let rita = agent(&w, "rita", "code-reviewer").await;

    // Claimed, never worked (its replica died): the lease lapses and the ticker heals it.
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 1);
    let held = w.show(&bead).await;
    assert_eq!(
        (held["status"].as_str(), held["assignee"].as_str()),
        (Some("review"), Some(rita.as_str()))
    );
    let mut conn = w.app.pool.get().await.unwrap();
    diesel::sql_query(
        "UPDATE beads SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Text, _>(&bead)
    .execute(&mut conn)
    .await
    .unwrap();
    let retry = loom::beads::RetryPolicy::default();
    let expired = loom::beads::Bead::expire_lease(&mut conn, &bead, retry).await.unwrap();
    assert!(expired.is_some());
    drop(conn);
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), &shown["assignee"]), (Some("review"), &Value::Null));
    assert_eq!(shown["attempts"], 0);
    let reviewer = w.app.get(&format!("/api/v1/agents/{rita}")).await.body;
    assert_eq!(reviewer["status"], "idle", "{reviewer}");
    let lapsed = runs(&w, &bead).await;
    assert_eq!(
        (lapsed[1]["kind"].as_str(), lapsed[1]["outcome"].as_str()),
        (Some("review"), Some("lease_expired"))
    );

    // Claimed again; a member approves first: the review run ends, uncharged, its agent free.
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 1);
    let res =
        w.app.post(&format!("/api/v1/beads/{bead}/approve"), json!({"comment": "Mine."})).await;
    assert_eq!(
        (res.status.as_u16(), res.body["status"].as_str()),
        (200, Some("landing")),
        "{:?}",
        res.body
    );
    assert_eq!(res.body["assignee"], Value::Null);
    let taken = runs(&w, &bead).await;
    assert_eq!(
        (taken[2]["kind"].as_str(), taken[2]["outcome"].as_str()),
        (Some("review"), Some("cancelled"))
    );
    let reviewer = w.app.get(&format!("/api/v1/agents/{rita}")).await.body;
    assert_eq!(reviewer["status"], "idle", "{reviewer}");
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("closed"), Some(0)));
    assert_eq!(w.upstream.file("b.txt"), "b\n");
}

#[tokio::test]
async fn a_review_the_gateway_cannot_serve_waits_out_a_back_off_and_costs_no_try() {
    let (mut w, bead) = waiting_for_review("Outage").await;
    agent(&w, "rita", "code-reviewer").await;
    // Nothing scripted for the review: the gateway answers 500, an outage.
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), &shown["assignee"]), (Some("review"), &Value::Null));
    assert!(shown["not_before"].as_str().is_some(), "a back-off: {shown}");
    assert!(!comments(&shown).contains("failed"), "{shown}");
    let all = runs(&w, &bead).await;
    assert_eq!(all.len(), 2, "one review, not retried at once: {all:?}");
    assert_eq!(all[1]["outcome"], "gateway_unavailable");
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 0, "it waits out the back-off");
}

#[tokio::test]
async fn pairing_on_a_bead_under_review_ends_the_review_and_none_starts_while_paired() {
    let (w, bead) = waiting_for_review("Paired").await;
    let rita = agent(&w, "rita", "code-reviewer").await;
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 1, "rita claims the review");

    let body = json!({"project": "web", "persona": "software-engineer", "bead": bead});
    let res = w.app.post("/api/v1/conversations", body).await;
    assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), &shown["assignee"]), (Some("review"), &Value::Null));
    let review = runs(&w, &bead).await;
    assert_eq!(
        (review[1]["kind"].as_str(), review[1]["outcome"].as_str()),
        (Some("review"), Some("cancelled"))
    );
    let reviewer = w.app.get(&format!("/api/v1/agents/{rita}")).await.body;
    assert_eq!(reviewer["status"], "idle", "{reviewer}");
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 0, "no review while paired");
}

#[tokio::test]
async fn a_review_decided_after_the_project_stopped_agent_review_decides_nothing() {
    let (mut w, bead) = waiting_for_review("Switched").await;
    let rita = agent(&w, "rita", "code-reviewer").await;
    w.script.push_for(&bead, Reply::action(json!({"action": "approve", "summary": "Fine."})));
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 1, "rita claims the review");
    let admin = w.app.admin.clone();
    let human = Some(json!({"review": "human"}));
    let res = w.app.call(reqwest::Method::PATCH, "/api/v1/projects/web", Some(&admin), human).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);

    w.executors.run_until_idle().await.unwrap();
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), &shown["assignee"]), (Some("review"), &Value::Null));
    let review = runs(&w, &bead).await;
    assert_eq!(
        (review[1]["outcome"].as_str(), review[1]["error"].as_str()),
        (Some("cancelled"), Some("the project no longer has agents review its work"))
    );
    let reviewer = w.app.get(&format!("/api/v1/agents/{rita}")).await.body;
    assert_eq!(reviewer["status"], "idle", "{reviewer}");
    assert!(!comments(&shown).contains("Approved"), "{shown}");
}
