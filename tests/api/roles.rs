//! Every route × every role (issue 8's security matrix): anonymous, viewer, member and admin
//! each call every route of the OpenAPI document, and get in exactly when their role is at
//! least the one the route needs: a 401 without credentials, a 403 below the role, anything
//! but those at or above it, whatever the body: the role is checked before the body is read.
//! The table is the contract; a route missing from it fails.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::support::spawn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Needs {
    Nobody,
    Viewer,
    Member,
    Admin,
}

use Needs::{Admin, Member, Nobody, Viewer};

/// (method, path, the least role that gets in).
const ROUTES: &[(&str, &str, Needs)] = &[
    ("GET", "/healthz", Nobody),
    ("GET", "/readyz", Nobody),
    ("GET", "/metrics", Nobody),
    ("POST", "/api/v1/auth/login", Nobody),
    ("POST", "/api/v1/auth/logout", Viewer),
    ("GET", "/api/v1/auth/me", Viewer),
    ("GET", "/api/v1/status", Viewer),
    ("GET", "/api/v1/tokens", Viewer),
    ("POST", "/api/v1/tokens", Viewer),
    ("DELETE", "/api/v1/tokens/{id}", Viewer),
    ("GET", "/api/v1/users", Admin),
    ("POST", "/api/v1/users", Admin),
    ("PATCH", "/api/v1/users/{id}", Admin),
    ("DELETE", "/api/v1/users/{id}", Admin),
    ("GET", "/api/v1/projects", Viewer),
    ("POST", "/api/v1/projects", Admin),
    ("GET", "/api/v1/projects/{id}", Viewer),
    ("PATCH", "/api/v1/projects/{id}", Admin),
    ("DELETE", "/api/v1/projects/{id}", Admin),
    ("GET", "/api/v1/projects/{id}/graph", Viewer),
    ("GET", "/api/v1/projects/{id}/queue", Viewer),
    ("POST", "/api/v1/projects/{id}/watch", Viewer),
    ("DELETE", "/api/v1/projects/{id}/watch", Viewer),
    ("GET", "/api/v1/beads", Viewer),
    ("POST", "/api/v1/beads", Member),
    ("GET", "/api/v1/beads/ready", Viewer),
    ("GET", "/api/v1/beads/blocked", Viewer),
    ("GET", "/api/v1/beads/{id}", Viewer),
    ("PATCH", "/api/v1/beads/{id}", Member),
    ("POST", "/api/v1/beads/{id}/close", Member),
    ("POST", "/api/v1/beads/{id}/reopen", Member),
    ("POST", "/api/v1/beads/{id}/approve", Member),
    ("POST", "/api/v1/beads/{id}/request-changes", Member),
    ("POST", "/api/v1/beads/{id}/block", Member),
    ("GET", "/api/v1/beads/{id}/comments", Viewer),
    ("POST", "/api/v1/beads/{id}/comments", Member),
    ("POST", "/api/v1/beads/{id}/dependencies", Member),
    ("DELETE", "/api/v1/beads/{id}/dependencies", Member),
    ("GET", "/api/v1/beads/{id}/runs", Viewer),
    ("GET", "/api/v1/runs/{id}", Viewer),
    ("GET", "/api/v1/agents", Viewer),
    ("POST", "/api/v1/agents", Member),
    ("GET", "/api/v1/agents/{id}", Viewer),
    ("PATCH", "/api/v1/agents/{id}", Member),
    ("DELETE", "/api/v1/agents/{id}", Member),
    ("POST", "/api/v1/agents/{id}/pause", Member),
    ("POST", "/api/v1/agents/{id}/resume", Member),
    ("GET", "/api/v1/personas", Viewer),
    ("POST", "/api/v1/personas/reload", Admin),
    ("GET", "/api/v1/personas/{name}", Viewer),
    ("GET", "/api/v1/schedules", Viewer),
    ("POST", "/api/v1/schedules", Member),
    ("GET", "/api/v1/schedules/{id}", Viewer),
    ("PATCH", "/api/v1/schedules/{id}", Member),
    ("DELETE", "/api/v1/schedules/{id}", Member),
    ("POST", "/api/v1/schedules/{id}/run", Member),
    ("GET", "/api/v1/activity", Viewer),
    ("GET", "/api/v1/activity/stream", Viewer),
    ("GET", "/api/v1/notifications", Viewer),
    ("GET", "/api/v1/notifications/stream", Viewer),
    ("POST", "/api/v1/notifications/read-all", Viewer),
    ("POST", "/api/v1/notifications/{id}/read", Viewer),
    ("GET", "/api/v1/conversations", Viewer),
    ("POST", "/api/v1/conversations", Member),
    ("GET", "/api/v1/conversations/{id}", Viewer),
    ("POST", "/api/v1/conversations/{id}/messages", Member),
    ("GET", "/api/v1/conversations/{id}/stream", Viewer),
    ("POST", "/api/v1/conversations/{id}/stop", Member),
    ("POST", "/api/v1/conversations/{id}/handoff", Member),
];

/// What every write sends: a body that parses but names nothing, and one that is not JSON. A
/// caller below the role gets 403 for either, so the role is checked before the body is read.
const BODIES: &[&str] = &["{}", "not json"];

/// Only the status: a stream's body never ends, so it is not read.
async fn status(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> StatusCode {
    let concrete =
        path.replace("{id}", "0190f3c2-0000-7000-8000-000000000000").replace("{name}", "nobody");
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(method.clone(), format!("{base}{concrete}"));
    if method != Method::GET {
        req = req.header("content-type", "application/json").body(body.to_owned());
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = tokio::time::timeout(Duration::from_secs(15), req.send())
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer"))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    res.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_lets_in_exactly_the_roles_it_should() {
    let app = spawn().await;
    // The table covers the whole documented API, and nothing else.
    let doc = app.call(Method::GET, "/api/openapi.json", None, None).await;
    let mut documented = BTreeSet::new();
    for (path, ops) in doc.body["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let listed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(
        documented.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes with no expected role in the table"
    );
    assert_eq!(listed.difference(&documented).collect::<Vec<_>>(), Vec::<&(String, String)>::new());

    let http = reqwest::Client::new();
    let callers: [(&str, Option<&str>, Needs); 4] = [
        ("anonymous", None, Nobody),
        ("viewer", Some(&app.viewer), Viewer),
        ("member", Some(&app.member), Member),
        ("admin", Some(&app.admin), Admin),
    ];
    let mut wrong = Vec::new();
    for (method, path, needs) in ROUTES {
        // Logging out ends the token: that route is called last, by a token of its own.
        if *path == "/api/v1/auth/logout" {
            continue;
        }
        // A GET sends no body: once is enough.
        let bodies = if *method == "GET" { &BODIES[..1] } else { BODIES };
        for (who, token, has) in &callers {
            for body in bodies {
                let got = status(&http, &app.base, method, path, *token, body).await;
                let ok = match (has >= needs, token) {
                    (true, _) => got != StatusCode::UNAUTHORIZED && got != StatusCode::FORBIDDEN,
                    (false, None) => got == StatusCode::UNAUTHORIZED,
                    (false, Some(_)) => got == StatusCode::FORBIDDEN,
                };
                if !ok {
                    wrong.push(format!("{method} {path} as {who} with {body}: {got}"));
                }
            }
        }
    }
    assert_eq!(
        status(&http, &app.base, "POST", "/api/v1/auth/logout", None, "{}").await,
        StatusCode::UNAUTHORIZED
    );
    assert!(wrong.is_empty(), "{} wrong answers:\n{}", wrong.len(), wrong.join("\n"));
}

/// Posts `body` as `content_type`: the status, the error code and its message.
async fn send_raw(
    base: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> (StatusCode, String, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    let field = |f: &str| body["error"][f].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

/// Bodies that cannot be read, each with whether its message names the target type.
fn bad_bodies() -> Vec<(&'static str, String, bool)> {
    vec![
        ("application/json", "not json".to_owned(), false),
        ("application/json", "[]".to_owned(), true),
        ("text/plain", "{}".to_owned(), false),
        ("application/json", format!("\"{}\"", "x".repeat(2 << 20)), false),
    ]
}

#[tokio::test]
async fn a_bad_body_is_refused_with_403_below_the_role_and_explained_at_it() {
    let app = spawn().await;
    for (content_type, body, names_type) in bad_bodies() {
        let below = send_raw(&app.base, "/api/v1/beads", Some(&app.viewer), content_type, &body);
        assert_eq!(below.await.0, StatusCode::FORBIDDEN, "{content_type} {:.20}", body);
        // Login reads its body with actix's own extractor, before any role: a route that
        // reads it after the role check answers in the same words.
        let (status, code, message) =
            send_raw(&app.base, "/api/v1/beads", Some(&app.member), content_type, &body).await;
        let (login_status, login_code, login_message) =
            send_raw(&app.base, "/api/v1/auth/login", None, content_type, &body).await;
        assert_eq!((status, &code), (login_status, &login_code), "{content_type} {:.20}", body);
        assert!(status.is_client_error() && !code.is_empty(), "{status} {code}");
        if !names_type {
            assert_eq!(message, login_message);
        }
    }
}
