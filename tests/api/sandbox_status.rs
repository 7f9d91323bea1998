//! Where people see the sandbox: `/api/v1/status` and the overview say whether agents'
//! commands run confined, unconfined by the operator's choice, or are refused and why; and a
//! project's sandbox settings (`network`, `setup_command`) through the API and the form.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::browser::logged_in;
use crate::support::{Res, spawn, spawn_with};
use loom::workbench::{SandboxConfig, SandboxMode};

#[tokio::test]
async fn by_default_commands_are_confined_and_status_and_overview_say_so() {
    let app = spawn().await;
    let status = app.get("/api/v1/status").await;
    let sandbox = &status.body["sandbox"];
    assert_eq!(sandbox["backend"], "bubblewrap", "{sandbox}");
    assert_eq!(sandbox["mode"], "auto");
    assert_eq!(sandbox["available"], true, "{sandbox}");
    assert_eq!(sandbox["network_default"], "none");
    assert!(sandbox.get("reason").is_none(), "{sandbox}");
    let mut admin = logged_in(&app, "admin").await;
    let page = admin.get("/").await;
    assert!(page.contains("confined"), "{}", page.body);
}

#[tokio::test]
async fn turned_off_the_sandbox_is_shown_as_unconfined_everywhere() {
    let app = spawn_with(|c| c.sandbox.mode = SandboxMode::Off).await;
    let sandbox = app.get("/api/v1/status").await.body["sandbox"].clone();
    assert_eq!((&sandbox["mode"], &sandbox["available"]), (&json!("off"), &json!(false)));
    assert!(sandbox["reason"].as_str().unwrap().contains("LOOM_SANDBOX=off"), "{sandbox}");
    let mut admin = logged_in(&app, "admin").await;
    let page = admin.get("/").await;
    assert!(
        page.contains("OFF: agents&#x27; commands run unconfined")
            || page.contains("OFF: agents' commands run unconfined"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_sandbox_that_cannot_be_made_is_refused_with_the_reason_where_people_look() {
    // As root the probe needs the user commands drop to; elsewhere a missing bwrap does the
    // same, but the test machine has bwrap, so it names a user that does not exist (and, as
    // an ordinary user, an extra read-only path that does not exist is harmless, so it
    // checks only the root case's reason).
    let app = spawn_with(|c| {
        c.sandbox =
            SandboxConfig { user: "no-such-user-for-loom".into(), ..SandboxConfig::default() }
    })
    .await;
    let sandbox = app.get("/api/v1/status").await.body["sandbox"].clone();
    if !nix::unistd::Uid::effective().is_root() {
        assert_eq!(sandbox["available"], true, "{sandbox}");
        return;
    }
    assert_eq!(sandbox["available"], false, "{sandbox}");
    let reason = sandbox["reason"].as_str().unwrap();
    assert!(reason.contains("no-such-user-for-loom"), "{reason}");
    let mut admin = logged_in(&app, "admin").await;
    let page = admin.get("/").await;
    assert!(page.contains("Unavailable: agents"), "{}", page.body);
    assert!(page.contains("no-such-user-for-loom"), "{}", page.body);
}

/// A call as the admin.
async fn admin(app: &crate::support::TestApp, method: Method, path: &str, body: Value) -> Res {
    app.call(method, path, Some(&app.admin.clone()), Some(body)).await
}

#[tokio::test]
async fn a_projects_network_and_setup_command_are_set_read_and_cleared() {
    let app = spawn().await;
    let body = json!({"id": "web", "name": "Web", "repo": app.repo("web"), "network": "open", "setup_command": "npm ci"});
    let created = admin(&app, Method::POST, "/api/v1/projects", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let set = (&created.body["network"], &created.body["setup_command"]);
    assert_eq!(set, (&json!("open"), &json!("npm ci")));
    let body = json!({"network": null, "setup_command": null});
    let cleared = admin(&app, Method::PATCH, "/api/v1/projects/web", body).await;
    assert_eq!(cleared.status, StatusCode::OK, "{:?}", cleared.body);
    let set = (&cleared.body["network"], &cleared.body["setup_command"]);
    assert_eq!(set, (&json!("none"), &json!(null)));
    let kept = admin(&app, Method::PATCH, "/api/v1/projects/web", json!({"name": "Web 2"})).await;
    assert_eq!(kept.body["network"], "none");

    let bad = admin(&app, Method::PATCH, "/api/v1/projects/web", json!({"network": "wide"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", bad.body);
    assert_eq!(bad.code(), "invalid_network");
    let long = json!({"setup_command": "x".repeat(10_001)});
    let bad = admin(&app, Method::PATCH, "/api/v1/projects/web", long).await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_setup_command")
    );
    let body = json!({"id": "api", "name": "Api", "repo": app.repo("api"), "network": 1});
    let bad = admin(&app, Method::POST, "/api/v1/projects", body).await;
    assert!(bad.status.is_client_error(), "{:?}", bad.body);
    let member = app.patch("/api/v1/projects/web", json!({"network": "open"})).await;
    assert_eq!(member.status, StatusCode::FORBIDDEN, "only admins change a project");
    let now = app.get("/api/v1/projects/web").await;
    assert_eq!(now.body["network"], "none", "nothing changed by refused input");
}

#[tokio::test]
async fn the_settings_form_sets_the_network_and_the_setup_command() {
    let app = spawn().await;
    app.project("web").await;
    let mut browser = logged_in(&app, "admin").await;
    let page = browser.get("/projects/web").await;
    assert!(page.contains("name=\"network\"") && page.contains("name=\"setup_command\""));
    let csrf = page.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("network", "open"),
        ("setup_command", "pip install -r requirements.txt"),
    ];
    let saved = browser.post("/projects/web/settings", &form).await;
    assert!(saved.status.is_success() || saved.status.is_redirection(), "{}", saved.body);
    let project = app.get("/api/v1/projects/web").await.body;
    let set = (&project["network"], &project["setup_command"]);
    assert_eq!(set, (&json!("open"), &json!("pip install -r requirements.txt")));
}
