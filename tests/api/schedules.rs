//! Schedules: the API's rules, and the ticker filing their beads on time, once, and never a
//! second while the first is open.

use chrono::Utc;
use diesel_async::SimpleAsyncConnection;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use loom::dispatch::Nudge;
use loom::gateway::HealthState;
use loom::schedules::FireOutcome;
use loom::ticker::Ticker;

use crate::support::{TestApp, spawn};

fn ticker(app: &TestApp) -> Ticker {
    Ticker::new(app.pool.clone(), Default::default(), HealthState::default(), Nudge::default())
}

async fn schedule(app: &TestApp, body: Value) -> Value {
    let res = app.post("/api/v1/schedules", body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body
}

/// Time passes: the schedule is due.
async fn make_due(app: &TestApp, id: &str) {
    app.pool
        .get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "UPDATE schedules SET next_run_at = now() - interval '1 minute' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
}

fn nightly(project: &str) -> Value {
    json!({
        "project": project,
        "cron": "0 3 * * *",
        "bead": {"title": "Nightly dependency audit", "priority": 1, "labels": ["Security"], "persona": "security-reviewer"},
    })
}

#[tokio::test]
async fn schedules_are_created_listed_changed_and_deleted() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, nightly("web")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["bead"]["labels"], json!(["security"]), "labels are normalised like a bead's");
    assert_eq!((s["enabled"].as_bool(), s["bead"]["type"].as_str()), (Some(true), Some("task")));
    let next: chrono::DateTime<Utc> = s["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now() && next.format("%H:%M").to_string() == "03:00", "{next}");

    schedule(&app, json!({"project": "web", "cron": "@hourly", "bead": {"title": "Triage"}})).await;
    let page = app.get("/api/v1/schedules?project=web&limit=1").await;
    assert_eq!(page.body["items"][0]["id"], id.as_str());
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app.get(&format!("/api/v1/schedules?project=web&cursor={cursor}")).await;
    assert_eq!(rest.body["items"][0]["cron"], "@hourly");
    assert!(rest.body["next_cursor"].is_null());

    let changed = app
        .patch(&format!("/api/v1/schedules/{id}"), json!({"cron": "30 4 * * 1", "enabled": false}))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(
        (changed.body["cron"].as_str(), changed.body["enabled"].as_bool()),
        (Some("30 4 * * 1"), Some(false))
    );
    assert_eq!(changed.body["bead"]["title"], "Nightly dependency audit", "the template is kept");
    let retitled = app
        .patch(&format!("/api/v1/schedules/{id}"), json!({"bead": {"title": "Weekly audit"}}))
        .await;
    assert_eq!(
        (retitled.body["bead"]["title"].as_str(), retitled.body["bead"]["priority"].as_i64()),
        (Some("Weekly audit"), Some(2))
    );

    let stale =
        app.patch(&format!("/api/v1/schedules/{id}"), json!({"version": 1, "enabled": true})).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::CONFLICT, "stale_version"));
    let current = retitled.body["version"].as_i64().unwrap();
    let fresh = app
        .patch(&format!("/api/v1/schedules/{id}"), json!({"version": current, "enabled": true}))
        .await;
    assert_eq!((fresh.status, fresh.body["version"].as_i64()), (StatusCode::OK, Some(current + 1)));

    assert_eq!(
        app.delete(&format!("/api/v1/schedules/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&format!("/api/v1/schedules/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&format!("/api/v1/schedules/{id}"), None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_schedules_are_refused_with_stable_codes() {
    let app = spawn().await;
    app.project("web").await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut body = nightly("web");
        f(&mut body);
        body
    };
    let cases = [
        (with(&|b| b["cron"] = json!("every night")), 422, "invalid_cron"),
        (with(&|b| b["cron"] = json!("* * * * * *")), 422, "invalid_cron"),
        (with(&|b| b["cron"] = json!("0 0 31 2 *")), 422, "invalid_cron"),
        (with(&|b| b["project"] = json!("nope")), 422, "unknown_project"),
        (with(&|b| b["bead"]["persona"] = json!("wizard")), 422, "unknown_persona"),
        (with(&|b| b["bead"]["title"] = json!("  ")), 422, "title_required"),
        (with(&|b| b["bead"]["priority"] = json!(9)), 422, "invalid_priority"),
        (with(&|b| b["bead"]["type"] = json!("epic")), 422, "invalid_type"),
        (with(&|b| b["bead"]["labels"] = json!(["no spaces"])), 422, "invalid_label"),
    ];
    for (body, status, code) in cases {
        let res = app.post("/api/v1/schedules", body.clone()).await;
        assert_eq!((res.status.as_u16(), res.code()), (status, code), "{body}");
    }
    let unknown_field = app.post("/api/v1/schedules", with(&|b| b["when"] = json!("soon"))).await;
    assert_eq!((unknown_field.status.as_u16(), unknown_field.code()), (422, "invalid_body"));
    assert_eq!(app.get("/api/v1/schedules?limit=0").await.code(), "invalid_limit");
    let ghost = format!("/api/v1/schedules/{}", uuid::Uuid::nil());
    assert_eq!(app.patch(&ghost, json!({"enabled": false})).await.status, StatusCode::NOT_FOUND);
    let viewer = app
        .call(Method::POST, "/api/v1/schedules", Some(&app.viewer.clone()), Some(nightly("web")))
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    let s = schedule(&app, nightly("web")).await;
    let path = format!("/api/v1/schedules/{}", s["id"].as_str().unwrap());
    let viewer_patch = app
        .call(Method::PATCH, &path, Some(&app.viewer.clone()), Some(json!({"enabled": false})))
        .await;
    assert_eq!(viewer_patch.status, StatusCode::FORBIDDEN);
    assert_eq!(app.patch(&path, json!({"cron": "nope"})).await.code(), "invalid_cron");
    assert_eq!(app.get("/api/v1/schedules?cursor=zzz").await.code(), "invalid_cursor");
    assert_eq!(app.get(&path).await.body["enabled"], true, "refused changes changed nothing");
    let anonymous = app.call(Method::GET, "/api/v1/schedules", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_due_schedule_files_its_bead_once_and_not_again_while_it_is_open() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, nightly("web")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let t = ticker(&app);
    assert!(t.fire_schedules().await.unwrap().is_empty(), "not due yet");

    make_due(&app, &id).await;
    let fired = t.fire_schedules().await.unwrap();
    let FireOutcome::Filed(bead) = &fired[0].outcome else { panic!("{fired:?}") };
    let b = app.show(bead).await;
    assert_eq!(
        (
            b["title"].as_str(),
            b["priority"].as_i64(),
            b["persona"].as_str(),
            b["schedule"].as_str()
        ),
        (Some("Nightly dependency audit"), Some(1), Some("security-reviewer"), Some(id.as_str()))
    );
    let after = app.get(&format!("/api/v1/schedules/{id}")).await.body;
    assert_eq!(after["last_bead"], bead.as_str());
    let next: chrono::DateTime<Utc> = after["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now(), "moved on: {next}");
    assert!(t.fire_schedules().await.unwrap().is_empty(), "fired once");

    make_due(&app, &id).await;
    let again = t.fire_schedules().await.unwrap();
    assert_eq!(again[0].outcome, FireOutcome::StillOpen(bead.clone()));
    let history = app.get(&format!("/api/v1/beads/{bead}")).await.body["history"].clone();
    assert!(history.to_string().contains("schedule.skipped"), "{history}");
    let open = app.get("/api/v1/beads?project=web").await.body["items"].as_array().unwrap().len();
    assert_eq!(open, 1, "no second bead while the first is open");

    app.close(bead).await;
    make_due(&app, &id).await;
    let third = t.fire_schedules().await.unwrap();
    assert!(matches!(&third[0].outcome, FireOutcome::Filed(b) if b != bead), "{third:?}");
}

#[tokio::test]
async fn competing_tickers_fire_a_due_schedule_exactly_once() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, nightly("web")).await;
    make_due(&app, s["id"].as_str().unwrap()).await;
    let tickers: Vec<Ticker> = (0..4).map(|_| ticker(&app)).collect();
    let results = futures_util::future::join_all(tickers.iter().map(|t| t.fire_schedules())).await;
    let filed: usize = results
        .into_iter()
        .map(|r| r.unwrap().iter().filter(|f| matches!(f.outcome, FireOutcome::Filed(_))).count())
        .sum();
    assert_eq!(filed, 1);
    let beads = app.get("/api/v1/beads?project=web").await.body["items"].as_array().unwrap().len();
    assert_eq!(beads, 1);
}

#[tokio::test]
async fn a_disabled_schedule_does_not_fire_and_enabling_it_counts_from_now() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, json!({"project": "web", "cron": "*/5 * * * *", "enabled": false, "bead": {"title": "Poll"}})).await;
    let id = s["id"].as_str().unwrap().to_owned();
    make_due(&app, &id).await;
    assert!(ticker(&app).fire_schedules().await.unwrap().is_empty());
    let enabled = app.patch(&format!("/api/v1/schedules/{id}"), json!({"enabled": true})).await;
    let next: chrono::DateTime<Utc> =
        enabled.body["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now(), "missed firings are not made up: {next}");
    assert!(ticker(&app).fire_schedules().await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_project_deletes_its_schedules_and_a_schedule_delete_keeps_its_beads() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, nightly("web")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    make_due(&app, &id).await;
    let fired = ticker(&app).fire_schedules().await.unwrap();
    let FireOutcome::Filed(bead) = &fired[0].outcome else { panic!("{fired:?}") };
    app.delete(&format!("/api/v1/schedules/{id}"), None).await;
    let b = app.show(bead).await;
    assert!(b["schedule"].is_null(), "the bead stays, unlinked");
    app.close(bead).await;
    schedule(&app, nightly("web")).await;
    let gone =
        app.call(Method::DELETE, "/api/v1/projects/web", Some(&app.admin.clone()), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{:?}", gone.body);
    assert!(app.get("/api/v1/schedules").await.body["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn running_a_schedule_by_hand_files_now_keeps_its_time_and_respects_the_open_bead() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, json!({"project": "web", "cron": "0 3 * * *", "enabled": false, "bead": {"title": "Audit"}})).await;
    let path = format!("/api/v1/schedules/{}", s["id"].as_str().unwrap());
    let first = app.post(&format!("{path}/run"), json!({})).await;
    assert_eq!(
        (first.status, first.body["outcome"].as_str()),
        (StatusCode::OK, Some("filed")),
        "{:?}",
        first.body
    );
    let bead = first.body["bead"].as_str().unwrap().to_owned();
    assert_eq!(app.show(&bead).await["title"], "Audit");
    let after = app.get(&path).await.body;
    assert_eq!(
        (after["next_run_at"].clone(), after["last_bead"].as_str()),
        (s["next_run_at"].clone(), Some(bead.as_str()))
    );
    let second = app.post(&format!("{path}/run"), json!({})).await;
    assert_eq!(
        (second.body["outcome"].as_str(), second.body["bead"].as_str()),
        (Some("still_open"), Some(bead.as_str()))
    );
    let viewer =
        app.call(Method::POST, &format!("{path}/run"), Some(&app.viewer.clone()), None).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    let missing =
        app.post(&format!("/api/v1/schedules/{}/run", uuid::Uuid::nil()), json!({})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_template_that_cannot_be_filed_is_recorded_and_the_schedule_moves_on() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, nightly("web")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    // a label the bead rules refuse, as an old version or a hand edit could have stored
    app.pool.get().await.unwrap().batch_execute(&format!(
        "UPDATE schedules SET labels = '{{\"NOT A LABEL\"}}', next_run_at = now() - interval '1 minute' WHERE id = '{id}'"
    )).await.unwrap();
    let fired = ticker(&app).fire_schedules().await.unwrap();
    assert_eq!(fired[0].outcome, FireOutcome::Failed);
    assert!(
        app.get("/api/v1/beads?project=web").await.body["items"].as_array().unwrap().is_empty(),
        "nothing half-filed"
    );
    let after = app.get(&format!("/api/v1/schedules/{id}")).await.body;
    let next: chrono::DateTime<Utc> = after["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now(), "it moved on rather than retrying every pass");
    #[derive(diesel::QueryableByName)]
    struct Why {
        #[diesel(sql_type = diesel::sql_types::Text)]
        error: String,
    }
    let mut conn = app.pool.get().await.unwrap();
    let why: Why = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT data->>'error' AS error FROM activity WHERE kind = 'schedule.failed'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    assert!(why.error.contains("label"), "{}", why.error);
}

#[tokio::test]
async fn a_stored_expression_that_no_longer_parses_disables_the_schedule() {
    let app = spawn().await;
    app.project("web").await;
    let s = schedule(&app, nightly("web")).await;
    let id = s["id"].as_str().unwrap().to_owned();
    app.pool.get().await.unwrap().batch_execute(&format!(
        "UPDATE schedules SET cron = 'at dawn', next_run_at = now() - interval '1 minute' WHERE id = '{id}'"
    )).await.unwrap();
    let fired = ticker(&app).fire_schedules().await.unwrap();
    assert_eq!(fired[0].outcome, FireOutcome::Failed);
    assert_eq!(app.get(&format!("/api/v1/schedules/{id}")).await.body["enabled"], false);
    assert!(ticker(&app).fire_schedules().await.unwrap().is_empty(), "it is not retried");
}
