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
    let app = spawn_with(move |c| c.personas_dir = path).await;
    assert_eq!(app.get("/api/v1/personas").await.body["items"].as_array().unwrap().len(), 1);

    write("broken", "---\nname: broken\ndisplay_name: Broken\nrole: [oops\n---\nbody\n");
    write("good", "---\nname: good\ndisplay_name: Better\nrole: engineer\n---\nWork better.\n");
    let forbidden =
        app.call(Method::POST, "/api/v1/personas/reload", Some(&app.member.clone()), None).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let report =
        app.call(Method::POST, "/api/v1/personas/reload", Some(&app.admin.clone()), None).await;
    assert_eq!(report.status, StatusCode::OK, "{:?}", report.body);
    assert_eq!(report.body["loaded"], serde_json::json!(["good"]));
    let error = &report.body["errors"][0];
    assert!(error["path"].as_str().unwrap().ends_with("broken/PERSONA.md"), "{error}");
    assert_eq!(error["line"], 4);
    assert_eq!(app.get("/api/v1/personas/good").await.body["display_name"], "Better");
    assert_eq!(app.get("/api/v1/personas/broken").await.status, StatusCode::NOT_FOUND);
}
