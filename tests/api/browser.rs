//! The dashboard in a real browser: Debian's chromium, driven by the playwright-core scripts
//! in `tests/browser/`, against the real server with a seeded project. Each script prints a
//! line per step; the screenshots it takes go to one folder this test prints.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use reqwest::Method;
use serde_json::json;

use crate::support::gateway::Reply;
use crate::support::{PASSWORD, TestApp, spawn};

/// Far above what a script takes (seconds), so only a hung browser hits it.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where the screenshots go: under the target directory, kept after the run.
fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

fn chromium() -> PathBuf {
    std::env::var_os("LOOM_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

/// What is missing to run the scripts, if anything.
fn missing_tools() -> Option<String> {
    let mut missing = Vec::new();
    if !chromium().is_file() {
        missing.push(format!("chromium at {}", chromium().display()));
    }
    if !scripts_dir().join("node_modules/playwright-core").is_dir() {
        missing.push(format!("{}/node_modules", scripts_dir().display()));
    }
    if std::process::Command::new("node").arg("--version").output().is_err() {
        missing.push("node".into());
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Whether the test may go on: fails with what to do when the tools are missing, unless
/// LOOM_SKIP_BROWSER=1 asks to skip.
fn browser_available() -> bool {
    let Some(missing) = missing_tools() else { return true };
    if std::env::var("LOOM_SKIP_BROWSER").as_deref() == Ok("1") {
        println!("skipped (LOOM_SKIP_BROWSER=1): missing {missing}");
        return false;
    }
    panic!(
        "the browser tests need {missing}: run .ci/run, or `apt-get install chromium` and \
         `npm ci --prefix tests/browser` (LOOM_SKIP_BROWSER=1 skips them)"
    );
}

/// A project with a bead in each state worth seeing, and a failed run on one of them;
/// returns that bead's id.
async fn seed(app: &TestApp) -> String {
    app.project("seed").await;
    let base = app.bead("seed", "Pick the database", json!({"labels": ["infra"]})).await;
    let bead = app
        .bead(
            "seed",
            "Store beads in Postgres",
            json!({
                "description": "Use **diesel-async**.\n\n- one pool\n- migrations embedded",
                "priority": 1,
                "type": "feature",
                "labels": ["infra", "db"],
            }),
        )
        .await;
    app.bead("seed", "Document the schema", json!({"depends_on": [bead], "type": "chore"})).await;
    let stuck = app.bead("seed", "Choose a licence", json!({"priority": 0})).await;
    let res = app
        .post(&format!("/api/v1/beads/{stuck}/block"), json!({"reason": "MIT or Apache?"}))
        .await;
    assert_eq!(res.status, reqwest::StatusCode::OK, "{:?}", res.body);
    assert_eq!(app.close(&base).await.status, reqwest::StatusCode::OK);
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query(format!(
        "WITH r AS (INSERT INTO runs (id, bead_id, attempt, turns, prompt_tokens, completion_tokens, \
             outcome, ended_at, summary) VALUES (gen_random_uuid(), '{bead}', 1, 2, 100, 20, 'failed', \
             now(), 'The tests do not compile yet.') RETURNING id) \
         INSERT INTO run_steps (run_id, turn, action, ok, result, prompt_tokens, completion_tokens, \
             started_at, duration_ms) \
         SELECT r.id, 1, '{{\"action\": \"read_file\", \"path\": \"src/main.rs\"}}'::jsonb, true, \
             'fn main() {{ println!(\"hello\"); }}', 50, 10, now(), 12 FROM r \
         UNION ALL SELECT r.id, 2, '{{\"action\": \"run\", \"command\": \"cargo test\"}}'::jsonb, false, \
             'error[E0425]: cannot find value `pool` in this scope', 50, 10, now(), 900 FROM r"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    bead
}

/// Runs `node tests/browser/<script>` against `app` (with `env` added to what every script
/// gets) and fails with its output unless it exits 0.
async fn run_script(app: &TestApp, script: &str, run_bead: &str, env: &[(&str, &str)]) {
    let shots = screenshots_dir();
    println!("screenshots: {}", shots.display());
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(scripts_dir().join(script))
        .current_dir(scripts_dir())
        .env("LOOM_BASE", &app.base)
        .env("LOOM_PASSWORD", PASSWORD)
        .env("LOOM_ADMIN_USER", "admin")
        .env("LOOM_VIEWER_USER", "viewer")
        .env("LOOM_MEMBER_USER", "member")
        .env("LOOM_ADMIN_TOKEN", &app.admin)
        .env("LOOM_MEMBER_TOKEN", &app.member)
        .env("LOOM_SEED_PROJECT", "seed")
        .env("LOOM_REPO", app.repo("browser"))
        .env("LOOM_RUN_BEAD", run_bead)
        .env("LOOM_SCREENSHOTS", &shots)
        .env("LOOM_CHROMIUM", chromium())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} still running after {SCRIPT_TIMEOUT:?}"))
        .expect("node's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{script} ({:.1} s):\n{stdout}{stderr}", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "{script} failed ({}); screenshots in {}:\n{stdout}{stderr}",
        out.status,
        shots.display()
    );
}

#[tokio::test]
async fn in_a_browser_an_admin_files_beads_from_the_board_and_sees_cards_move_live() {
    if !browser_available() {
        return;
    }
    let app = spawn().await;
    let run_bead = seed(&app).await;
    run_script(&app, "board.mjs", &run_bead, &[]).await;
}

#[tokio::test]
async fn in_a_browser_viewers_get_no_write_controls_and_forms_without_csrf_change_nothing() {
    if !browser_available() {
        return;
    }
    let app = spawn().await;
    let run_bead = seed(&app).await;
    run_script(&app, "safety.mjs", &run_bead, &[]).await;
}

#[tokio::test]
async fn in_a_browser_a_member_pairs_on_a_bead_and_sees_the_reply_stream_in() {
    if !browser_available() {
        return;
    }
    let p = crate::support::chat::Pairing::new(|_| {}).await;
    let bead = p.app.bead("web", "Write the notes", json!({})).await;
    let slow = std::time::Duration::from_millis(700);
    p.script
        .push(Reply::tool_call("write_file", json!({"path": "notes.md", "content": "# Notes\n"})))
        .push(
            Reply::text("Streaming the answer: I wrote notes.md, and that is **the end.**")
                .chunk_delay(slow),
        )
        .push(
            Reply::text("Slowly, step by step, this goes on for a long time").chunk_delay(slow * 5),
        );
    run_script(&p.app, "chat.mjs", &bead, &[]).await;
}

/// What the pages script needs besides `seed`: a dependency graph worth drawing (long titles,
/// a child-of edge that skips a layer, a blocker in another project), a conversation with a
/// reply, and a token; returns the conversation's id.
async fn seed_pages(p: &crate::support::chat::Pairing) -> String {
    let app = &p.app;
    let epic =
        app.bead("seed", "Launch the dashboard to the whole team", json!({"type": "epic"})).await;
    let design = app
        .bead("seed", "Design the navigation for phones and laptops", json!({"parent": epic}))
        .await;
    let build = app
        .bead(
            "seed",
            "Build the responsive navigation with keyboard support and screen reader labels \
             everywhere it matters",
            json!({"depends_on": [design]}),
        )
        .await;
    // A child of the epic two layers right of it: its child-of edge skips a layer.
    app.bead("seed", "Announce it", json!({"parent": epic, "depends_on": [build]})).await;
    app.project("ops").await;
    let server = app.bead("ops", "Provision the production database server", json!({})).await;
    app.bead("seed", "Migrate the data", json!({"depends_on": [server], "priority": 1})).await;
    let token = json!({"name": "laptop CLI", "expires_at": "2099-01-01T00:00:00Z"});
    let res = app.call(Method::POST, "/api/v1/tokens", Some(&app.admin), Some(token)).await;
    assert_eq!(res.status, reqwest::StatusCode::CREATED, "{:?}", res.body);
    // A bead the admin filed, blocked by the member: the admin has a notification.
    let filed = json!({"project": "ops", "title": "Choose the colours of the dark mode"});
    let res = app.call(Method::POST, "/api/v1/beads", Some(&app.admin), Some(filed)).await;
    assert_eq!(res.status, reqwest::StatusCode::CREATED, "{:?}", res.body);
    let id = res.body["id"].as_str().expect("id");
    let blocked =
        app.post(&format!("/api/v1/beads/{id}/block"), json!({"reason": "Ask design"})).await;
    assert_eq!(blocked.status, reqwest::StatusCode::OK, "{:?}", blocked.body);
    // Agents bound to `web`, which has no beads: they idle, and one is paused.
    for name in ["ada", "grace-the-reviewer"] {
        let agent = json!({"name": name, "persona": "software-engineer", "project": "web"});
        let res = app.post("/api/v1/agents", agent).await;
        assert_eq!(res.status, reqwest::StatusCode::CREATED, "{:?}", res.body);
        if name == "ada" {
            let id = res.body["id"].as_str().expect("id");
            let paused = app.post(&format!("/api/v1/agents/{id}/pause"), json!({})).await;
            assert_eq!(paused.status, reqwest::StatusCode::OK, "{:?}", paused.body);
        }
    }
    p.script.push(Reply::text("The navigation needs **three** entries; I wrote them down."));
    let conversation = p.conversation(None).await;
    p.say(&conversation, "What should the navigation hold?").await;
    conversation
}

#[tokio::test]
async fn in_a_browser_every_page_fits_a_laptop_and_a_phone_and_the_graph_reads_well() {
    if !browser_available() {
        return;
    }
    let p = crate::support::chat::Pairing::new(|_| {}).await;
    let run_bead = seed(&p.app).await;
    let conversation = seed_pages(&p).await;
    run_script(&p.app, "pages.mjs", &run_bead, &[("LOOM_CONVERSATION", &conversation)]).await;
}
