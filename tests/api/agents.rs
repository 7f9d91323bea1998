use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use loom::beads::{AfterRun, Bead, BlockedReason, RetryPolicy, RunOutcome};

use crate::support::{TestApp, spawn};

async fn agent(app: &TestApp, name: &str, project: Option<&str>) -> String {
    let res = app
        .post(
            "/api/v1/agents",
            json!({"name": name, "persona": "software-engineer", "project": project}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn agents_are_validated_and_only_members_change_them() {
    let app = spawn().await;
    app.project("web").await;
    let id = agent(&app, "ada", Some("web")).await;
    let show = app.get(&format!("/api/v1/agents/{id}")).await;
    assert_eq!(
        (show.body["status"].as_str(), show.body["project"].as_str()),
        (Some("idle"), Some("web"))
    );
    let cases = [
        (json!({"name": "ada", "persona": "software-engineer"}), 409, "agent_exists"),
        (json!({"name": "bob", "persona": "wizard"}), 422, "unknown_persona"),
        (
            json!({"name": "bob", "persona": "software-engineer", "project": "nope"}),
            422,
            "unknown_project",
        ),
        (json!({"name": "Bob Smith", "persona": "software-engineer"}), 422, "invalid_agent_name"),
    ];
    for (body, status, code) in cases {
        let res = app.post("/api/v1/agents", body.clone()).await;
        assert_eq!((res.status.as_u16(), res.code()), (status, code), "{body}");
    }
    let viewer = app
        .call(
            Method::POST,
            "/api/v1/agents",
            Some(&app.viewer.clone()),
            Some(json!({"name": "v", "persona": "software-engineer"})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    let renamed =
        app.patch(&format!("/api/v1/agents/{id}"), json!({"name": "ada2", "project": null})).await;
    assert_eq!(
        (renamed.body["name"].as_str(), renamed.body["project"].is_null()),
        (Some("ada2"), true)
    );
    assert_eq!(app.get("/api/v1/agents?limit=10").await.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(&format!("/api/v1/agents/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&format!("/api/v1/agents/{id}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pausing_a_working_agent_gives_its_bead_back_without_costing_an_attempt() {
    let app = spawn().await;
    app.project("web").await;
    let id = agent(&app, "ada", None).await;
    let bead = app.bead("web", "work", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    let claim = Bead::claim(&mut conn, &bead, id.parse().unwrap(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.attempt, 1);
    assert_eq!(app.show(&bead).await["status"], "in_progress");
    let busy = app.delete(&format!("/api/v1/agents/{id}"), None).await;
    assert_eq!((busy.status, busy.code()), (StatusCode::CONFLICT, "agent_working"));
    let rebind =
        app.patch(&format!("/api/v1/agents/{id}"), json!({"persona": "code-reviewer"})).await;
    assert_eq!((rebind.status, rebind.code()), (StatusCode::CONFLICT, "agent_working"));
    // a second claim of the same bead or by the same agent is refused
    assert!(
        Bead::claim(&mut conn, &bead, id.parse().unwrap(), Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );

    let paused = app.post(&format!("/api/v1/agents/{id}/pause"), json!({})).await;
    assert_eq!(paused.body["status"], "paused");
    let b = app.show(&bead).await;
    assert_eq!(
        (b["status"].as_str(), b["attempts"].as_i64(), b["ready"].as_bool()),
        (Some("open"), Some(0), Some(true))
    );
    assert_eq!(b["runs"][0]["outcome"], "cancelled");
    assert!(
        Bead::claim(&mut conn, &bead, id.parse().unwrap(), Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "paused agents take nothing"
    );
    let resumed = app.post(&format!("/api/v1/agents/{id}/resume"), json!({})).await;
    assert_eq!(resumed.body["status"], "idle");
    assert!(
        Bead::claim(&mut conn, &bead, id.parse().unwrap(), Duration::from_secs(60))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn failed_runs_back_off_then_block_at_max_attempts_and_a_reopen_resets_them() {
    let app = spawn().await;
    app.project("web").await;
    app.call(
        Method::PATCH,
        "/api/v1/projects/web",
        Some(&app.admin.clone()),
        Some(json!({"max_attempts": 2})),
    )
    .await;
    let agent_id: uuid::Uuid = agent(&app, "ada", None).await.parse().unwrap();
    let bead = app.bead("web", "flaky", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    let policy =
        RetryPolicy { base: Duration::ZERO, cap: Duration::ZERO, park_base: Duration::ZERO };

    let first =
        Bead::claim(&mut conn, &bead, agent_id, Duration::from_secs(60)).await.unwrap().unwrap();
    let after = Bead::release(
        &mut conn,
        first.run_id,
        RunOutcome::Failed,
        Some("tests failed".into()),
        policy,
    )
    .await
    .unwrap();
    assert_eq!(after, Some(AfterRun::Retry { attempts: 1 }));
    let b = app.show(&bead).await;
    assert_eq!(
        (b["status"].as_str(), b["attempts"].as_i64(), b["last_error"].as_str()),
        (Some("open"), Some(1), Some("tests failed"))
    );
    assert_eq!(app.get(&format!("/api/v1/agents/{agent_id}")).await.body["status"], "idle");
    // releasing twice records nothing more
    assert_eq!(
        Bead::release(&mut conn, first.run_id, RunOutcome::Failed, None, policy).await.unwrap(),
        None
    );

    let second =
        Bead::claim(&mut conn, &bead, agent_id, Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(second.attempt, 2);
    let after =
        Bead::release(&mut conn, second.run_id, RunOutcome::TurnLimit, None, policy).await.unwrap();
    assert_eq!(after, Some(AfterRun::Blocked(BlockedReason::TooManyAttempts)));
    assert_eq!(app.show(&bead).await["blocked_reason"], "too_many_attempts");

    let reopened = app.post(&format!("/api/v1/beads/{bead}/reopen"), json!({})).await;
    assert_eq!(
        (reopened.body["status"].as_str(), reopened.body["attempts"].as_i64()),
        (Some("open"), Some(0))
    );

    // with a real back-off the bead waits before it is ready again
    let third =
        Bead::claim(&mut conn, &bead, agent_id, Duration::from_secs(60)).await.unwrap().unwrap();
    Bead::release(&mut conn, third.run_id, RunOutcome::Failed, None, RetryPolicy::default())
        .await
        .unwrap();
    assert!(app.ready_ids("web").await.is_empty());
    assert!(
        Bead::claim(&mut conn, &bead, agent_id, Duration::from_secs(60)).await.unwrap().is_none()
    );
}

#[tokio::test]
async fn success_closes_the_bead_and_a_question_blocks_it_for_a_human() {
    let app = spawn().await;
    app.project("web").await;
    let agent_id: uuid::Uuid = agent(&app, "ada", None).await.parse().unwrap();
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({"depends_on": [a]})).await;
    let mut conn = app.pool.get().await.unwrap();
    assert!(
        Bead::claim(&mut conn, &b, agent_id, Duration::from_secs(60)).await.unwrap().is_none(),
        "b waits on a"
    );
    let claim =
        Bead::claim(&mut conn, &a, agent_id, Duration::from_secs(60)).await.unwrap().unwrap();
    assert!(Bead::renew_lease(&mut conn, &claim, Duration::from_secs(120)).await.unwrap());
    let summary = Some("Added the login form.".to_owned());
    let after = Bead::release(
        &mut conn,
        claim.run_id,
        RunOutcome::Success,
        summary.clone(),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(after, Some(AfterRun::Closed));
    // Closed under the graph lock (b waits on a): the summary is the close reason.
    let shown = app.show(&a).await;
    assert_eq!(
        (shown["status"].as_str(), shown["close_reason"].as_str()),
        (Some("closed"), summary.as_deref())
    );
    assert_eq!(shown["runs"][0]["summary"].as_str(), summary.as_deref());
    assert!(shown["runs"][0]["error"].is_null());
    // A plain bead closes in one statement, and the same way.
    let c = app.bead("web", "c", json!({})).await;
    let claim_c =
        Bead::claim(&mut conn, &c, agent_id, Duration::from_secs(60)).await.unwrap().unwrap();
    let done = Some("Wrote the docs.".to_owned());
    Bead::release(&mut conn, claim_c.run_id, RunOutcome::Success, done, RetryPolicy::default())
        .await
        .unwrap();
    let shown = app.show(&c).await;
    assert_eq!(shown["close_reason"], "Wrote the docs.");
    assert_eq!(shown["runs"][0]["summary"], "Wrote the docs.");
    assert!(
        !Bead::renew_lease(&mut conn, &claim, Duration::from_secs(120)).await.unwrap(),
        "a released claim cannot be renewed"
    );
    let claim =
        Bead::claim(&mut conn, &b, agent_id, Duration::from_secs(60)).await.unwrap().unwrap();
    let question = Some("which database should this use?".to_owned());
    let after = Bead::release(
        &mut conn,
        claim.run_id,
        RunOutcome::NeedsHuman,
        question,
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(after, Some(AfterRun::Blocked(BlockedReason::NeedsHuman)));
    let shown = app.show(&b).await;
    assert_eq!(
        (shown["blocked_reason"].as_str(), shown["blocked_note"].as_str()),
        (Some("needs_human"), Some("which database should this use?"))
    );
}
