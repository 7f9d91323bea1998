//! What a person meets first on the dashboard: every bead that waits for them, with what clears
//! it, and, while no LLM gateway answers, the pages saying so and what to set.

use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::browser::logged_in;
use crate::support::chat::Pairing;
use crate::support::{TestApp, spawn};

async fn block_as(app: &TestApp, bead: &str, reason: &str, note: &str) {
    let mut conn = app.pool.get().await.expect("a connection");
    diesel::sql_query(format!(
        "UPDATE beads SET status = 'blocked', blocked_reason = '{reason}', \
         blocked_note = '{note}' WHERE id = '{bead}'"
    ))
    .execute(&mut conn)
    .await
    .expect("block the bead");
}

/// The text of the overview's "Waiting for a person" section.
fn waiting_section(body: &str) -> &str {
    let start = body.find("id=\"overview-human\"").expect("the section");
    let end = body[start..].find("</section>").expect("its end") + start;
    &body[start..end]
}

#[tokio::test]
async fn the_overview_lists_every_bead_a_person_must_act_on_with_what_clears_it() {
    let app = spawn().await;
    app.project("web").await;
    let mut member = logged_in(&app, "member").await;
    let empty = member.get("/").await;
    assert!(waiting_section(&empty.body).contains("Nothing is waiting for you"));

    let reasons = [
        ("needs_human", "Which database?", "answer it in a comment"),
        ("too_many_attempts", "cargo test failed three times", "read the last run"),
        ("merge_conflict", "src/lib.rs conflicts", "resolves the conflict"),
        ("loop_detected", "the same edit four times", "went round in circles"),
        ("sandbox_unavailable", "bwrap is missing", "repairs the sandbox"),
    ];
    let mut ids = Vec::new();
    for (i, (reason, note, _)) in reasons.iter().enumerate() {
        let bead = app.bead("web", &format!("Stuck {i}"), json!({"priority": i % 3})).await;
        block_as(&app, &bead, reason, note).await;
        ids.push(bead);
    }
    let by_hand = app.bead("web", "Held by hand", json!({})).await;
    let res = app
        .post(
            &format!("/api/v1/beads/{by_hand}/block"),
            json!({"reason": "waiting for the design review"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    // An outage heals by itself: nobody has to act on it.
    let parked = app.bead("web", "Parked in an outage", json!({})).await;
    block_as(&app, &parked, "gateway_unavailable", "the gateway is down").await;

    let page = member.get("/").await;
    let waiting = waiting_section(&page.body);
    assert!(!waiting.contains("Nothing is waiting"), "{waiting}");
    assert!(waiting.contains("6 beads are blocked until a person acts"), "{waiting}");
    for ((reason, note, remedy), id) in reasons.iter().zip(&ids) {
        assert!(waiting.contains(&format!("href=\"/beads/{id}\"")), "{id} missing: {waiting}");
        assert!(waiting.contains(reason) && waiting.contains(note), "{reason}: {waiting}");
        assert!(waiting.contains(remedy), "{reason} has no remedy: {waiting}");
    }
    assert!(waiting.contains(&format!("href=\"/beads/{by_hand}\"")));
    assert!(waiting.contains("waiting for the design review"));
    assert!(waiting.contains("reopen it when the reason is gone"));
    assert!(!waiting.contains(&parked), "a parked bead heals by itself: {waiting}");
    // Most urgent first: the P0 beads lead.
    let first = waiting.find(&ids[0]).expect("the P0 bead");
    let p2 = waiting.find(&ids[2]).expect("the P2 bead");
    assert!(first < p2, "{waiting}");
}

#[tokio::test]
async fn without_a_gateway_the_pages_say_agents_cannot_work_and_what_to_set() {
    let app = spawn().await;
    app.project("web").await;
    let res =
        app.post("/api/v1/agents", json!({"name": "ada", "persona": "software-engineer"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let bead = app.bead("web", "Tidy the parser", json!({})).await;
    let mut member = logged_in(&app, "member").await;

    for path in ["/", "/agents", &format!("/beads/{bead}")] {
        let page = member.get(path).await;
        assert!(page.contains("id=\"agents-stopped\""), "{path} says nothing");
        for setting in ["LOOM_GATEWAY_URL", "LOOM_GATEWAY_MODEL", "restart"] {
            assert!(page.contains(setting), "{path} does not name {setting}");
        }
    }
    let agents = member.get("/agents").await;
    assert!(agents.contains("idle · cannot work"), "{}", agents.body);
    assert!(!agents.contains("agent-status-idle"), "an idle agent is not shown as fine");

    let page = member.get(&format!("/beads/{bead}")).await;
    assert!(page.contains("Ready, but no agent can take it"), "{}", page.body);
    assert!(!page.contains("status-ready\">Ready<"), "not plain Ready");
    assert!(!page.contains("Start pairing"), "no pairing is offered");
    assert!(page.contains("id=\"pair-stopped\""));
    // A form posted anyway is refused on the bead's page, and the bead is not held.
    let refused = member
        .post(
            &format!("/beads/{bead}/pair"),
            &[("csrf", &page.csrf()), ("persona", "software-engineer")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.contains("LOOM_GATEWAY_MODEL"));
    assert!(app.show(&bead).await["paired_in"].is_null());
}

#[tokio::test]
async fn with_a_gateway_that_answers_nothing_is_said_and_pairing_is_offered() {
    let p = Pairing::new(|_| {}).await;
    let bead = p.app.bead("web", "Tidy the parser", json!({})).await;
    let mut member = logged_in(&p.app, "member").await;
    let page = member.get(&format!("/beads/{bead}")).await;
    assert!(!page.contains("id=\"agents-stopped\""), "{}", page.body);
    assert!(page.contains("Start pairing"));
    assert!(page.contains("status-ready\">Ready<"));
}
