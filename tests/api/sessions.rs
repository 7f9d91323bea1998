//! Browser sessions through the API: the cookie, CSRF on cookie-authenticated writes, logout
//! and both expiries.

use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, spawn};

/// A logged-in browser, as far as the API sees one: its cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn log_in(app: &TestApp, username: &str) -> Browser {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert!(body.get("token").is_none(), "{body}");
    assert_eq!(body["user"]["username"], username);
    Browser {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        set_cookie,
    }
}

async fn with_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    browser: &Browser,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .header("cookie", &browser.cookie);
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_password_login_without_a_token_flag_starts_a_session_in_a_safe_cookie() {
    let app = spawn().await;
    let b = log_in(&app, "member").await;
    let attrs = b.set_cookie.to_lowercase();
    assert!(b.cookie.starts_with("loom_session="), "{}", b.set_cookie);
    for attr in ["httponly", "samesite=lax", "path=/", "max-age="] {
        assert!(attrs.contains(attr), "{attr} in {}", b.set_cookie);
    }
    assert!(!attrs.contains("secure"), "plain HTTP: no Secure flag");
    let (status, me) = with_cookie(&app, Method::GET, "/api/v1/auth/me", &b, None, None).await;
    assert_eq!((status, me["username"].as_str()), (StatusCode::OK, Some("member")));
    // Each login is a new session.
    let again = log_in(&app, "member").await;
    assert_ne!(again.cookie, b.cookie);
    assert_ne!(again.csrf, b.csrf);
}

#[tokio::test]
async fn a_cookie_authenticated_write_needs_the_sessions_csrf_token() {
    let app = spawn().await;
    let b = log_in(&app, "member").await;
    let other = log_in(&app, "viewer").await;
    app.project("csrf").await;
    let bead = json!({"project": "csrf", "title": "forged"});
    for csrf in [None, Some("forged"), Some(other.csrf.as_str())] {
        let (status, body) =
            with_cookie(&app, Method::POST, "/api/v1/beads", &b, csrf, Some(bead.clone())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("csrf_failed")),
            "{csrf:?}"
        );
    }
    let res = app.call(Method::GET, "/api/v1/beads?project=csrf", Some(&app.member), None).await;
    assert_eq!(res.body["items"], json!([]), "nothing was written");
    let (status, body) = with_cookie(
        &app,
        Method::POST,
        "/api/v1/tokens",
        &b,
        Some(&b.csrf),
        Some(json!({"name": "from the browser"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let app = spawn().await;
    let b = log_in(&app, "member").await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/logout", app.base))
        .header("cookie", &b.cookie)
        .header("x-csrf-token", &b.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cleared = res.headers()["set-cookie"].to_str().unwrap().to_lowercase();
    assert!(cleared.starts_with("loom_session=;") && cleared.contains("max-age=0"), "{cleared}");
    let (status, body) = with_cookie(&app, Method::GET, "/api/v1/auth/me", &b, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
}

async fn age_sessions(app: &TestApp, set: &str) {
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query(format!("UPDATE sessions SET {set}")).execute(&mut conn).await.unwrap();
}

#[tokio::test]
async fn sessions_end_when_idle_too_long_or_past_their_absolute_expiry() {
    let app = spawn().await;
    let idle = log_in(&app, "member").await;
    age_sessions(&app, "last_seen_at = now() - interval '25 hours'").await;
    let (status, _) = with_cookie(&app, Method::GET, "/api/v1/auth/me", &idle, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "idle for longer than a day");

    let old = log_in(&app, "member").await;
    age_sessions(&app, "expires_at = now() - interval '1 second'").await;
    let (status, _) = with_cookie(&app, Method::GET, "/api/v1/auth/me", &old, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "past its absolute expiry, though just used");
}

#[tokio::test]
async fn a_new_password_ends_every_session_of_that_user() {
    let app = spawn().await;
    let b = log_in(&app, "viewer").await;
    let users = app.call(Method::GET, "/api/v1/users", Some(&app.admin), None).await;
    let viewer =
        users.body["items"].as_array().unwrap().iter().find(|u| u["username"] == "viewer").unwrap()
            ["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let res = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{viewer}"),
            Some(&app.admin),
            Some(json!({"password": "a-brand-new-password"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let (status, _) = with_cookie(&app, Method::GET, "/api/v1/auth/me", &b, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_garbage_or_unknown_session_cookie_is_simply_not_logged_in() {
    let app = spawn().await;
    for cookie in ["loom_session=", "loom_session=nope", "loom_session=%%%", "other=1"] {
        let res = reqwest::Client::new()
            .get(format!("{}/api/v1/auth/me", app.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{cookie}");
    }
}
