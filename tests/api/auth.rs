use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{PASSWORD, spawn};

#[tokio::test]
async fn api_routes_without_a_token_are_401_with_a_json_error() {
    let app = spawn().await;
    for path in ["/api/v1/beads", "/api/v1/projects", "/api/v1/status", "/api/v1/auth/me"] {
        let res = app.call(Method::GET, path, None, None).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(res.code(), "unauthenticated");
    }
    let res = app.call(Method::GET, "/api/v1/beads", Some("loom_not-a-real-token"), None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let app = spawn().await;
    assert_eq!(app.call(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["migrations"], "current");
    let status = app.get("/api/v1/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["beads"]["open"], 0);
}

#[tokio::test]
async fn roles_are_enforced_viewer_reads_member_writes_admin_manages() {
    let app = spawn().await;
    app.project("web").await;
    let body = json!({ "project": "web", "title": "t" });
    let viewer =
        app.call(Method::POST, "/api/v1/beads", Some(&app.viewer), Some(body.clone())).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    assert_eq!(viewer.code(), "forbidden");
    assert_eq!(
        app.call(Method::GET, "/api/v1/beads", Some(&app.viewer), None).await.status,
        StatusCode::OK
    );
    let project = json!({ "id": "api", "name": "API", "repo": app.repo("r") });
    let member = app.call(Method::POST, "/api/v1/projects", Some(&app.member), Some(project)).await;
    assert_eq!(member.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.call(Method::GET, "/api/v1/users", Some(&app.member), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(Method::GET, "/api/v1/users", Some(&app.admin), None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn login_gives_a_working_token_and_wrong_user_or_password_look_the_same() {
    let app = spawn().await;
    let ok = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "member", "password": PASSWORD, "token": true})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let token = ok.body["token"].as_str().unwrap().to_owned();
    let me = app.call(Method::GET, "/api/v1/auth/me", Some(&token), None).await;
    assert_eq!(me.body["username"], "member");
    assert!(me.body.get("password_hash").is_none());

    let wrong_pw = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "member", "password": "nope-nope", "token": true})),
        )
        .await;
    let no_user = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "ghost", "password": PASSWORD, "token": true})),
        )
        .await;
    assert_eq!(wrong_pw.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_pw.body, no_user.body);

    let logout = app.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.call(Method::GET, "/api/v1/auth/me", Some(&token), None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_rate_limited() {
    let app = spawn().await;
    let bad = json!({"username": "viewer", "password": "wrong-password", "token": true});
    for _ in 0..10 {
        let res = app.call(Method::POST, "/api/v1/auth/login", None, Some(bad.clone())).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app.call(Method::POST, "/api/v1/auth/login", None, Some(bad)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
}

#[tokio::test]
async fn parallel_guesses_cannot_slip_under_the_login_limit() {
    let app = spawn().await;
    let bad = json!({"username": "member", "password": "wrong-password", "token": true});
    let guesses =
        (0..30).map(|_| app.call(Method::POST, "/api/v1/auth/login", None, Some(bad.clone())));
    let results = futures_util::future::join_all(guesses).await;
    let checked = results.iter().filter(|r| r.status == StatusCode::UNAUTHORIZED).count();
    let limited = results.iter().filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, limited), (10, 20));
}

#[tokio::test]
async fn tokens_show_their_secret_once_and_revoked_tokens_stop_working() {
    let app = spawn().await;
    let created = app.post("/api/v1/tokens", json!({"name": "ci"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("loom_"));
    let list = app.get("/api/v1/tokens").await;
    assert!(!list.body.to_string().contains(&secret), "a listed token must not show its secret");
    assert_eq!(
        app.call(Method::GET, "/api/v1/auth/me", Some(&secret), None).await.status,
        StatusCode::OK
    );
    // another user cannot revoke it
    let other =
        app.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&app.viewer), None).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete(&format!("/api/v1/tokens/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::GET, "/api/v1/auth/me", Some(&secret), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let empty = app.post("/api/v1/tokens", json!({"name": "  "})).await;
    assert_eq!(empty.code(), "invalid_token_name");
    let past = app
        .post("/api/v1/tokens", json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"}))
        .await;
    assert_eq!((past.status, past.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_expiry"));
    let bad_id = app.delete("/api/v1/tokens/not-a-uuid", None).await;
    assert_eq!(bad_id.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admins_manage_users_and_the_last_admin_is_protected() {
    let app = spawn().await;
    let admin = Some(app.admin.as_str());
    let created = app
        .call(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": "bo", "password": "long-enough-pw", "role": "viewer"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let dup = app
        .call(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": "bo", "password": "long-enough-pw", "role": "viewer"})),
        )
        .await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "username_taken"));
    let weak = app
        .call(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": "cy", "password": "short", "role": "viewer"})),
        )
        .await;
    assert_eq!((weak.status, weak.code()), (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"));
    let bad_name = app
        .call(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": "No Spaces", "password": "long-enough-pw", "role": "viewer"})),
        )
        .await;
    assert_eq!(bad_name.code(), "invalid_username");
    let bad_role = app
        .call(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": "dee", "password": "long-enough-pw", "role": "root"})),
        )
        .await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);

    let me = app.call(Method::GET, "/api/v1/auth/me", admin, None).await;
    let admin_id = me.body["id"].as_str().unwrap().to_owned();
    let demote = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            admin,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!((demote.status, demote.code()), (StatusCode::CONFLICT, "last_admin"));
    let delete = app.call(Method::DELETE, &format!("/api/v1/users/{admin_id}"), admin, None).await;
    assert_eq!(delete.code(), "last_admin");

    let bo = created.body["id"].as_str().unwrap();
    let promote = app
        .call(Method::PATCH, &format!("/api/v1/users/{bo}"), admin, Some(json!({"role": "admin"})))
        .await;
    assert_eq!(promote.body["role"], "admin");
    let now_ok = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            admin,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(now_ok.status, StatusCode::OK);
    let missing = app
        .call(
            Method::DELETE,
            "/api/v1/users/00000000-0000-0000-0000-000000000000",
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "the caller is no longer admin");
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_of_the_contract() {
    let app = spawn().await;
    let doc = app.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/api/v1/status"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/auth/me"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("patch", "/api/v1/users/{id}"),
        ("delete", "/api/v1/users/{id}"),
        ("get", "/api/v1/projects"),
        ("post", "/api/v1/projects"),
        ("get", "/api/v1/projects/{id}"),
        ("patch", "/api/v1/projects/{id}"),
        ("delete", "/api/v1/projects/{id}"),
        ("get", "/api/v1/projects/{id}/graph"),
        ("get", "/api/v1/beads"),
        ("post", "/api/v1/beads"),
        ("get", "/api/v1/beads/ready"),
        ("get", "/api/v1/beads/blocked"),
        ("get", "/api/v1/beads/{id}"),
        ("patch", "/api/v1/beads/{id}"),
        ("post", "/api/v1/beads/{id}/close"),
        ("post", "/api/v1/beads/{id}/reopen"),
        ("post", "/api/v1/beads/{id}/block"),
        ("post", "/api/v1/beads/{id}/dependencies"),
        ("delete", "/api/v1/beads/{id}/dependencies"),
        ("get", "/api/v1/beads/{id}/comments"),
        ("post", "/api/v1/beads/{id}/comments"),
        ("get", "/api/v1/beads/{id}/runs"),
        ("get", "/api/v1/runs/{id}"),
        ("get", "/api/v1/personas"),
        ("get", "/api/v1/personas/{name}"),
        ("post", "/api/v1/personas/reload"),
        ("get", "/api/v1/agents"),
        ("post", "/api/v1/agents"),
        ("get", "/api/v1/agents/{id}"),
        ("patch", "/api/v1/agents/{id}"),
        ("delete", "/api/v1/agents/{id}"),
        ("post", "/api/v1/agents/{id}/pause"),
        ("post", "/api/v1/agents/{id}/resume"),
        ("get", "/api/v1/schedules"),
        ("post", "/api/v1/schedules"),
        ("get", "/api/v1/schedules/{id}"),
        ("patch", "/api/v1/schedules/{id}"),
        ("delete", "/api/v1/schedules/{id}"),
        ("post", "/api/v1/schedules/{id}/run"),
        ("get", "/api/v1/conversations"),
        ("post", "/api/v1/conversations"),
        ("get", "/api/v1/conversations/{id}"),
        ("post", "/api/v1/conversations/{id}/handoff"),
        ("post", "/api/v1/conversations/{id}/messages"),
        ("get", "/api/v1/conversations/{id}/stream"),
        ("post", "/api/v1/conversations/{id}/stop"),
    ];
    for (method, path) in expected {
        assert!(
            doc.body["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = spawn().await;
    app.project("web").await;
    app.bead("web", "one", json!({})).await;
    let res = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    let text = res.body.as_str().unwrap();
    assert!(text.contains("loom_beads{project=\"web\",status=\"open\"} 1"), "{text}");
    assert!(text.contains("loom_ready_beads{project=\"web\"} 1"), "{text}");
}
