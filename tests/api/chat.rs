//! Pair-programming conversations through the API: starting one with an agent or a persona,
//! on a project and a bead, every reference checked; listing and reading them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

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

async fn start(app: &TestApp, body: Value) -> crate::support::Res {
    app.call(Method::POST, "/api/v1/conversations", Some(&app.member), Some(body)).await
}

#[tokio::test]
async fn a_member_starts_a_conversation_with_an_agent_or_a_persona_and_anyone_reads_it() {
    let app = spawn().await;
    app.project("chat").await;
    let bead = app.bead("chat", "Pair on the parser", json!({})).await;
    let ada = agent(&app, "ada", Some("chat")).await;
    let with_agent = start(&app, json!({"project": "chat", "agent": ada, "bead": bead})).await;
    assert_eq!(with_agent.status, StatusCode::CREATED, "{:?}", with_agent.body);
    assert_eq!(
        (
            with_agent.body["persona"].as_str(),
            with_agent.body["title"].as_str(),
            with_agent.body["status"].as_str()
        ),
        (Some("software-engineer"), Some("Pair on the parser"), Some("open")),
        "the agent's persona; the bead's title by default"
    );
    let with_persona =
        start(&app, json!({"project": "chat", "persona": "software-engineer", "title": "Ideas"}))
            .await;
    assert_eq!(with_persona.status, StatusCode::CREATED, "{:?}", with_persona.body);
    assert!(with_persona.body["agent"].is_null());

    let id = with_agent.body["id"].as_str().unwrap();
    let shown = app
        .call(Method::GET, &format!("/api/v1/conversations/{id}"), Some(&app.viewer), None)
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["messages"], json!([]));
    assert_eq!(shown.body["bead"], bead.as_str());

    let on_bead = app
        .call(Method::GET, &format!("/api/v1/conversations?bead={bead}"), Some(&app.viewer), None)
        .await;
    let ids: Vec<_> =
        on_bead.body["items"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect();
    assert_eq!(ids, [json!(id)]);
    let all = app
        .call(Method::GET, "/api/v1/conversations?project=chat&limit=1", Some(&app.viewer), None)
        .await;
    assert_eq!(all.body["items"][0]["title"], "Ideas", "newest first");
    let cursor = all.body["next_cursor"].as_str().unwrap();
    let next = app
        .call(
            Method::GET,
            &format!("/api/v1/conversations?project=chat&cursor={cursor}"),
            Some(&app.viewer),
            None,
        )
        .await;
    assert_eq!(next.body["items"][0]["id"], json!(id));
    assert!(next.body["next_cursor"].is_null());
    let started = app.get("/api/v1/activity?kind=conversation.started").await;
    assert_eq!(started.body["items"].as_array().unwrap().len(), 2, "{:?}", started.body);
}

#[tokio::test]
async fn not_told_whom_to_talk_to_it_takes_the_beads_persona_else_the_projects_agent() {
    let app = spawn().await;
    app.project("web").await;
    app.project("api").await;
    let plain = app.bead("web", "Plain", json!({})).await;
    let qa = app.bead("web", "Test it", json!({"persona": "qa-engineer"})).await;
    let nobody = start(&app, json!({"project": "web", "bead": plain})).await;
    assert_eq!(nobody.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", nobody.body);
    assert_eq!(nobody.code(), "agent_or_persona_required");
    let message = nobody.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("no agent works on project web"), "{message}");

    let by_persona = start(&app, json!({"project": "web", "bead": qa})).await;
    assert_eq!(by_persona.status, StatusCode::CREATED, "{:?}", by_persona.body);
    assert_eq!(by_persona.body["persona"], "qa-engineer");
    assert!(by_persona.body["agent"].is_null());

    // An agent of any project serves when none is bound to this one; a bound one comes first.
    let anywhere = agent(&app, "zed", None).await;
    agent(&app, "elsewhere", Some("api")).await;
    let any = start(&app, json!({"project": "web"})).await;
    assert_eq!(any.status, StatusCode::CREATED, "{:?}", any.body);
    assert_eq!(any.body["agent"], json!(anywhere));
    let bound = agent(&app, "ada", Some("web")).await;
    let on_bead = start(&app, json!({"project": "web", "bead": plain})).await;
    assert_eq!(on_bead.status, StatusCode::CREATED, "{:?}", on_bead.body);
    assert_eq!(on_bead.body["agent"], json!(bound));
    assert_eq!(on_bead.body["persona"], "software-engineer");
}

#[tokio::test]
async fn every_reference_a_conversation_makes_is_checked() {
    let app = spawn().await;
    app.project("one").await;
    app.project("two").await;
    let elsewhere = app.bead("two", "Not here", json!({})).await;
    let done = app.bead("one", "Done", json!({})).await;
    app.call(Method::POST, &format!("/api/v1/beads/{done}/close"), Some(&app.member), None).await;
    let bound = agent(&app, "bo", Some("two")).await;
    let free = agent(&app, "fr", None).await;
    let ghost = uuid::Uuid::new_v4().to_string();
    for (body, status, code) in [
        (
            json!({"project": "nope", "persona": "software-engineer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_project",
        ),
        (
            json!({"project": "one", "persona": "nobody"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_persona",
        ),
        (
            json!({"project": "one", "agent": ghost}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_agent",
        ),
        (
            json!({"project": "one", "agent": bound}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "agent_in_other_project",
        ),
        (
            json!({"project": "one", "agent": free, "persona": "reviewer"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "persona_mismatch",
        ),
        (
            json!({"project": "one", "persona": "software-engineer", "bead": elsewhere}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bead_in_other_project",
        ),
        (
            json!({"project": "one", "persona": "software-engineer", "bead": "one-zzzz"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_bead",
        ),
        (
            json!({"project": "one", "persona": "software-engineer", "bead": done}),
            StatusCode::CONFLICT,
            "bead_closed",
        ),
        (
            json!({"project": "one", "persona": "software-engineer", "title": "x".repeat(201)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "title_too_long",
        ),
        (
            json!({"project": "one", "persona": "software-engineer", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let res = start(&app, body.clone()).await;
        assert_eq!((res.status, res.code()), (status, code), "{body}: {:?}", res.body);
    }
    let viewer = app
        .call(
            Method::POST,
            "/api/v1/conversations",
            Some(&app.viewer),
            Some(json!({"project": "one", "persona": "software-engineer"})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN, "viewers read, they do not chat");
    let missing = app
        .call(Method::GET, &format!("/api/v1/conversations/{ghost}"), Some(&app.viewer), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_cursor =
        app.call(Method::GET, "/api/v1/conversations?cursor=nope", Some(&app.viewer), None).await;
    assert_eq!((bad_cursor.status, bad_cursor.code()), (StatusCode::BAD_REQUEST, "invalid_cursor"));
    let listed = app.call(Method::GET, "/api/v1/conversations", Some(&app.viewer), None).await;
    assert_eq!(listed.body["items"], json!([]), "nothing refused was stored");
}
