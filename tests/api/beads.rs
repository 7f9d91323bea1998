use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ids, spawn};

#[tokio::test]
async fn a_new_bead_gets_defaults_and_an_id_with_the_project_prefix() {
    let app = spawn().await;
    app.project("web").await;
    let res = app
        .post(
            "/api/v1/beads",
            json!({"project": "web", "title": "  Fix login  ", "labels": ["UI", "ui", "auth"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let b = &res.body;
    let id = b["id"].as_str().unwrap();
    assert!(id.starts_with("web-") && id.len() >= 8, "{id}");
    assert_eq!(
        (b["title"].as_str(), b["type"].as_str(), b["priority"].as_i64()),
        (Some("Fix login"), Some("task"), Some(2))
    );
    assert_eq!(
        (b["status"].as_str(), b["version"].as_i64(), b["ready"].as_bool()),
        (Some("open"), Some(1), Some(true))
    );
    assert_eq!(b["labels"], json!(["ui", "auth"]));
    let p1 =
        app.post("/api/v1/beads", json!({"project": "web", "title": "t", "priority": "P1"})).await;
    assert_eq!(p1.body["priority"], 1);
}

#[tokio::test]
async fn bad_bead_input_gets_a_clear_error_code() {
    let app = spawn().await;
    app.project("web").await;
    let cases = [
        (json!({"project": "web", "title": ""}), 422, "title_required"),
        (json!({"project": "web", "title": "x".repeat(201)}), 422, "title_too_long"),
        (json!({"project": "web", "title": "t", "priority": 5}), 422, "invalid_priority"),
        (json!({"project": "web", "title": "t", "priority": "P9"}), 422, "invalid_priority"),
        (json!({"project": "web", "title": "t", "type": "story"}), 422, "invalid_body"),
        (json!({"project": "web", "title": "t", "labels": ["has space"]}), 422, "invalid_label"),
        (json!({"project": "web", "title": "t", "persona": "Not A Slug"}), 422, "invalid_persona"),
        (json!({"project": "nope", "title": "t"}), 422, "unknown_project"),
        (json!({"project": "web", "title": "t", "parent": "web-zzzz"}), 422, "unknown_parent"),
        (
            json!({"project": "web", "title": "t", "depends_on": ["web-zzzz"]}),
            422,
            "unknown_dependency",
        ),
        (json!({"project": "web", "title": "t", "colour": "red"}), 422, "invalid_body"),
        (json!({"project": "web", "title": 7}), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let res = app.post("/api/v1/beads", body.clone()).await;
        assert_eq!((res.status.as_u16(), res.code()), (status, code), "{body}");
        assert!(res.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let raw = reqwest::Client::new()
        .post(format!("{}/api/v1/beads", app.base))
        .bearer_auth(&app.member)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json");
    let listed = app.get("/api/v1/beads?project=web").await;
    assert!(ids(&listed.body["items"]).is_empty(), "no bad input may leave a bead behind");
}

#[tokio::test]
async fn unknown_routes_and_ids_are_json_404s() {
    let app = spawn().await;
    for path in [
        "/api/v1/beads/web-zzzz",
        "/api/v1/beads/NOT*AN*ID",
        "/api/v1/runs/not-a-uuid",
        "/api/v1/nothing",
    ] {
        let res = app.get(path).await;
        assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "not_found"), "{path}");
    }
    let bad_query = app.get("/api/v1/beads?limit=lots").await;
    assert_eq!((bad_query.status, bad_query.code()), (StatusCode::BAD_REQUEST, "invalid_query"));
    let big = app.get("/api/v1/beads?limit=501").await;
    assert_eq!(big.code(), "invalid_limit");
    let cursor = app.get("/api/v1/beads?cursor=garbage").await;
    assert_eq!(cursor.code(), "invalid_cursor");
    let status = app.get("/api/v1/beads?status=open,done").await;
    assert_eq!(status.code(), "invalid_status");
}

#[tokio::test]
async fn children_get_dotted_ids() {
    let app = spawn().await;
    app.project("web").await;
    let epic = app.bead("web", "epic", json!({"type": "epic"})).await;
    let c1 = app.bead("web", "one", json!({"parent": epic})).await;
    let c2 = app.bead("web", "two", json!({"parent": epic})).await;
    let grandchild = app.bead("web", "deep", json!({"parent": c1})).await;
    assert_eq!((c1.clone(), c2), (format!("{epic}.1"), format!("{epic}.2")));
    assert_eq!(grandchild, format!("{epic}.1.1"));
    let children = app.get(&format!("/api/v1/beads?parent={epic}")).await;
    assert_eq!(ids(&children.body["items"]).len(), 2);
}

#[tokio::test]
async fn lists_filter_and_page_without_gaps_or_duplicates() {
    let app = spawn().await;
    app.project("web").await;
    app.project("api").await;
    for i in 0..25 {
        let labels = if i % 5 == 0 { json!(["ui"]) } else { json!([]) };
        app.bead("web", &format!("web bead {i}"), json!({"priority": i % 5, "labels": labels}))
            .await;
    }
    app.bead("api", "an api bug", json!({"type": "bug"})).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/beads?project=web&limit=7&cursor={c}"),
            None => "/api/v1/beads?project=web&limit=7".to_owned(),
        };
        let page = app.get(&path).await;
        seen.extend(ids(&page.body["items"]));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (25, 25));
    let check = |path: &str, n: usize| {
        let app = &app;
        let path = path.to_owned();
        async move {
            let res = app.get(&path).await;
            assert_eq!(ids(&res.body["items"]).len(), n, "{path}: {:?}", res.body);
        }
    };
    check("/api/v1/beads?label=ui", 5).await;
    check("/api/v1/beads?priority=P0,1", 10).await;
    check("/api/v1/beads?type=bug", 1).await;
    check("/api/v1/beads?q=API%20BUG", 1).await;
    check("/api/v1/beads?q=100%25", 0).await;
    check("/api/v1/beads?status=closed", 0).await;
    let first = app.get("/api/v1/beads?project=web&limit=1").await;
    assert_eq!(first.body["items"][0]["priority"], 0, "most urgent first");
}

#[tokio::test]
async fn patch_needs_the_current_version_and_bumps_it() {
    let app = spawn().await;
    app.project("web").await;
    let id = app.bead("web", "t", json!({})).await;
    let ok = app
        .patch(
            &format!("/api/v1/beads/{id}"),
            json!({"version": 1, "title": "new", "priority": 0, "labels": ["x"]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!((ok.body["title"].as_str(), ok.body["version"].as_i64()), (Some("new"), Some(2)));
    let stale =
        app.patch(&format!("/api/v1/beads/{id}"), json!({"version": 1, "title": "old"})).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::CONFLICT, "stale_version"));
    assert_eq!(app.show(&id).await["title"], "new");
    let claim = app
        .patch(&format!("/api/v1/beads/{id}"), json!({"version": 2, "status": "in_progress"}))
        .await;
    assert_eq!(claim.code(), "invalid_status");
    let no_version = app.patch(&format!("/api/v1/beads/{id}"), json!({"title": "x"})).await;
    assert_eq!(no_version.code(), "invalid_body");
    let defer = app
        .patch(&format!("/api/v1/beads/{id}"), json!({"version": 2, "status": "deferred"}))
        .await;
    assert_eq!(
        (defer.body["status"].as_str(), defer.body["version"].as_i64()),
        (Some("deferred"), Some(3))
    );
    let history = &app.show(&id).await["history"];
    let kinds: Vec<&str> =
        history.as_array().unwrap().iter().filter_map(|a| a["kind"].as_str()).collect();
    assert_eq!(kinds, ["bead.created", "bead.updated", "bead.deferred"]);
}

#[tokio::test]
async fn concurrent_patches_at_one_version_let_exactly_one_win() {
    let app = spawn().await;
    app.project("web").await;
    let id = app.bead("web", "contended", json!({})).await;
    let path = format!("/api/v1/beads/{id}");
    let attempts: Vec<_> = (0..8)
        .map(|i| app.patch(&path, json!({"version": 1, "title": format!("writer {i}")})))
        .collect();
    let results = futures_util::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.status == StatusCode::OK).count();
    let stale = results.iter().filter(|r| r.code() == "stale_version").count();
    assert_eq!((won, stale), (1, 7));
    assert_eq!(app.show(&id).await["version"], 2);
}

#[tokio::test]
async fn close_reopen_and_block_follow_the_rules() {
    let app = spawn().await;
    app.project("web").await;
    let id = app.bead("web", "t", json!({})).await;
    let closed = app.post(&format!("/api/v1/beads/{id}/close"), json!({"reason": "done"})).await;
    assert_eq!(
        (closed.body["status"].as_str(), closed.body["close_reason"].as_str()),
        (Some("closed"), Some("done"))
    );
    assert!(closed.body["closed_at"].is_string());
    assert_eq!(app.close(&id).await.code(), "already_closed");
    let block_closed =
        app.post(&format!("/api/v1/beads/{id}/block"), json!({"reason": "why"})).await;
    assert_eq!(block_closed.code(), "bead_closed");
    let stale = app.post(&format!("/api/v1/beads/{id}/reopen"), json!({"version": 1})).await;
    assert_eq!(stale.code(), "stale_version");
    // a failed attempt history is wiped by a person's reopen
    let mut conn = app.pool.get().await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE beads SET attempts = 3, last_error = 'boom' WHERE id = '{id}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    let reopened = app.post(&format!("/api/v1/beads/{id}/reopen"), json!({})).await;
    assert_eq!(
        (reopened.body["status"].as_str(), reopened.body["attempts"].as_i64()),
        (Some("open"), Some(0))
    );
    assert!(reopened.body["closed_at"].is_null() && reopened.body["last_error"].is_null());
    assert_eq!(
        app.post(&format!("/api/v1/beads/{id}/reopen"), json!({})).await.code(),
        "already_open"
    );
    let empty_reason = app.post(&format!("/api/v1/beads/{id}/block"), json!({"reason": " "})).await;
    assert_eq!(empty_reason.code(), "reason_required");
    let blocked =
        app.post(&format!("/api/v1/beads/{id}/block"), json!({"reason": "which database?"})).await;
    assert_eq!(
        (blocked.body["blocked_reason"].as_str(), blocked.body["blocked_note"].as_str()),
        (Some("manual"), Some("which database?"))
    );
    assert_eq!(blocked.body["ready"], false);
    let unblocked = app.post(&format!("/api/v1/beads/{id}/reopen"), json!({})).await;
    assert!(unblocked.body["blocked_reason"].is_null());
    assert_eq!(
        app.post("/api/v1/beads/web-zzzz/close", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_change_writes_one_activity_row_in_its_transaction() {
    let app = spawn().await;
    app.project("web").await;
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({})).await;
    app.depend(&b, &a, "blocks").await;
    app.post(&format!("/api/v1/beads/{b}/comments"), json!({"body": "ping @admin"})).await;
    app.close(&a).await;
    // a refused change leaves no trace
    assert_eq!(app.close(&a).await.code(), "already_closed");
    let kinds = |d: &serde_json::Value| -> Vec<String> {
        d["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds(&app.show(&a).await), ["bead.created", "bead.closed"]);
    let hb = app.show(&b).await;
    assert_eq!(kinds(&hb), ["bead.created", "dependency.added", "comment.added"]);
    assert_eq!(hb["history"][2]["data"]["mentions"], json!(["admin"]));
}

#[tokio::test]
async fn comments_are_listed_oldest_first_and_validated() {
    let app = spawn().await;
    app.project("web").await;
    let id = app.bead("web", "t", json!({})).await;
    for body in ["first", "second", "third"] {
        let res = app.post(&format!("/api/v1/beads/{id}/comments"), json!({"body": body})).await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let page = app.get(&format!("/api/v1/beads/{id}/comments?limit=2")).await;
    let bodies: Vec<_> =
        page.body["items"].as_array().unwrap().iter().map(|c| c["body"].clone()).collect();
    assert_eq!(bodies, [json!("first"), json!("second")]);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = app.get(&format!("/api/v1/beads/{id}/comments?cursor={cursor}")).await;
    assert_eq!(rest.body["items"][0]["body"], "third");
    let empty = app.post(&format!("/api/v1/beads/{id}/comments"), json!({"body": "   "})).await;
    assert_eq!(empty.code(), "body_required");
    let viewer = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/beads/{id}/comments"),
            Some(&app.viewer.clone()),
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/beads/web-zzzz/comments").await.status, StatusCode::NOT_FOUND);
    let runs = app.get(&format!("/api/v1/beads/{id}/runs")).await;
    assert_eq!(runs.body["items"], json!([]));
}

#[tokio::test]
async fn close_takes_an_empty_body_but_refuses_a_malformed_one() {
    let app = spawn().await;
    app.project("web").await;
    let id = app.bead("web", "t", json!({})).await;
    let send = |body: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/beads/{id}/close", app.base))
            .bearer_auth(&app.member)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let malformed = send("{reason: oops").await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let wrong_type = send(r#"{"reason": 5}"#).await.unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.show(&id).await["status"], "open", "a refused request changes nothing");
    let empty = send("").await.unwrap();
    assert_eq!(empty.status(), StatusCode::OK);
    assert_eq!(app.show(&id).await["status"], "closed");
}

#[tokio::test]
async fn text_with_a_nul_character_is_refused_not_a_server_error() {
    let app = spawn().await;
    app.project("web").await;
    let res = app.post("/api/v1/beads", json!({"project": "web", "title": "bad\u{0}title"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid_text"));
    let q = app.get("/api/v1/beads?q=%00").await;
    assert_eq!(q.status, StatusCode::BAD_REQUEST);
    let path = app.get("/api/v1/projects/a%00b").await;
    assert!(path.status.is_client_error(), "{:?}", path.status);
    let id = app.bead("web", "fine", json!({})).await;
    let comment =
        app.post(&format!("/api/v1/beads/{id}/comments"), json!({"body": "x\u{0}y"})).await;
    assert_eq!(comment.code(), "invalid_text");
    assert!(app.show(&id).await["comments"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_oversized_optional_body_gets_a_json_error() {
    let app = spawn().await;
    app.project("web").await;
    let id = app.bead("web", "t", json!({})).await;
    let huge = json!({"reason": "x".repeat(100_000)});
    let res = app.post(&format!("/api/v1/beads/{id}/close"), huge).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "body_too_large"));
}

#[tokio::test]
async fn an_epic_closes_when_its_last_open_child_is_moved_out() {
    let app = spawn().await;
    app.project("web").await;
    let epic = app.bead("web", "epic", json!({"type": "epic"})).await;
    let done = app.bead("web", "done", json!({"parent": epic})).await;
    let moved = app.bead("web", "moved", json!({"parent": epic})).await;
    app.close(&done).await;
    assert_eq!(app.show(&epic).await["status"], "open");
    let res = app
        .delete(
            &format!("/api/v1/beads/{moved}/dependencies"),
            Some(json!({"depends_on": epic, "kind": "parent-child"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.show(&epic).await["status"], "closed");
    // an empty epic stays open
    let empty = app.bead("web", "empty epic", json!({"type": "epic"})).await;
    assert_eq!(app.show(&empty).await["status"], "open");
}

#[tokio::test]
async fn a_body_that_is_not_json_or_too_large_gets_a_json_error() {
    let app = spawn().await;
    app.project("web").await;
    let post = |content_type: &'static str, body: String| {
        reqwest::Client::new()
            .post(format!("{}/api/v1/beads", app.base))
            .bearer_auth(&app.member)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let form = post("application/x-www-form-urlencoded", "title=x".into()).await.unwrap();
    assert_eq!(form.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = form.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_content_type");
    let huge =
        json!({"project": "web", "title": "t", "description": "x".repeat(2 << 20)}).to_string();
    let big = post("application/json", huge).await.unwrap();
    assert_eq!(big.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = big.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
}
