use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::spawn;

#[tokio::test]
async fn projects_are_created_listed_changed_and_validated() {
    let app = spawn().await;
    let admin = Some(app.admin.as_str());
    let r = app.repo("r");
    let p = app.project("web").await;
    assert_eq!(
        (p["branch"].as_str(), p["prefix"].as_str(), p["max_parallel"].as_i64()),
        (Some("main"), Some("web"), Some(2))
    );
    let dup = app
        .call(
            Method::POST,
            "/api/v1/projects",
            admin,
            Some(json!({"id": "web", "name": "x", "repo": r})),
        )
        .await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "project_exists"));
    let bad = app
        .call(
            Method::POST,
            "/api/v1/projects",
            admin,
            Some(json!({"id": "Web Site", "name": "x", "repo": r})),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_id"));
    let branch = app
        .call(
            Method::POST,
            "/api/v1/projects",
            admin,
            Some(json!({"id": "b", "name": "x", "repo": r, "branch": "a..b"})),
        )
        .await;
    assert_eq!(branch.code(), "invalid_branch");
    let par = app
        .call(
            Method::POST,
            "/api/v1/projects",
            admin,
            Some(json!({"id": "c", "name": "x", "repo": r, "max_parallel": 0})),
        )
        .await;
    assert_eq!(par.code(), "invalid_max_parallel");
    let missing_field =
        app.call(Method::POST, "/api/v1/projects", admin, Some(json!({"id": "d"}))).await;
    assert_eq!(
        (missing_field.status, missing_field.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );

    let patched = app
        .call(
            Method::PATCH,
            "/api/v1/projects/web",
            admin,
            Some(json!({"max_parallel": 4, "name": "Web!"})),
        )
        .await;
    assert_eq!(
        (patched.body["max_parallel"].as_i64(), patched.body["name"].as_str()),
        (Some(4), Some("Web!"))
    );
    assert_eq!(app.get("/api/v1/projects/nope").await.status, StatusCode::NOT_FOUND);
    let list = app.get("/api/v1/projects").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(list.body["next_cursor"].is_null());
}

#[tokio::test]
async fn a_project_with_unfinished_beads_cannot_be_deleted() {
    let app = spawn().await;
    let admin = Some(app.admin.as_str());
    app.project("web").await;
    let id = app.bead("web", "unfinished", json!({})).await;
    let refused = app.call(Method::DELETE, "/api/v1/projects/web", admin, None).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "project_has_open_beads"));
    assert_eq!(app.close(&id).await.status, StatusCode::OK);
    assert_eq!(
        app.call(Method::DELETE, "/api/v1/projects/web", admin, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&format!("/api/v1/beads/{id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call(Method::DELETE, "/api/v1/projects/web", admin, None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_graph_has_nodes_and_edges_of_every_kind() {
    let app = spawn().await;
    app.project("web").await;
    let epic = app.bead("web", "epic", json!({"type": "epic"})).await;
    let a = app.bead("web", "a", json!({"parent": epic})).await;
    let b = app.bead("web", "b", json!({"depends_on": [a]})).await;
    app.depend(&b, &epic, "related").await;
    let g = app.get("/api/v1/projects/web/graph").await;
    assert_eq!(g.body["nodes"].as_array().unwrap().len(), 3);
    let edges = g.body["edges"].as_array().unwrap();
    let has = |from: &str, to: &str, kind: &str| {
        edges.iter().any(|e| e["from"] == from && e["to"] == to && e["kind"] == kind)
    };
    assert!(
        has(&b, &a, "blocks") && has(&a, &epic, "parent-child") && has(&b, &epic, "related"),
        "{edges:?}"
    );
    assert_eq!(app.get("/api/v1/projects/none/graph").await.status, StatusCode::NOT_FOUND);
}
