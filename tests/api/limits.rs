//! Spend and work-in-progress limits, as the dispatcher keeps them: a project's beads in
//! progress and waiting to merge, a project's and the fleet's token budget over the window.

use std::time::Duration;

use loom::dispatch::limits::SpendPolicy;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::executor::count;
use crate::support::work::Work;

/// A dispatcher that sums the spend on every round, with `policy`'s budgets.
fn dispatcher(w: &Work, fleet_budget: Option<i64>) -> Dispatcher {
    let spend = SpendPolicy { fleet_budget, refresh: Duration::ZERO, ..Default::default() };
    Dispatcher::new(
        w.app.pool.clone(),
        DispatchConfig { spend, ..Default::default() },
        Nudge::default(),
    )
}

async fn set(w: &Work, limits: Value) -> crate::support::Res {
    w.app.call(Method::PATCH, "/api/v1/projects/web", Some(&w.app.admin), Some(limits)).await
}

async fn sql(w: &Work, q: &str) {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(q).execute(&mut w.app.pool.get().await.unwrap()).await.unwrap();
}

/// Tokens a run of the project spent, as the gateway client records them.
async fn spend(w: &Work, tokens: i64) {
    sql(w, &format!(
        "INSERT INTO gateway_calls (run_id, agent_id, model, attempt, streamed, ok, prompt_tokens, \
         completion_tokens, latency_ms) SELECT id, agent_id, 'm', 1, false, true, {tokens}, 0, 5 \
         FROM runs ORDER BY started_at LIMIT 1"
    ))
    .await;
}

async fn in_progress(w: &Work) -> i64 {
    count(w, "SELECT count(*) AS n FROM beads WHERE status = 'in_progress'").await
}

#[tokio::test]
async fn a_project_never_has_more_beads_in_progress_than_its_limit_even_with_two_dispatchers() {
    let w = Work::new(&[("a.txt", "a\n")], 6, Default::default()).await;
    for i in 0..6 {
        w.bead(&format!("Bead {i}")).await;
    }
    assert_eq!(set(&w, json!({"max_in_progress": 2})).await.status, StatusCode::OK);
    let (a, b) = (dispatcher(&w, None), dispatcher(&w, None));
    let (x, y) = tokio::join!(a.run_until_idle(), b.run_until_idle());
    assert_eq!(x.unwrap() + y.unwrap(), 2);
    assert_eq!(in_progress(&w).await, 2);
    // Lifting the limit lets the rest go.
    assert_eq!(
        set(&w, json!({"max_in_progress": null})).await.body["max_in_progress"],
        Value::Null
    );
    assert_eq!(a.run_until_idle().await.unwrap(), 4);
}

#[tokio::test]
async fn beads_waiting_to_merge_hold_new_claims_back_until_they_are_dealt_with() {
    let w = Work::new(&[("a.txt", "a\n")], 2, Default::default()).await;
    let stuck = w.bead("Conflicted").await;
    let queued = w.bead("In the queue").await;
    w.bead("Next").await;
    sql(&w, &format!(
        "UPDATE beads SET status = 'blocked', blocked_reason = 'merge_conflict' WHERE id = '{stuck}'"
    ))
    .await;
    sql(&w, &format!(
        "UPDATE beads SET status = 'landing', landing_sha = repeat('a', 40), landing_since = now() \
         WHERE id = '{queued}'"
    ))
    .await;
    set(&w, json!({"max_awaiting_merge": 2})).await;
    let d = dispatcher(&w, None);
    assert_eq!(d.run_until_idle().await.unwrap(), 0, "two beads wait to land already");
    set(&w, json!({"max_awaiting_merge": 3})).await;
    assert_eq!(d.run_until_idle().await.unwrap(), 1);
}

#[tokio::test]
async fn a_spent_project_budget_stops_new_claims_says_so_and_notifies_until_it_is_raised() {
    let w = Work::new(&[("a.txt", "a\n")], 2, Default::default()).await;
    w.bead("First").await;
    let d = dispatcher(&w, None);
    assert_eq!(set(&w, json!({"token_budget": 100})).await.status, StatusCode::OK);
    assert_eq!(d.run_until_idle().await.unwrap(), 1);
    spend(&w, 150).await;
    w.bead("Second").await;
    assert_eq!(d.run_until_idle().await.unwrap(), 0, "the budget is spent");
    assert_eq!(in_progress(&w).await, 1, "running work is left alone");

    let status = w.app.get("/api/v1/status").await.body;
    assert_eq!(status["spend"]["limited"], true, "{status}");
    assert_eq!(
        status["spend"]["budgets"][0],
        json!({"scope": "web", "spent": 150, "budget": 100, "held": true}),
        "{status}"
    );
    let overview = crate::support::browser::logged_in(&w.app, "member").await.get("/").await;
    assert!(overview.contains("A budget is spent: no new work is claimed"), "{}", overview.body);
    // Said once, however many rounds find it spent.
    d.run_until_idle().await.unwrap();
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM activity WHERE kind = 'spend.limited'").await,
        1
    );
    let mut told = Value::Null;
    for _ in 0..200 {
        told = w.app.get("/api/v1/notifications").await.body;
        if told["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(told["items"][0]["reason"], "spend_limited", "{told}");

    set(&w, json!({"token_budget": 1000})).await;
    assert_eq!(d.run_until_idle().await.unwrap(), 1, "raised, work resumes");
    assert_eq!(count(&w, "SELECT count(*) AS n FROM spend_holds").await, 0);
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM activity WHERE kind = 'spend.resumed'").await,
        1
    );
}

#[tokio::test]
async fn a_spent_fleet_budget_stops_every_claim() {
    let w = Work::new(&[("a.txt", "a\n")], 2, Default::default()).await;
    w.bead("First").await;
    assert_eq!(dispatcher(&w, Some(100)).run_until_idle().await.unwrap(), 1);
    spend(&w, 100).await;
    w.bead("Second").await;
    assert_eq!(dispatcher(&w, Some(100)).run_until_idle().await.unwrap(), 0);
    assert_eq!(count(&w, "SELECT count(*) AS n FROM spend_holds WHERE scope = 'fleet'").await, 1);
    // Without the fleet budget (a replica configured so), the hold is lifted.
    assert_eq!(dispatcher(&w, None).run_until_idle().await.unwrap(), 1);
    assert_eq!(count(&w, "SELECT count(*) AS n FROM spend_holds").await, 0);
}

#[tokio::test]
async fn limits_that_make_no_sense_are_refused_with_their_own_codes() {
    let w = Work::new(&[("a.txt", "a\n")], 1, Default::default()).await;
    for (body, code) in [
        (json!({"token_budget": 0}), "invalid_token_budget"),
        (json!({"max_in_progress": -1}), "invalid_max_in_progress"),
        (json!({"max_awaiting_merge": 0}), "invalid_max_awaiting_merge"),
    ] {
        let res = set(&w, body.clone()).await;
        assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{body}");
    }
    let project = w.app.get("/api/v1/projects/web").await.body;
    assert_eq!(
        (&project["token_budget"], &project["max_in_progress"], &project["max_awaiting_merge"]),
        (&Value::Null, &Value::Null, &Value::Null),
        "nothing was changed"
    );
    // Members cannot change them.
    let res = w
        .app
        .call(
            Method::PATCH,
            "/api/v1/projects/web",
            Some(&w.app.member),
            Some(json!({"token_budget": 5})),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}
