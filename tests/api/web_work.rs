//! The dashboard's work pages over HTTP: a project's board, a bead's page and its actions,
//! the dependency graph, analytics, and project settings.

use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::browser::logged_in;
use crate::support::spawn;

/// The bead ids in one column of a board page.
pub(crate) fn column(page: &str, key: &str) -> Vec<String> {
    let start = page.find(&format!("data-column=\"{key}\"")).expect("the column");
    let section = &page[start..start + page[start..].find("</section>").expect("its end")];
    section.split("data-bead=\"").skip(1).map(|s| s.split('"').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_board_puts_each_bead_in_its_column_with_what_holds_it() {
    let app = spawn().await;
    app.project("board").await;
    let first = app.bead("board", "Lay the foundation", json!({"labels": ["infra"]})).await;
    let second =
        app.bead("board", "Build on it", json!({"depends_on": [first], "priority": 0})).await;
    let done = app.bead("board", "Already done", json!({})).await;
    let closed = app
        .call(Method::POST, &format!("/api/v1/beads/{done}/close"), Some(&app.member), None)
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    let stuck = app.bead("board", "Needs a decision", json!({})).await;
    let blocked = app
        .call(
            Method::POST,
            &format!("/api/v1/beads/{stuck}/block"),
            Some(&app.member),
            Some(json!({"reason": "which database?"})),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::OK, "{:?}", blocked.body);

    let mut b = logged_in(&app, "viewer").await;
    let page = b.get("/projects/board").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(column(&page.body, "ready"), [first.clone()]);
    assert_eq!(column(&page.body, "open"), [second.clone()]);
    assert_eq!(column(&page.body, "closed"), [done]);
    assert_eq!(column(&page.body, "blocked"), [stuck]);
    assert!(column(&page.body, "in_progress").is_empty());
    assert!(page.contains(&format!("waits on <a href=\"/beads/{first}\">")), "{}", page.body);
    assert!(page.contains("which database?"));
    assert!(!page.contains("File a bead"), "viewers get no write controls");

    // Filters, and the board alone (what the page's script fetches).
    let filtered = b.get("/projects/board?label=infra").await;
    assert_eq!(column(&filtered.body, "ready"), [first.clone()]);
    assert!(column(&filtered.body, "open").is_empty());
    let fragment = b.get("/projects/board/board?priority=0").await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(!fragment.contains("<html"), "only the board");
    assert_eq!(column(&fragment.body, "open"), [second]);
    let bad = b.get("/projects/board?priority=urgent").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("role=\"alert\""));
    assert_eq!(b.get("/projects/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_file_beads_from_the_board_and_viewers_cannot() {
    let app = spawn().await;
    app.project("file").await;
    let mut member = logged_in(&app, "member").await;
    let csrf = member.get("/projects/file").await.csrf();
    let filed = member
        .post(
            "/projects/file/beads",
            &[
                ("csrf", &csrf),
                ("title", "Write the <docs>"),
                ("description", "All of them."),
                ("priority", "1"),
                ("type", "chore"),
                ("labels", "docs, Writing"),
            ],
        )
        .await;
    assert_eq!(
        (filed.status, filed.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/projects/file"))
    );
    let listed = app.call(Method::GET, "/api/v1/beads?project=file", Some(&app.viewer), None).await;
    let bead = &listed.body["items"][0];
    assert_eq!(
        (bead["title"].as_str(), bead["priority"].as_i64(), bead["type"].as_str()),
        (Some("Write the <docs>"), Some(1), Some("chore"))
    );
    assert_eq!(bead["labels"], json!(["docs", "writing"]));
    let board = member.get("/projects/file").await;
    assert_eq!(column(&board.body, "ready"), [bead["id"].as_str().unwrap().to_owned()]);

    let empty = member.post("/projects/file/beads", &[("csrf", &csrf), ("title", "  ")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.contains("role=\"alert\""));

    let mut viewer = logged_in(&app, "viewer").await;
    let csrf = viewer.get("/projects/file").await.csrf();
    let refused =
        viewer.post("/projects/file/beads", &[("csrf", &csrf), ("title", "sneaky")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let listed = app.call(Method::GET, "/api/v1/beads?project=file", Some(&app.viewer), None).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bead_page_shows_its_text_safely_its_links_both_ways_and_its_runs_turn_by_turn() {
    let app = spawn().await;
    app.project("bp").await;
    let base = app.bead("bp", "The base", json!({})).await;
    let bead = app
        .bead(
            "bp",
            "The feature",
            json!({
                "description": "Do **this**.\n\n<script>alert(1)</script> [x](javascript:alert(1))",
                "depends_on": [base],
            }),
        )
        .await;
    let later = app.bead("bp", "After it", json!({"depends_on": [bead]})).await;
    {
        let mut conn = app.pool.get().await.unwrap();
        diesel::sql_query(format!(
            "WITH r AS (INSERT INTO runs (id, bead_id, attempt, turns, prompt_tokens, completion_tokens, \
                 outcome, ended_at, summary) VALUES (gen_random_uuid(), '{bead}', 1, 2, 100, 20, 'failed', now(), \
                 'gave up') RETURNING id) \
             INSERT INTO run_steps (run_id, turn, action, ok, result, prompt_tokens, completion_tokens, \
                 started_at, duration_ms) \
             SELECT r.id, 1, '{{\"action\": \"read_file\", \"path\": \"src/main.rs\"}}'::jsonb, true, \
                 'fn main() {{ println!(\"<hi>\"); }}', 50, 10, now(), 12 FROM r \
             UNION ALL SELECT r.id, 2, '{{\"action\": \"run\", \"command\": \"cargo test\"}}'::jsonb, false, \
                 'error[E0425]', 50, 10, now(), 900 FROM r"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mut b = logged_in(&app, "viewer").await;
    let page = b.get(&format!("/beads/{bead}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.contains("<strong>this</strong>"), "markdown rendered");
    assert!(!page.contains("<script>alert"), "raw HTML escaped");
    assert!(!page.contains("href=\"javascript"), "unsafe link dropped");
    assert!(page.contains(&format!("href=\"/beads/{base}\"")), "depends on");
    assert!(page.contains(&format!("href=\"/beads/{later}\"")), "needed by");
    for shown in ["read_file", "src/main.rs", "cargo test", "error[E0425]", "gave up", "120 tokens"]
    {
        assert!(page.contains(shown), "{shown} in the transcript");
    }
    assert!(
        page.contains("println!(&#34;&#60;hi&#62;&#34;)") || page.contains("&lt;hi&gt;"),
        "results escaped"
    );
    assert!(!page.contains("action=\"/beads/"), "viewers get no forms");
    assert_eq!(b.get("/beads/bp-nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_comment_close_reopen_block_and_link_beads_from_the_bead_page() {
    let app = spawn().await;
    app.project("act").await;
    let one = app.bead("act", "One", json!({})).await;
    let two = app.bead("act", "Two", json!({"depends_on": [one]})).await;
    let mut m = logged_in(&app, "member").await;
    let page = m.get(&format!("/beads/{one}")).await;
    let csrf = page.csrf();
    let post = |action: &str| format!("/beads/{one}/{action}");

    let said = m.post(&post("comment"), &[("csrf", &csrf), ("body", "Looks *good*, @admin")]).await;
    assert_eq!(said.status, StatusCode::SEE_OTHER);
    assert!(m.get(&format!("/beads/{one}")).await.contains("Looks <em>good</em>"));
    let blank = m.post(&post("comment"), &[("csrf", &csrf), ("body", " ")]).await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A cycle is refused, with the reason on the page.
    let cycle =
        m.post(&post("depend"), &[("csrf", &csrf), ("depends_on", &two), ("kind", "blocks")]).await;
    assert_eq!(cycle.status, StatusCode::CONFLICT, "{}", cycle.body);
    assert!(cycle.contains("role=\"alert\""));

    let blocked = m.post(&post("block"), &[("csrf", &csrf), ("reason", "needs a decision")]).await;
    assert_eq!(blocked.status, StatusCode::SEE_OTHER);
    let shown = app.show(&one).await;
    assert_eq!(
        (shown["status"].as_str(), shown["blocked_note"].as_str()),
        (Some("blocked"), Some("needs a decision"))
    );
    let reopened = m.post(&post("reopen"), &[("csrf", &csrf), ("reason", "decided")]).await;
    assert_eq!(reopened.status, StatusCode::SEE_OTHER);
    let closed = m.post(&post("close"), &[("csrf", &csrf), ("reason", "done")]).await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER);
    assert_eq!(app.show(&one).await["status"], "closed");
    assert_eq!(m.post(&post("explode"), &[("csrf", &csrf)]).await.status, StatusCode::NOT_FOUND);

    let mut v = logged_in(&app, "viewer").await;
    let vcsrf = v.get(&format!("/beads/{two}")).await.csrf();
    let refused = v.post(&format!("/beads/{two}/close"), &[("csrf", &vcsrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(app.show(&two).await["status"], "open");
}

#[tokio::test]
async fn the_dependency_graph_is_an_svg_of_links_in_dependency_order() {
    let app = spawn().await;
    app.project("g").await;
    let base = app.bead("g", "Base <b>", json!({})).await;
    let top = app.bead("g", "Top", json!({"depends_on": [base]})).await;
    let mut b = logged_in(&app, "viewer").await;
    let page = b.get("/projects/g/graph").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("<svg") && page.contains("class=\"edge edge-blocks\""), "{}", page.body);
    assert!(
        page.contains(&format!("href=\"/beads/{base}\""))
            && page.contains(&format!("href=\"/beads/{top}\""))
    );
    assert!(!page.contains("Base <b>"), "titles escaped in the SVG");
    // The dependent is drawn right of what it waits on.
    let x_of = |id: &str| -> i64 {
        let at = page.body.find(&format!("href=\"/beads/{id}\"")).unwrap();
        let rect = &page.body[at..];
        let x = rect.find("<rect x=\"").unwrap() + 9;
        rect[x..].split('"').next().unwrap().parse().unwrap()
    };
    assert!(x_of(&top) > x_of(&base));
    // Ready and waiting beads are drawn apart.
    let state_of = |page: &str, id: &str| -> String {
        let at = page.find(&format!("href=\"/beads/{id}\"")).expect("the node");
        page[at..]
            .split("data-state=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("its state")
            .to_owned()
    };
    assert_eq!(state_of(&page.body, &base), "ready");
    assert_eq!(state_of(&page.body, &top), "waiting");
    // A blocker in another project is drawn, labelled with its project, linking to its bead.
    app.project("elsewhere").await;
    let far = app.bead("elsewhere", "Far away blocker", json!({})).await;
    let near = app.bead("g", "Waits on another project", json!({"depends_on": [far]})).await;
    let page = b.get("/projects/g/graph").await;
    assert!(page.contains(&format!("href=\"/beads/{far}\"")), "{}", page.body);
    assert!(page.contains("in project elsewhere") && page.contains("node-external"));
    assert_eq!(state_of(&page.body, &near), "waiting");
    let api = app.get("/api/v1/projects/g/graph").await;
    let far_node =
        api.body["nodes"].as_array().expect("nodes").iter().find(|n| n["id"] == far.as_str());
    assert_eq!(far_node.expect("the blocker")["project"], "elsewhere");
    // Closed blockers elsewhere hold nothing and are left out.
    app.close(&far).await;
    assert!(!b.get("/projects/g/graph").await.contains(&format!("href=\"/beads/{far}\"")));
    assert_eq!(b.get("/projects/none/graph").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn analytics_are_computed_from_what_was_recorded() {
    let app = spawn().await;
    app.project("an").await;
    let done = app.bead("an", "Done one", json!({})).await;
    app.call(Method::POST, &format!("/api/v1/beads/{done}/close"), Some(&app.member), None).await;
    app.bead("an", "Still open", json!({})).await;
    let agent = app
        .post(
            "/api/v1/agents",
            json!({"name": "ana", "persona": "software-engineer", "project": "an"}),
        )
        .await;
    let agent_id = agent.body["id"].as_str().unwrap().to_owned();
    {
        let mut conn = app.pool.get().await.unwrap();
        diesel::sql_query(format!(
            "WITH r AS (INSERT INTO runs (id, bead_id, attempt, outcome, ended_at) \
                 VALUES (gen_random_uuid(), '{done}', 1, 'success', now()) RETURNING id) \
             INSERT INTO gateway_calls (run_id, agent_id, model, attempt, streamed, ok, prompt_tokens, \
                 completion_tokens, latency_ms) \
             SELECT r.id, '{agent_id}'::uuid, 'm', 1, false, true, 1000, 234, 120 FROM r \
             UNION ALL SELECT r.id, '{agent_id}'::uuid, 'm', 2, false, false, 0, 0, 3000 FROM r"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mut b = logged_in(&app, "viewer").await;
    let page = b.get("/analytics?days=7&project=an").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.contains("<p class=\"big\">1</p>"), "one closed: {}", page.body);
    assert!(page.contains("1234 tokens"), "tokens per day in a bar title");
    assert!(
        page.contains(
            "<th scope=\"row\">ana</th><td data-label=\"Calls\">2</td><td data-label=\"Failed\">1</td>\
             <td data-label=\"Tokens\">1234</td>"
        ),
        "{}",
        page.body
    );
    assert!(page.contains("<th scope=\"row\">success</th><td data-label=\"Runs\">1</td>"));
    // The charts have a value axis and their values on the bars.
    assert!(
        page.contains("class=\"axis-value\">0</text>")
            && page.contains("class=\"bar-value\">1</text>")
    );
    assert!(page.contains("class=\"bar-value\">1234</text>"), "{}", page.body);
    // With nothing recorded, each chart says what will appear there.
    app.project("quiet").await;
    let quiet = b.get("/analytics?project=quiet").await;
    assert!(quiet.contains("No bead was closed in this window: each day"), "{}", quiet.body);
    assert!(
        quiet.contains("No gateway calls in this window: the median time")
            && !quiet.contains("class=\"bar\"")
    );
    let all = b.get("/analytics").await;
    assert_eq!(all.status, StatusCode::OK);
    let bad = b.get("/analytics?days=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("1 to 365 days"));
}

#[tokio::test]
async fn editing_a_bead_from_its_page_keeps_what_changed_meanwhile() {
    let app = spawn().await;
    app.project("ed").await;
    let bead = app.bead("ed", "Old title", json!({"labels": ["a"]})).await;
    let mut m = logged_in(&app, "member").await;
    let page = m.get(&format!("/beads/{bead}")).await;
    let csrf = page.csrf();
    let version = app.show(&bead).await["version"].to_string();
    let form = |title: &'static str, version: String| {
        vec![
            ("csrf", csrf.clone()),
            ("version", version),
            ("title", title.to_owned()),
            ("description", "Now with *words*".to_owned()),
            ("priority", "1".to_owned()),
            ("type", "bug".to_owned()),
            ("labels", "x, y".to_owned()),
        ]
    };
    let edited = form("New title", version.clone());
    let pairs: Vec<(&str, &str)> = edited.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = m.post(&format!("/beads/{bead}/edit"), &pairs).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let shown = app.show(&bead).await;
    assert_eq!(
        (shown["title"].as_str(), shown["priority"].as_i64(), shown["type"].as_str()),
        (Some("New title"), Some(1), Some("bug"))
    );
    assert_eq!(shown["labels"], json!(["x", "y"]));
    // The page showed the old version: submitting it again is refused, not applied.
    let stale = form("Stale title", version);
    let pairs: Vec<(&str, &str)> = stale.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = m.post(&format!("/beads/{bead}/edit"), &pairs).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.contains("role=\"alert\""));
    assert_eq!(app.show(&bead).await["title"], "New title");
    let no_version =
        m.post(&format!("/beads/{bead}/edit"), &[("csrf", &csrf), ("title", "x")]).await;
    assert_eq!(no_version.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bead_page_shows_the_commit_an_agent_merged_with_its_diff() {
    use crate::support::gateway::Reply;
    use crate::support::work::Work;
    let mut w = Work::new(&[("a.txt", "one\n")], 1, loom::executor::Limits::default()).await;
    let bead = w.bead("Change a").await;
    w.script.push_for(
        &bead,
        Reply::action(
            json!({"action": "edit_file", "path": "a.txt", "old": "one", "new": "<two>"}),
        ),
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Changed a."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    let mut b = logged_in(&w.app, "viewer").await;
    let page = b.get(&format!("/beads/{bead}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("class=\"commit\""), "{}", page.body);
    assert!(page.contains("<span class=\"del\">-one</span>"), "{}", page.body);
    assert!(
        page.contains("<span class=\"add\">+&#60;two&#62;</span>") || page.contains("+&lt;two&gt;"),
        "{}",
        page.body
    );
    assert!(page.contains("a.txt"));
}

#[tokio::test]
async fn admins_change_a_projects_settings_and_delete_it_from_its_page() {
    let app = spawn().await;
    app.project("set").await;
    let mut member = logged_in(&app, "member").await;
    let page = member.get("/projects/set").await;
    assert!(!page.contains("Project settings"), "members see no settings");
    let csrf = page.csrf();
    let refused = member.post("/projects/set/settings", &[("csrf", &csrf), ("name", "Mine")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut admin = logged_in(&app, "admin").await;
    let csrf = admin.get("/projects/set").await.csrf();
    let bad = admin
        .post(
            "/projects/set/settings",
            &[("csrf", &csrf), ("name", "Set"), ("max_parallel", "many")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("role=\"alert\""));
    let saved = admin
        .post(
            "/projects/set/settings",
            &[
                ("csrf", &csrf),
                ("name", "Renamed"),
                ("branch", "main"),
                ("max_parallel", "5"),
                ("max_attempts", "4"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let shown = app.call(Method::GET, "/api/v1/projects/set", Some(&app.viewer), None).await;
    assert_eq!(
        (
            shown.body["name"].as_str(),
            shown.body["max_parallel"].as_i64(),
            shown.body["max_attempts"].as_i64()
        ),
        (Some("Renamed"), Some(5), Some(4))
    );
    let bead = app.bead("set", "Unfinished", json!({})).await;
    let kept = admin.post("/projects/set/delete", &[("csrf", &csrf)]).await;
    assert_eq!(kept.status, StatusCode::CONFLICT, "{}", kept.body);
    app.call(Method::POST, &format!("/api/v1/beads/{bead}/close"), Some(&app.member), None).await;
    let gone = admin.post("/projects/set/delete", &[("csrf", &csrf)]).await;
    assert_eq!((gone.status, gone.location.as_deref()), (StatusCode::SEE_OTHER, Some("/projects")));
    assert_eq!(admin.get("/projects/set").await.status, StatusCode::NOT_FOUND);
}
