//! Pairing: the executor never works a bead while a person is pairing on it. Starting a
//! conversation on a bead takes it from the agent working it and keeps it out of the ready
//! queue; handing the conversation off makes it ready again, and the next run reads what
//! was said.

use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use loom::beads::Bead;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge};
use loom::executor::Limits;

use crate::support::browser::logged_in;
use crate::support::gateway::Reply;
use crate::support::work::Work;
use crate::support::{Res, TestApp, ids, spawn};
use crate::web_work::column;

async fn agent(app: &TestApp, name: &str) -> Uuid {
    let res =
        app.post("/api/v1/agents", json!({"name": name, "persona": "software-engineer"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_str().unwrap().parse().unwrap()
}

/// Starts a conversation with the persona (no agent of it is taken), on `bead` if given.
async fn start(app: &TestApp, project: &str, bead: Option<&str>) -> Res {
    let body = json!({"project": project, "persona": "software-engineer", "bead": bead});
    app.call(Method::POST, "/api/v1/conversations", Some(&app.member), Some(body)).await
}

async fn started(app: &TestApp, project: &str, bead: Option<&str>) -> String {
    let res = start(app, project, bead).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

async fn handoff_as(app: &TestApp, token: &str, conversation: &str) -> Res {
    let path = format!("/api/v1/conversations/{conversation}/handoff");
    app.call(Method::POST, &path, Some(token), None).await
}

async fn sql(app: &TestApp, statements: &str) {
    app.pool.get().await.unwrap().batch_execute(statements).await.unwrap();
}

fn dispatcher(app: &TestApp) -> Dispatcher {
    Dispatcher::new(app.pool.clone(), DispatchConfig::default(), Nudge::default())
}

async fn kinds(app: &TestApp, bead: &str) -> Vec<String> {
    let mut conn = app.pool.get().await.unwrap();
    let rows = loom::activity::Activity::for_bead(&mut conn, bead, 100).await.unwrap();
    rows.into_iter().map(|a| a.kind).collect()
}

#[tokio::test]
async fn a_bead_a_person_pairs_on_is_not_ready_nor_claimed_until_it_is_handed_off() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "Pair on the parser", json!({})).await;
    let conversation = started(&app, "web", Some(&bead)).await;

    assert!(app.ready_ids("web").await.is_empty(), "a paired bead is not ready");
    let shown = app.show(&bead).await;
    assert_eq!(
        (shown["status"].as_str(), shown["ready"].as_bool(), shown["paired_in"].as_str()),
        (Some("open"), Some(false), Some(conversation.as_str())),
        "{shown}"
    );
    assert_eq!(shown["holds"], json!([{"kind": "paired", "conversation": conversation}]));
    let blocked = app.get("/api/v1/beads/blocked?project=web").await;
    assert_eq!(ids(&blocked.body["items"]), [bead.clone()], "{:?}", blocked.body);
    assert_eq!(blocked.body["items"][0]["holds"][0]["kind"], "paired");
    let mut viewer = logged_in(&app, "viewer").await;
    let board = viewer.get("/projects/web").await;
    assert_eq!(column(&board.body, "open"), [bead.clone()], "not in the ready column");
    assert!(board.contains("a person is pairing on it"), "{}", board.body);
    let page = viewer.get(&format!("/beads/{bead}")).await;
    assert!(page.contains(&format!("a person is pairing on it (conversation {conversation})")));

    assert_eq!(dispatcher(&app).run_until_idle().await.unwrap(), 0, "nothing is claimed");
    assert_eq!(app.show(&bead).await["status"], "open");
    assert_eq!(app.get(&format!("/api/v1/agents/{ada}")).await.body["status"], "idle");

    let handed = handoff_as(&app, &app.member, &conversation).await;
    assert_eq!(handed.status, StatusCode::OK, "{:?}", handed.body);
    assert_eq!(
        (handed.body["id"].as_str(), handed.body["status"].as_str()),
        (Some(conversation.as_str()), Some("handed_off"))
    );
    let shown = app.show(&bead).await;
    assert_eq!((shown["ready"].as_bool(), shown["paired_in"].as_null()), (Some(true), Some(())));
    assert!(shown["version"].as_i64() > Some(2), "pairing and handing off move the version");
    assert_eq!(app.ready_ids("web").await, [bead.clone()]);
    assert!(app.get("/api/v1/beads/blocked?project=web").await.body["items"] == json!([]));
    assert!(kinds(&app, &bead).await.contains(&"conversation.handed_off".to_owned()));

    assert_eq!(dispatcher(&app).run_until_idle().await.unwrap(), 1);
    let claimed = app.show(&bead).await;
    assert_eq!(
        (claimed["status"].as_str(), claimed["assignee"].as_str()),
        (Some("in_progress"), Some(ada.to_string().as_str()))
    );
}

#[tokio::test]
async fn pairing_on_a_bead_an_agent_is_working_takes_it_back() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "Wrong approach", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    let claim = Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    let before = app.show(&bead).await["version"].as_i64().unwrap();

    let conversation = started(&app, "web", Some(&bead)).await;
    let run = app.get(&format!("/api/v1/runs/{}", claim.run_id)).await.body;
    assert_eq!(
        (run["outcome"].as_str(), run["error"].as_str()),
        (Some("cancelled"), Some("taken back by a person")),
        "{run}"
    );
    assert_eq!(app.get(&format!("/api/v1/agents/{ada}")).await.body["status"], "idle");
    let shown = app.show(&bead).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["paired_in"].as_str(),
            shown["assignee"].as_str(),
            shown["lease_expires_at"].as_str()
        ),
        (Some("open"), Some(conversation.as_str()), None, None),
        "{shown}"
    );
    assert!(shown["version"].as_i64().unwrap() > before);
    let kinds = kinds(&app, &bead).await;
    for kind in ["run.ended", "bead.reopened", "conversation.started"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} missing from {kinds:?}");
    }
    assert!(
        !Bead::renew_lease(&mut conn, &claim, Duration::from_secs(60)).await.unwrap(),
        "the old run cannot renew its lease"
    );
    assert_eq!(dispatcher(&app).run_until_idle().await.unwrap(), 0, "and no one claims it");
}

#[tokio::test]
async fn one_person_pairs_on_a_bead_at_a_time() {
    let app = spawn().await;
    app.project("web").await;
    let bead = app.bead("web", "Busy", json!({})).await;
    let first = started(&app, "web", Some(&bead)).await;
    let second = start(&app, "web", Some(&bead)).await;
    assert_eq!((second.status, second.code()), (StatusCode::CONFLICT, "already_pairing"));
    let message = second.body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&first), "the message names the open conversation: {message}");
    assert!(start(&app, "web", None).await.status == StatusCode::CREATED, "off the bead is fine");
    let by_hand = format!(
        "INSERT INTO conversations (id, project_id, bead_id, persona, title) \
         VALUES (gen_random_uuid(), 'web', '{bead}', 'software-engineer', 'by hand')"
    );
    let refused = app.pool.get().await.unwrap().batch_execute(&by_hand).await.unwrap_err();
    assert!(refused.to_string().contains("conversations_one_open_per_bead"), "{refused}");

    // Many at once: one wins, the others are refused, nothing half-done is left.
    let other = app.bead("web", "Raced", json!({})).await;
    let tries =
        futures_util::future::join_all((0..6).map(|_| start(&app, "web", Some(&other)))).await;
    let statuses: Vec<_> = tries.iter().map(|r| (r.status, r.code().to_owned())).collect();
    let won = statuses.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    assert_eq!(won, 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|(s, c)| *s == StatusCode::CREATED || c == "already_pairing"),
        "{statuses:?}"
    );
    let listed = app.get(&format!("/api/v1/conversations?bead={other}")).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);

    // Once handed off, someone may pair on it again.
    assert_eq!(handoff_as(&app, &app.member, &first).await.status, StatusCode::OK);
    let again = started(&app, "web", Some(&bead)).await;
    assert_eq!(app.show(&bead).await["paired_in"], json!(again));
}

#[tokio::test]
async fn a_handoff_is_refused_when_there_is_nothing_to_hand_back() {
    let app = spawn().await;
    app.project("web").await;
    let bead = app.bead("web", "Talked about", json!({})).await;
    let on_bead = started(&app, "web", Some(&bead)).await;
    let off_bead = started(&app, "web", None).await;
    for (token, conversation, status, code) in [
        (&app.viewer, on_bead.clone(), StatusCode::FORBIDDEN, "forbidden"),
        (&app.member, Uuid::new_v4().to_string(), StatusCode::NOT_FOUND, "not_found"),
        (&app.member, off_bead.clone(), StatusCode::CONFLICT, "no_bead"),
    ] {
        let res = handoff_as(&app, token, &conversation).await;
        assert_eq!((res.status, res.code()), (status, code), "{conversation}: {:?}", res.body);
    }
    let no_bead = handoff_as(&app, &app.member, &off_bead).await;
    assert!(no_bead.body["error"]["message"].as_str().unwrap().contains("not on a bead"));
    assert_eq!(app.show(&bead).await["paired_in"], json!(on_bead), "a refusal changes nothing");

    // A reply still streaming holds the handoff back.
    sql(
        &app,
        &format!(
            "INSERT INTO chat_messages (conversation_id, role, body, state, lease_expires_at) \
             VALUES ('{on_bead}', 'assistant', 'Half a tho', 'streaming', now() + interval '1 minute')"
        ),
    )
    .await;
    let streaming = handoff_as(&app, &app.member, &on_bead).await;
    assert_eq!((streaming.status, streaming.code()), (StatusCode::CONFLICT, "reply_in_progress"));
    sql(&app, "UPDATE chat_messages SET state = 'stopped', lease_expires_at = NULL").await;

    assert_eq!(handoff_as(&app, &app.member, &on_bead).await.status, StatusCode::OK);
    let twice = handoff_as(&app, &app.member, &on_bead).await;
    assert_eq!((twice.status, twice.code()), (StatusCode::CONFLICT, "already_handed_off"));
    let handed = app.get("/api/v1/activity?kind=conversation.handed_off").await;
    assert_eq!(handed.body["items"].as_array().unwrap().len(), 1, "{:?}", handed.body);
}

/// Inserts a finished message; the API for posting them lives elsewhere.
async fn message(app: &TestApp, conversation: &str, role: &str, author: &str, body: &str) {
    let (user, agent) = match role {
        "user" => (format!("(SELECT id FROM users WHERE username = '{author}')"), "NULL".into()),
        _ => ("NULL".to_owned(), format!("'{author}'")),
    };
    sql(
        app,
        &format!(
            "INSERT INTO chat_messages (conversation_id, role, author_user_id, author_agent_id, body) \
             VALUES ('{conversation}', '{role}', {user}, {agent}, '{body}')"
        ),
    )
    .await;
}

#[tokio::test]
async fn the_next_run_after_a_handoff_reads_the_conversation() {
    let mut w = Work::new(&[("parser.rs", "fn parse() {}\n")], 1, Limits::default()).await;
    let bead = w.bead("Make the parser strict").await;
    let conversation = started(&w.app, "web", Some(&bead)).await;
    let ada = w.agents[0].clone();
    message(&w.app, &conversation, "user", "member", "Reject trailing commas, please.").await;
    message(&w.app, &conversation, "assistant", &ada, "Done in parser.rs; tests pass.").await;
    let long = format!("{}END-OF-LONG", "x".repeat(5_000));
    message(&w.app, &conversation, "user", "member", &long).await;

    w.settle().await;
    assert!(w.script.completions().is_empty(), "no run while a person pairs on it");
    assert_eq!(w.show(&bead).await["status"], "open");

    assert_eq!(handoff_as(&w.app, &w.app.member, &conversation).await.status, StatusCode::OK);
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Strict now."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");

    let first = &w.script.completions()[0];
    let task = first["messages"][1]["content"].as_str().unwrap();
    for part in [
        "## A person paired on this bead",
        "this same worktree",
        "**member:** Reject trailing commas, please.",
        "**agent ada0 (software-engineer):** Done in parser.rs; tests pass.",
        "characters left out here …]",
    ] {
        assert!(task.contains(part), "{part} missing from:\n{task}");
    }
    // A long message keeps its head and its end, as every clipped text does.
    assert!(task.contains("END-OF-LONG"), "a long message keeps its end");
    assert!(task.len() < 12_000, "{}", task.len());
}

/// The whole loop: a person pairs, the agent edits the bead's worktree in the chat (without
/// committing), the person hands the bead back, and the executor's run goes on in that same
/// worktree with the conversation in its prompt; the edit lands on the project branch.
#[tokio::test]
async fn work_done_while_pairing_is_carried_on_by_the_next_run_and_nothing_is_lost() {
    let mut w = Work::with_chat(&[("parser.rs", "fn parse() {}\n")], 1, Limits::default()).await;
    let bead = w.bead("Make the parser strict").await;
    let conversation = started(&w.app, "web", Some(&bead)).await;
    let edit =
        json!({"path": "parser.rs", "old": "fn parse() {}", "new": "fn parse() { strict() }"});
    w.script
        .push_for("Reject trailing commas", Reply::tool_call("edit_file", edit))
        .push_for("Reject trailing commas", Reply::text("Edited parser.rs; not committed yet."));
    let url = format!("{}/api/v1/conversations/{conversation}/stream", w.app.base);
    let mut stream = crate::support::sse::SseClient::open(&url, &w.app.viewer, Some("0")).await;
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let body = json!({"body": "Reject trailing commas, please."});
    let posted = w.app.call(Method::POST, &path, Some(&w.app.member), Some(body)).await;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{:?}", posted.body);
    let frames = stream.until("done").await;
    assert!(frames.iter().any(|f| f.event == "action_result" && f.data.contains("\"ok\":true")));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "open", "no run while the person pairs");

    assert_eq!(handoff_as(&w.app, &w.app.member, &conversation).await.status, StatusCode::OK);
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Strict now."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    let run =
        w.script.completions().into_iter().find(|c| c["stream"] != true).expect("the run's call");
    let task = run["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(task.contains("Edited parser.rs; not committed yet."), "{task}");
    // The chat's uncommitted edit was committed and merged by the run.
    assert_eq!(w.upstream.file("parser.rs"), "fn parse() { strict() }\n");
}

/// Pairing on a bead blocked for a person (to answer its question) and handing it back
/// returns it to work: it is open and ready again, in the same transaction as the handoff.
#[tokio::test]
async fn handing_back_a_blocked_bead_reopens_it() {
    let app = spawn().await;
    app.project("web").await;
    let bead = app.bead("web", "Which database?", json!({})).await;
    let blocked =
        app.post(&format!("/api/v1/beads/{bead}/block"), json!({"reason": "ask Ann"})).await;
    assert_eq!(blocked.status, StatusCode::OK, "{:?}", blocked.body);
    let conversation = started(&app, "web", Some(&bead)).await;
    assert_eq!(app.show(&bead).await["status"], "blocked", "pairing alone leaves it blocked");
    assert_eq!(handoff_as(&app, &app.member, &conversation).await.status, StatusCode::OK);
    let shown = app.show(&bead).await;
    assert_eq!((shown["status"].as_str(), shown["ready"].as_bool()), (Some("open"), Some(true)));
    let kinds = kinds(&app, &bead).await;
    assert!(kinds.contains(&"bead.reopened".to_owned()), "{kinds:?}");
}
