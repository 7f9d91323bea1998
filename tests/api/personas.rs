use reqwest::{Method, StatusCode};

use crate::support::{spawn, spawn_with};

const TEAM: [&str; 8] = [
    "code-reviewer",
    "devops-engineer",
    "engineering-manager",
    "product-manager",
    "qa-engineer",
    "security-reviewer",
    "software-engineer",
    "technical-writer",
];

#[tokio::test]
async fn the_shipped_team_loads_at_start() {
    let app = spawn().await;
    let res = app.get("/api/v1/personas").await;
    assert_eq!(res.status, StatusCode::OK);
    let names: Vec<&str> =
        res.body["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, TEAM);
    for p in res.body["items"].as_array().unwrap() {
        assert!(
            p["instructions"].as_str().unwrap().len() > 500,
            "{} needs real instructions",
            p["name"]
        );
        assert!(!p["labels"].as_array().unwrap().is_empty());
    }
    let one = app.get("/api/v1/personas/code-reviewer").await;
    assert_eq!(one.body["role"], "reviewer");
    assert_eq!(app.get("/api/v1/personas/nobody").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reload_reports_a_malformed_file_by_path_and_line_and_loads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("PERSONA.md"), text).unwrap();
    };
    write(
        "good",
        "---\nname: good\ndisplay_name: Good\nrole: engineer\nlabels: [backend]\n---\nWork well.\n",
    );
    let path = dir.path().to_owned();
    let app = spawn_with(move |c| c.personas_dir = Some(path)).await;
    assert_eq!(app.get("/api/v1/personas").await.body["items"].as_array().unwrap().len(), 9);

    write("broken", "---\nname: broken\ndisplay_name: Broken\nrole: [oops\n---\nbody\n");
    write("good", "---\nname: good\ndisplay_name: Better\nrole: engineer\n---\nWork better.\n");
    let forbidden =
        app.call(Method::POST, "/api/v1/personas/reload", Some(&app.member.clone()), None).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let report =
        app.call(Method::POST, "/api/v1/personas/reload", Some(&app.admin.clone()), None).await;
    assert_eq!(report.status, StatusCode::OK, "{:?}", report.body);
    assert_eq!(report.body["from_dir"], serde_json::json!(["good"]));
    assert_eq!(report.body["loaded"].as_array().unwrap().len(), 9, "{:?}", report.body);
    let error = &report.body["errors"][0];
    assert!(error["path"].as_str().unwrap().ends_with("broken/PERSONA.md"), "{error}");
    assert_eq!(error["line"], 4);
    assert_eq!(app.get("/api/v1/personas/good").await.body["display_name"], "Better");
    assert_eq!(app.get("/api/v1/personas/broken").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_personas_dir_adds_to_the_built_in_team_and_overrides_it_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("software-engineer")).unwrap();
    std::fs::write(
        dir.path().join("software-engineer").join("PERSONA.md"),
        "---\nname: software-engineer\ndisplay_name: Our Engineer\nrole: engineer\n---\nOur way.\n",
    )
    .unwrap();
    let path = dir.path().to_owned();
    let app = spawn_with(move |c| c.personas_dir = Some(path)).await;
    let items = app.get("/api/v1/personas").await.body["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), TEAM.len(), "{items}");
    let ours = app.get("/api/v1/personas/software-engineer").await.body;
    assert_eq!(ours["display_name"], "Our Engineer");
    assert_eq!(ours["instructions"], "Our way.");
    assert_eq!(app.get("/api/v1/personas/code-reviewer").await.body["role"], "reviewer");
}

#[tokio::test]
async fn a_personas_dir_that_is_missing_is_reported_as_such_and_the_team_still_loads() {
    let missing = std::path::PathBuf::from("/nonexistent/loom-personas");
    let app = spawn_with(move |c| c.personas_dir = Some(missing)).await;
    assert_eq!(
        app.get("/api/v1/personas").await.body["items"].as_array().unwrap().len(),
        TEAM.len()
    );
    let report =
        app.call(Method::POST, "/api/v1/personas/reload", Some(&app.admin.clone()), None).await;
    let error = &report.body["errors"][0];
    assert_eq!(error["path"], "/nonexistent/loom-personas");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("cannot read the personas directory"), "{message}");
}

#[tokio::test]
async fn a_bead_naming_an_unknown_persona_is_refused() {
    let app = spawn().await;
    app.project("web").await;
    let res = app
        .post(
            "/api/v1/beads",
            serde_json::json!({"project": "web", "title": "t", "persona": "wizard"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", res.body);
    assert_eq!(res.code(), "unknown_persona");
    assert!(res.body["error"]["message"].as_str().unwrap().contains("wizard"));
    assert_eq!(app.get("/api/v1/beads?project=web").await.body["items"], serde_json::json!([]));

    let id = app.bead("web", "t", serde_json::json!({"persona": "qa-engineer"})).await;
    let bead = app.show(&id).await;
    let res = app
        .patch(
            &format!("/api/v1/beads/{id}"),
            serde_json::json!({"version": bead["version"], "persona": "wizard"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", res.body);
    assert_eq!(res.code(), "unknown_persona");
    assert_eq!(app.show(&id).await["persona"], "qa-engineer");
}

/// A review bead runs in a fresh worktree, where `git_diff` is empty: its task names the
/// commits the bead it waits for was merged as, and a command that shows their diff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewers_task_names_the_merged_work_it_reviews_and_the_command_shows_its_diff() {
    use crate::support::gateway::Reply;
    use crate::support::work::Work;
    use serde_json::json;

    let mut w =
        Work::new(&[("greeting.txt", "Hello\n")], 1, loom::executor::Limits::default()).await;
    let work = w.bead("Make the greeting friendlier").await;
    let s = &w.script;
    s.push_for(
        &work,
        Reply::action(
            json!({"action": "edit_file", "path": "greeting.txt", "old": "Hello", "new": "Hi, friend"}),
        ),
    );
    s.push_for(&work, Reply::action(json!({"action": "done", "summary": "Friendlier."})));
    w.settle().await;
    let shown = w.show(&work).await;
    let sha = shown["runs"][0]["merged_sha"].as_str().expect("the work merged").to_owned();

    let body = json!({"name": "rev", "persona": "code-reviewer"});
    assert_eq!(w.app.post("/api/v1/agents", body).await.status, StatusCode::CREATED);
    let review =
        w.app.bead("web", "Review the greeting", json!({"persona": "code-reviewer"})).await;
    assert!(w.app.depend(&review, &work, "blocks").await.status.is_success());
    let command = format!("git log -p --grep='^Bead: {work}$' {sha}");
    let s = &w.script;
    s.push_for(&review, Reply::action(json!({"action": "run", "command": command})));
    s.push_for(&review, Reply::action(json!({"action": "done", "summary": "Approved."})));
    w.settle().await;

    assert_eq!(w.show(&review).await["status"], "closed");
    let told = w
        .script
        .completions()
        .iter()
        .filter_map(|c| c["messages"][1]["content"].as_str().map(str::to_owned))
        .find(|t| t.contains("Review the greeting"))
        .expect("the review run's task");
    for part in [
        "## The work to review".to_owned(),
        format!("{work}: Make the greeting friendlier, merged into `main` as `{sha}`"),
        format!("`{command}`"),
    ] {
        assert!(told.contains(&part), "{part} missing from:\n{told}");
    }
    let steps = w.steps(&review).await;
    let result = steps[0]["result"].as_str().expect("the command's output");
    assert!(result.contains("+Hi, friend") && result.contains("-Hello"), "{result}");
    // Another persona's task has no such section.
    let first = w.script.completions()[0]["messages"][1]["content"].as_str().map(str::to_owned);
    assert!(!first.expect("the work's task").contains("The work to review"));
}
