//! Projects whose repository is empty, missing or out of reach: an empty `git init --bare`
//! works (the first landing creates the branch), a local path that is not a repository is
//! refused at creation, and a repository that cannot be reached marks the project without
//! charging its beads' attempts until the ticker reaches it again.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use loom::dispatch::Nudge;
use loom::executor::Limits;
use loom::gateway::HealthState;
use loom::ticker::Ticker;

use crate::support::browser::logged_in;
use crate::support::gateway::Reply;
use crate::support::work::Work;
use crate::support::{TestApp, spawn};

async fn create(app: &TestApp, id: &str, repo: &str) -> crate::support::Res {
    let body = json!({"id": id, "name": format!("Project {id}"), "repo": repo});
    app.call(Method::POST, "/api/v1/projects", Some(&app.admin.clone()), Some(body)).await
}

#[tokio::test]
async fn a_local_path_that_is_not_a_repository_is_refused_with_a_code_naming_it() {
    let app = spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let missing_url = format!("file://{}", missing.display());
    for (repo, says) in [
        (missing.display().to_string(), "does not exist"),
        (missing_url, "does not exist"),
        (plain.display().to_string(), "is not a git repository"),
    ] {
        let res = create(&app, "web", &repo).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{repo}: {:?}", res.body);
        assert_eq!(res.code(), "repository_not_found", "{repo}");
        let message = res.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert!(
        create(&app, "web", &missing.display().to_string()).await.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&missing.display().to_string())
    );

    // Remote URLs are tried when work starts, not at creation.
    assert_eq!(create(&app, "remote", "https://git.example.com/r.git").await.status, 201);
    let repo = app.repo("web");
    let made = create(&app, "web", &repo).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    assert_eq!(made.body["repo_state"], "ok");
    let patch = json!({"repo": missing.display().to_string()});
    let res = app
        .call(Method::PATCH, "/api/v1/projects/web", Some(&app.admin.clone()), Some(patch))
        .await;
    assert_eq!(
        (res.status, res.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "repository_not_found")
    );
    assert_eq!(app.get("/api/v1/projects/web").await.body["repo"], repo.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bead_on_an_empty_bare_repository_lands_and_creates_the_branch() {
    let mut w = Work::new(&[], 1, Limits::default()).await;
    let bead = w.bead("Start the project").await;
    let write = json!({"action": "write_file", "path": "README.md", "content": "hello\n"});
    w.script.push_for(&bead, Reply::action(write));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "A README."})));

    w.settle().await;

    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert_eq!(w.upstream.file("README.md"), "hello\n");
    let log = w.upstream.log();
    assert_eq!(log.first().map(|c| c.0.as_str()), Some("A README."), "{log:?}");
}

async fn project(w: &Work) -> Value {
    w.app.get("/api/v1/projects/web").await.body
}

/// Asserts that `bead` went back to open without paying an attempt and that the project is
/// marked unreachable; the project and its `repo_error`.
async fn parked_unreachable(w: &Work, bead: &str) -> (Value, String) {
    let shown = w.show(bead).await;
    assert_eq!((&shown["status"], &shown["attempts"]), (&json!("open"), &json!(0)), "{shown}");
    let p = project(w).await;
    assert_eq!(p["repo_state"], "unreachable", "{p}");
    let error = p["repo_error"].as_str().unwrap().to_owned();
    (p, error)
}

/// The ticker, with the repositories of `w`'s data dir to probe.
fn ticker(w: &Work) -> Ticker {
    Ticker::new(
        w.app.pool.clone(),
        loom::beads::RetryPolicy::default(),
        HealthState::default(),
        Nudge::default(),
    )
    .with_repos(loom::git::Repos::new(w.data.path().to_path_buf()))
}

async fn runs(w: &Work, bead: &str) -> Vec<Value> {
    let runs = w.app.get(&format!("/api/v1/beads/{bead}/runs")).await.body;
    runs["items"].as_array().or(runs.as_array()).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_gone_away_parks_the_project_uncharged_until_the_ticker_reaches_it() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let hidden = w.upstream.dir.path().join("hidden.git");
    std::fs::rename(w.upstream.path(), &hidden).unwrap();
    let bead = w.bead("Change a").await;

    w.settle().await;

    let (p, error) = parked_unreachable(&w, &bead).await;
    assert!(error.contains("does not exist"), "{error}");
    assert!(p["repo_checked_at"].is_string(), "{p}");
    let ran = runs(&w, &bead).await;
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0]["outcome"], "cancelled");
    let feed = w.app.get("/api/v1/activity?project=web&kind=project.repo").await.body;
    assert_eq!(feed["items"][0]["data"]["state"], "unreachable", "{feed}");
    let mut browser = logged_in(&w.app, "viewer").await;
    let page = browser.get("/projects/web").await;
    assert!(page.contains("cannot reach this project's repository"), "{}", page.body);
    assert!(page.contains("does not exist"), "{}", page.body);
    assert!(browser.get("/projects").await.contains(">unreachable<"));
    // Not dispatched again while it is unreachable.
    w.settle().await;
    assert_eq!(runs(&w, &bead).await.len(), 1);

    let ticker = ticker(&w);
    assert_eq!(ticker.check_repos().await.unwrap().healed, 0, "still gone");
    std::fs::rename(&hidden, w.upstream.path()).unwrap();
    assert_eq!(ticker.check_repos().await.unwrap().healed, 1);
    assert_eq!(project(&w).await["repo_state"], "ok");

    assert!(!browser.get("/projects/web").await.contains("cannot reach this project's"));

    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Nothing."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
}

/// A repository the ticker's probe (an ls-remote) reaches but no fetch can use (an object
/// is missing) would hand its bead out and back uncharged for ever: past five such returns
/// the run is charged, and the attempts rule takes it from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_answers_but_cannot_be_fetched_charges_the_bead_in_the_end() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let blob = w.upstream.git(&["rev-parse", "main:a.txt"]);
    let blob = blob.trim();
    let loose = w.upstream.path().join("objects").join(&blob[..2]).join(&blob[2..]);
    std::fs::remove_file(&loose).unwrap();
    let bead = w.bead("Change a").await;
    let ticker = ticker(&w);
    for returned in 1..=4 {
        w.settle().await;
        parked_unreachable(&w, &bead).await;
        assert_eq!(runs(&w, &bead).await.len(), returned);
        assert_eq!(ticker.check_repos().await.unwrap().healed, 1, "the probe reaches it");
    }
    w.settle().await;
    let ran = runs(&w, &bead).await;
    assert_eq!((ran.len(), ran[0]["outcome"].as_str()), (5, Some("failed")), "{ran:?}");
    let error = ran[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("could not be reached on this bead 5 times"), "{error}");
    assert_eq!(w.show(&bead).await["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_nothing_answers_at_is_reported_and_a_new_url_starts_afresh() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://loom:s3cret@127.0.0.1:{port}/r.git");
    let admin = Some(w.app.admin.clone());
    let res = w
        .app
        .call(Method::PATCH, "/api/v1/projects/web", admin.as_deref(), Some(json!({"repo": url})))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let bead = w.bead("Change a").await;

    w.settle().await;

    let (_, error) = parked_unreachable(&w, &bead).await;
    assert!(error.contains("127.0.0.1") && !error.contains("s3cret"), "{error}");
    let page = w.app.get("/api/v1/projects").await.body;
    assert!(!page.to_string().contains("s3cret"), "{page}");

    let repo = w.upstream.path().display().to_string();
    let res = w
        .app
        .call(Method::PATCH, "/api/v1/projects/web", admin.as_deref(), Some(json!({"repo": repo})))
        .await;
    assert_eq!(res.body["repo_state"], "ok", "{:?}", res.body);
    assert_eq!(res.body["repo_error"], json!(null));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Nothing."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
}
