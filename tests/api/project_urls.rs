//! Credentials in a project's repository URL are kept (Loom fetches and pushes with them) and
//! shown nowhere: not by the API, the dashboard or the CLI. The URL as shown, sent back,
//! leaves the stored one as it was.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::browser::logged_in;
use crate::support::cli::Cli;
use crate::support::{TestApp, spawn};

const TOKEN: &str = "tok-do-not-show-7f3e";

fn real_url() -> String {
    format!("https://loom:{TOKEN}@git.example.com/org/x.git")
}

const SHOWN: &str = "https://***@git.example.com/org/x.git";

async fn create(app: &TestApp, id: &str, repo: &str) -> Value {
    let body = json!({ "id": id, "name": format!("Project {id}"), "repo": repo });
    let res = app.call(Method::POST, "/api/v1/projects", Some(&app.admin), Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body
}

async fn stored_repo(app: &TestApp, id: &str) -> String {
    let mut conn = app.pool.get().await.unwrap();
    loom::projects::Project::find(&mut conn, id).await.unwrap().repo
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_a_repository_url_is_shown_by_no_api_page_or_cli_command() {
    let app = spawn().await;
    let created = create(&app, "web", &real_url()).await;
    let patched = app.call(
        Method::PATCH,
        "/api/v1/projects/web",
        Some(&app.admin),
        Some(json!({"name": "W"})),
    );
    let cli = Cli::with_token(&app.base, &app.member);
    let mut browser = logged_in(&app, "admin").await;

    let mut shown = vec![
        created.to_string(),
        patched.await.body.to_string(),
        app.get("/api/v1/projects/web").await.body.to_string(),
        app.get("/api/v1/projects").await.body.to_string(),
        app.get("/api/v1/activity?project=web").await.body.to_string(),
        browser.get("/projects/web").await.body,
        browser.get("/projects").await.body,
    ];
    for args in
        [&["project", "show", "web"][..], &["project", "list"], &["project", "list", "--json"]]
    {
        let (ok, out, err) = cli.run(args, None);
        assert!(ok, "{args:?}: {err}");
        shown.push(out + &err);
    }

    for text in &shown {
        assert!(!text.contains(TOKEN), "the token is shown:\n{text}");
    }
    assert_eq!(created["repo"], SHOWN);
    for (i, text) in shown.iter().enumerate().filter(|(i, _)| *i != 4) {
        assert!(text.contains(SHOWN) || text.contains("https://***@"), "#{i} lacks it:\n{text}");
    }
    assert_eq!(stored_repo(&app, "web").await, real_url(), "Loom keeps the real URL");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_url_as_shown_sent_back_keeps_the_stored_credentials() {
    let app = spawn().await;
    create(&app, "web", &real_url()).await;
    let patch =
        |body: Value| app.call(Method::PATCH, "/api/v1/projects/web", Some(&app.admin), Some(body));

    let echoed = patch(json!({"repo": SHOWN, "name": "Renamed"})).await;
    assert_eq!((echoed.status, echoed.body["repo"].as_str()), (StatusCode::OK, Some(SHOWN)));
    assert_eq!(stored_repo(&app, "web").await, real_url());

    // The settings form shows the redacted URL; saving it as it is keeps the real one.
    let mut browser = logged_in(&app, "admin").await;
    let page = browser.get("/projects/web").await;
    assert!(page.contains(&format!("name=\"repo\" value=\"{SHOWN}\"")), "{}", page.body);
    let form = [
        ("csrf", page.csrf()),
        ("name", "Web".to_owned()),
        ("repo", SHOWN.to_owned()),
        ("branch", "main".to_owned()),
        ("max_parallel", "2".to_owned()),
        ("max_attempts", "3".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = browser.post("/projects/web/settings", &form).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(stored_repo(&app, "web").await, real_url());

    // A redacted URL for anything else could never log in: refused, nothing changed.
    let elsewhere = patch(json!({"repo": "https://***@elsewhere.example.com/y.git"})).await;
    assert_eq!(
        (elsewhere.status, elsewhere.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_repo")
    );
    let body = json!({"id": "api", "name": "A", "repo": SHOWN});
    let new = app.call(Method::POST, "/api/v1/projects", Some(&app.admin), Some(body)).await;
    assert_eq!((new.status, new.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_repo"));
    assert_eq!(stored_repo(&app, "web").await, real_url());

    // A new URL replaces it.
    let moved = "https://loom:n3w-token@git.example.com/org/x.git";
    assert_eq!(patch(json!({"repo": moved})).await.status, StatusCode::OK);
    assert_eq!(stored_repo(&app, "web").await, moved);
}

#[tokio::test]
async fn urls_without_credentials_are_shown_as_they_are_and_a_bare_token_is_hidden() {
    let app = spawn().await;
    let unchanged = [
        ("ssh", "git@github.com:org/r.git"),
        ("sshurl", "ssh://git@git.example.com:2222/org/r.git"),
        ("plain", "https://git.example.com/org/r.git"),
    ];
    let local = app.repo("local");
    for (id, repo) in unchanged.into_iter().chain([("local", local.as_str())]) {
        assert_eq!(create(&app, id, repo).await["repo"], repo);
        assert_eq!(app.get(&format!("/api/v1/projects/{id}")).await.body["repo"], repo);
    }

    let token_only = create(&app, "tok", &format!("https://{TOKEN}@git.example.com/r.git")).await;

    assert_eq!(token_only["repo"], "https://***@git.example.com/r.git");
}
