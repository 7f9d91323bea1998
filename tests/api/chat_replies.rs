//! Chat replies over HTTP against a scripted gateway streaming real SSE chunks: the order and
//! content of a stream's events, resuming mid-reply, stopping mid-reply, one reply at a time,
//! the agent acting in the right worktree with the executor's path safety, and each failure a
//! person must understand arriving as an `error` event.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::chat::Pairing;
use crate::support::gateway::Reply;
use crate::support::sse::{SseClient, data};
use crate::support::work::git;

const TEXT: &str = "Let me explain how the parser handles an empty input and why it fails.";

/// The text of every `delta` among `frames`, joined.
fn said(frames: &[loom::cli::sse::Frame]) -> String {
    frames
        .iter()
        .filter(|f| f.event == "delta")
        .map(|f| data(f)["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn kinds(frames: &[loom::cli::sse::Frame]) -> Vec<String> {
    let mut kinds: Vec<String> = frames.iter().map(|f| f.event.clone()).collect();
    kinds.dedup();
    kinds
}

/// Waits until the replica at `base` writes no reply (its status says), for at most 15 s:
/// a stopped reply's task must end, not go on calling the gateway unheard.
async fn writers_settle(base: &str, token: &str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let status: Value = http
            .get(format!("{base}/api/v1/status"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["chat_replies"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a stopped reply's writer is still running at {base}");
}

async fn stop(p: &Pairing, conversation: &str) -> crate::support::Res {
    let path = format!("/api/v1/conversations/{conversation}/stop");
    p.app.call(Method::POST, &path, Some(&p.app.member), None).await
}

#[tokio::test]
async fn a_reply_streams_its_text_in_order_then_done_and_is_stored_with_its_tokens() {
    let p = Pairing::new(|_| {}).await;
    let bead = p
        .app
        .bead(
            "web",
            "Empty input crashes the parser",
            json!({"description": "Reproduce with `parse('')`."}),
        )
        .await;
    let id = p.conversation(Some(&bead)).await;
    p.script.push(Reply::text(TEXT).chunk_delay(Duration::from_millis(30)).tokens(300, 40));
    let mut stream = p.stream(&id, None).await;
    let posted = p.say(&id, "Why does the parser crash on empty input?").await;
    assert_eq!(posted["message"]["body"], "Why does the parser crash on empty input?");
    assert_eq!(posted["reply"]["state"], "streaming");

    let frames = stream.until("done").await;
    assert_eq!(kinds(&frames), ["message", "delta", "done"], "{frames:?}");
    assert_eq!(frames[0].id.as_deref(), Some(posted["event_id"].to_string().as_str()));
    assert_eq!(data(&frames[0])["body"], "Why does the parser crash on empty input?");
    assert_eq!(said(&frames), TEXT, "every piece once, in order");
    let ids: Vec<i64> = frames.iter().map(|f| f.id.as_deref().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    let done = data(frames.last().unwrap());
    assert_eq!(done["message_id"], posted["reply"]["id"]);
    assert_eq!(
        (done["state"].as_str(), done["tokens"]["prompt"].as_i64()),
        (Some("complete"), Some(300))
    );

    let details = p.details(&id).await;
    let messages = details["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        (messages[0]["role"].as_str(), messages[1]["role"].as_str()),
        (Some("user"), Some("assistant"))
    );
    assert_eq!(messages[1]["body"], TEXT);
    assert_eq!(messages[1]["state"], "complete");
    assert_eq!(
        (messages[1]["prompt_tokens"].as_i64(), messages[1]["completion_tokens"].as_i64()),
        (Some(300), Some(40))
    );

    // The persona's instructions and the bead's context were in the system prompt.
    let asked = p.script.completions();
    let system = asked[0]["messages"][0]["content"].as_str().unwrap().to_owned();
    for part in [
        "software-engineer",
        "Empty input crashes the parser",
        "Reproduce with `parse('')`.",
        "# Your instructions",
        &bead,
    ] {
        assert!(system.contains(part), "{part} missing from the system prompt:\n{system}");
    }
    let persona_md = std::fs::read_to_string("personas/software-engineer/PERSONA.md").unwrap();
    let first_line =
        persona_md.split("---").nth(2).unwrap().lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(system.contains(first_line.trim()), "the persona's instructions: {first_line}");
    assert_eq!(asked[0]["stream"], true, "the reply was streamed");
    assert!(
        asked[0]["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "with the actions as tools"
    );

    // The next message carries the conversation so far.
    p.script.push(Reply::text("Yes."));
    p.say(&id, "Is it the tokenizer?").await;
    stream.until("done").await;
    let second = &p.script.completions()[1]["messages"];
    let roles: Vec<&str> =
        second.as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(second[2]["content"], TEXT);
}

#[tokio::test]
async fn a_reader_that_reconnects_mid_reply_gets_the_rest_and_nothing_twice() {
    let p = Pairing::new(|_| {}).await;
    let id = p.conversation(None).await;
    let long = (0..30).map(|i| format!("word{i} ")).collect::<String>();
    p.script.push(Reply::text(&long).chunk_delay(Duration::from_millis(60)));
    let posted = p.say(&id, "Tell me a long story").await;
    let mut first = p.stream(&id, Some(posted["event_id"].as_i64().unwrap() - 1)).await;
    let mut seen = vec![first.next_event().await];
    while seen.iter().filter(|f| f.event == "delta").count() < 2 {
        seen.push(first.next_event().await);
    }
    let last = seen.last().unwrap().id.clone().unwrap();
    drop(first);
    let mut again = p.stream(&id, Some(last.parse().unwrap())).await;
    let rest = again.until("done").await;
    assert!(rest.iter().all(|f| f.event != "message"), "nothing before the resume point again");
    let whole = format!("{}{}", said(&seen), said(&rest));
    assert_eq!(whole, long, "no piece lost or repeated across the reconnect");

    // A page reload after the reply: everything from the start, in the same order.
    let mut replay = p.stream(&id, Some(0)).await;
    let all = replay.until("done").await;
    assert_eq!(said(&all), long);
    assert_eq!(p.details(&id).await["messages"][1]["body"], long.as_str());
}

#[tokio::test]
async fn a_person_stops_a_reply_mid_stream_and_it_keeps_what_it_said() {
    let p = Pairing::new(|_| {}).await;
    let id = p.conversation(None).await;
    // Four pieces (the scripted gateway's split), far apart: the stop comes after the first.
    let long = (0..200).map(|i| format!("w{i} ")).collect::<String>();
    p.script.push(Reply::text(&long).chunk_delay(Duration::from_secs(3)));
    let mut stream = p.stream(&id, None).await;
    p.say(&id, "Go on and on").await;
    stream.until("delta").await;
    let stopped = stop(&p, &id).await;
    assert_eq!(stopped.status, StatusCode::OK, "{:?}", stopped.body);
    assert_eq!(stopped.body["state"], "stopped");
    let frames = stream.until("done").await;
    let done = data(frames.last().unwrap());
    assert_eq!(done["state"], "stopped");
    writers_settle(&p.app.base, &p.app.viewer).await;

    // Nothing more of the stopped reply: the next events are the next message's.
    p.script.push(Reply::text("Fine."));
    p.say(&id, "Short answer please").await;
    let next = stream.until("done").await;
    assert_eq!(kinds(&next), ["message", "delta", "done"], "{next:?}");
    assert_eq!(said(&next), "Fine.");
    let messages = p.details(&id).await["messages"].as_array().unwrap().clone();
    assert_eq!(messages[1]["state"], "stopped");
    let kept = messages[1]["body"].as_str().unwrap();
    assert!(!kept.is_empty() && long.starts_with(kept) && kept.len() < long.len(), "{kept:?}");

    // Stopping when nothing streams says so.
    let again = stop(&p, &id).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "not_replying"));
}

#[tokio::test]
async fn one_reply_at_a_time_and_bad_messages_are_refused_clearly() {
    let p = Pairing::new(|_| {}).await;
    let id = p.conversation(None).await;
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    p.script.push(Reply::text("Thinking...").held(release.clone()));
    p.say(&id, "First").await;
    let second = p.try_say(&id, "Second", &p.app.member).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.code(), "reply_in_progress");
    assert!(second.body["error"]["message"].as_str().unwrap().contains("stop it"));
    release.notify_one();

    let viewer = p.try_say(&id, "Let me in", &p.app.viewer).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN, "a viewer cannot post");
    let blank = p.try_say(&id, "   ", &p.app.member).await;
    assert_eq!((blank.status, blank.code()), (StatusCode::UNPROCESSABLE_ENTITY, "empty_message"));
    let long = "x".repeat(loom::chat::MAX_BODY + 1);
    let res = p.try_say(&id, &long, &p.app.member).await;
    assert_eq!(res.code(), "message_too_long");
    let unknown = uuid::Uuid::new_v4();
    let res = p.try_say(&unknown.to_string(), "hello", &p.app.member).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let url = format!("{}/api/v1/conversations/{unknown}/stream", p.app.base);
    let refused = SseClient::try_open(&url, &p.app.viewer, None).await.err().map(|e| e.0);
    assert_eq!(refused, Some(StatusCode::NOT_FOUND));
    let anonymous =
        reqwest::get(format!("{}/api/v1/conversations/{id}/stream", p.app.base)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Only the first message and its reply were stored.
    let mut stream = p.stream(&id, Some(0)).await;
    stream.until("done").await;
    assert_eq!(p.details(&id).await["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_agent_acts_in_the_beads_worktree_with_the_executors_path_safety() {
    let p = Pairing::new(|_| {}).await;
    let bead = p.app.bead("web", "Add notes", json!({})).await;
    let id = p.conversation(Some(&bead)).await;
    p.script
        .push(Reply::tool_calls(&[
            ("write_file", json!({"path": "notes.txt", "content": "paired\n"})),
            ("read_file", json!({"path": "../../../etc/passwd"})),
            ("run", json!({"command": "cat notes.txt && echo ran-in-$(basename $(pwd))"})),
            ("comment", json!({"body": "Notes are in notes.txt."})),
        ]))
        .push(Reply::tool_call("commit", json!({"message": "Add notes"})))
        .push(Reply::text("I wrote notes.txt and committed it."));
    let mut stream = p.stream(&id, None).await;
    p.say(&id, "Write a notes file and commit it").await;
    let frames = stream.until("done").await;
    let acted: Vec<(String, Value)> = frames
        .iter()
        .filter(|f| f.event.starts_with("action"))
        .map(|f| (f.event.clone(), data(f)))
        .collect();
    let names: Vec<&str> = acted
        .iter()
        .filter(|(k, _)| k == "action")
        .map(|(_, d)| d["action"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["write_file", "read_file", "run", "comment", "commit"]);
    let results: Vec<&Value> =
        acted.iter().filter(|(k, _)| k == "action_result").map(|(_, d)| d).collect();
    assert_eq!(results.len(), 5, "each action has its result, after it: {acted:?}");
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[1]["ok"], false, "a path out of the worktree is refused");
    assert!(
        results[1]["output"].as_str().unwrap().contains("leaves the worktree"),
        "{:?}",
        results[1]
    );
    let ran = results[2]["output"].as_str().unwrap();
    assert!(ran.contains("paired") && ran.contains(&format!("ran-in-{bead}")), "{ran}");
    assert!(
        results[4]["output"].as_str().unwrap().contains(&format!("loom/{bead}")),
        "{:?}",
        results[4]
    );
    assert_eq!(said(&frames), "I wrote notes.txt and committed it.");

    // The edit and the commit are real, in the bead's own worktree and branch.
    let worktree = p.worktree(&bead);
    assert_eq!(std::fs::read_to_string(worktree.join("notes.txt")).unwrap(), "paired\n");
    let body = git(&worktree, &["log", "-1", "--format=%an%n%B", &format!("loom/{bead}")]);
    assert!(body.starts_with("software-engineer\nAdd notes"), "{body}");
    assert!(
        body.contains(&format!("Bead: {bead}")) && body.contains(&format!("Conversation: {id}")),
        "{body}"
    );
    // The tool results went back to the model, one per call.
    let third = &p.script.completions()[1]["messages"];
    let tool_answers = third.as_array().unwrap().iter().filter(|m| m["role"] == "tool").count();
    assert_eq!(tool_answers, 4);
    // The comment is Loom's on the persona's behalf, never the person's words.
    let comments = p.app.get(&format!("/api/v1/beads/{bead}/comments")).await.body;
    let comment = &comments["items"][0];
    assert!(comment["author_user_id"].is_null(), "{comment}");
    let body = comment["body"].as_str().unwrap();
    assert!(
        body.starts_with("*software-engineer, pairing with member:*")
            && body.ends_with("Notes are in notes.txt."),
        "{body}"
    );
}

#[tokio::test]
async fn without_a_bead_the_agent_works_on_the_conversations_own_branch() {
    let p = Pairing::new(|_| {}).await;
    let id = p.conversation(None).await;
    p.script
        .push(Reply::tool_call("write_file", json!({"path": "idea.md", "content": "# Idea\n"})))
        .push(Reply::tool_call("commit", json!({"message": "Sketch the idea"})))
        .push(Reply::tool_call("comment", json!({"body": "nowhere to put this"})))
        .push(Reply::text("Sketched."));
    let mut stream = p.stream(&id, None).await;
    p.say(&id, "Sketch it").await;
    let frames = stream.until("done").await;
    let results: Vec<Value> =
        frames.iter().filter(|f| f.event == "action_result").map(data).collect();
    assert_eq!(
        results.iter().map(|r| r["ok"].as_bool().unwrap()).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert!(results[2]["output"].as_str().unwrap().contains("not on a bead"));
    let worktree = p.worktree(&format!("chat-{id}"));
    let log = git(&worktree, &["log", "-1", "--format=%s", &format!("loom/chat-{id}")]);
    assert_eq!(log.trim(), "Sketch the idea");
    assert!(!p.upstream.file("README.md").is_empty());
}

/// The error events of the replies a person sends, until `n` have failed.
async fn failure(stream: &mut SseClient) -> Value {
    let frames = stream.until("error").await;
    data(frames.last().unwrap())
}

#[tokio::test]
async fn each_failure_is_an_error_event_a_person_understands_and_never_a_hung_stream() {
    let p = Pairing::new(|c| c.chat.token_budget = 100).await;
    let bead = p.app.bead("web", "Something to pair on", json!({})).await;
    let id = p.conversation(Some(&bead)).await;
    let mut stream = p.stream(&id, None).await;

    // The gateway refusing (a bad request), after retries for a 5xx mid-way.
    p.script.push(Reply::status_with(400, "the prompt is too long"));
    p.say(&id, "one").await;
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "gateway_rejected");
    assert!(e["message"].as_str().unwrap().contains("the prompt is too long"), "{e}");

    // The budget: this reply may go over 100 tokens (120), the next one is refused before asking.
    p.script.push(Reply::text("ok").tokens(100, 20));
    p.say(&id, "three").await;
    stream.until("done").await;
    let calls = p.script.completions().len();
    p.say(&id, "four").await;
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "token_budget_exceeded");
    assert!(e["message"].as_str().unwrap().contains("of its budget of 100"), "{e}");
    assert_eq!(p.script.completions().len(), calls, "no call once over budget");

    let messages = p.details(&id).await["messages"].as_array().unwrap().clone();
    let states: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["failed", "complete", "failed"]);
    assert!(messages.iter().all(|m| m["state"] != "streaming"), "none left streaming");

    // Text, then the stream breaks: what was said stays, the reply fails.
    let other = p.conversation(None).await;
    let mut stream = p.stream(&other, None).await;
    p.script.push(Reply::fail_mid_stream("Half an ans", "upstream exploded"));
    p.say(&other, "two").await;
    let frames = stream.until("error").await;
    assert_eq!(said(&frames), "Half an ans");
    assert_eq!(data(frames.last().unwrap())["code"], "gateway_unavailable");
    let reply = &p.details(&other).await["messages"][1];
    assert_eq!(
        (reply["state"].as_str(), reply["body"].as_str()),
        (Some("failed"), Some("Half an ans"))
    );
}

#[tokio::test]
async fn a_closed_bead_or_a_gateway_that_is_down_or_missing_is_said_at_once() {
    let p = Pairing::new(|_| {}).await;
    let bead = p.app.bead("web", "Closing soon", json!({})).await;
    let id = p.conversation(Some(&bead)).await;
    let mut stream = p.stream(&id, None).await;
    let res =
        p.app.post(&format!("/api/v1/beads/{bead}/close"), json!({"reason": "done by hand"})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    p.say(&id, "Anything left?").await;
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "bead_closed");
    assert!(e["message"].as_str().unwrap().contains(&bead));

    let other = p.conversation(None).await;
    let mut stream = p.stream(&other, None).await;
    p.script.set_down(true);
    p.say(&other, "Are you there?").await;
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "gateway_unavailable", "{e}");
    assert!(e["message"].as_str().unwrap().contains("unavailable"));

    // No gateway configured at all.
    let bare = crate::support::spawn().await;
    bare.project("solo").await;
    let res = bare
        .call(
            Method::POST,
            "/api/v1/conversations",
            Some(&bare.member),
            Some(json!({"project": "solo", "persona": "software-engineer"})),
        )
        .await;
    let solo = res.body["id"].as_str().unwrap().to_owned();
    let res = bare
        .call(
            Method::POST,
            &format!("/api/v1/conversations/{solo}/messages"),
            Some(&bare.member),
            Some(json!({"body": "hello"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let url = format!("{}/api/v1/conversations/{solo}/stream", bare.base);
    let mut stream = SseClient::open(&url, &bare.viewer, Some("0")).await;
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "gateway_unconfigured");
    assert!(e["message"].as_str().unwrap().contains("LOOM_GATEWAY_URL"));
}

#[tokio::test]
async fn a_reply_whose_writer_died_is_failed_by_the_ticker_once_its_lease_lapses() {
    use diesel_async::RunQueryDsl;
    let p = Pairing::new(|_| {}).await;
    let id = p.conversation(None).await;
    // A reply left streaming by a process that died: its lease has lapsed.
    let mut conn = p.app.pool.get().await.unwrap();
    diesel::sql_query(format!(
        "INSERT INTO chat_messages (conversation_id, role, state, body, lease_expires_at) \
         VALUES ('{id}', 'assistant', 'streaming', 'I was say', now() - interval '1 second')"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let mut stream = p.stream(&id, None).await;
    let ticker = loom::ticker::Ticker::new(
        p.app.pool.clone(),
        Default::default(),
        loom::gateway::HealthState::default(),
        loom::dispatch::Nudge::default(),
    )
    .with_bus(p.app.bus().clone());
    let pass = ticker.fail_lost_replies().await.unwrap();
    assert_eq!((pass.seen, pass.healed), (1, 1));
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "reply_lost");
    let messages = p.details(&id).await["messages"].as_array().unwrap().clone();
    assert_eq!(
        (messages[0]["state"].as_str(), messages[0]["body"].as_str()),
        (Some("failed"), Some("I was say"))
    );
    assert_eq!(ticker.fail_lost_replies().await.unwrap().seen, 0, "once");
    // The conversation takes messages again.
    p.script.push(Reply::text("Back."));
    p.say(&id, "Hello again").await;
    assert_eq!(said(&stream.until("done").await), "Back.");
}

/// With two replicas, a reply is written by the one that runs the project's executor (its
/// worktrees are the ones the project's runs use), whichever took the message; it streams
/// live to readers on the other, and a stop asked of the other stops the writer at once.
/// Conversation streams poll Postgres only every ten minutes here, so what arrives in time
/// came through NATS.
#[tokio::test]
async fn a_reply_is_written_where_the_projects_runs_are_and_streams_and_stops_across_replicas() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use loom::db::schema::executor_leases;

    use crate::support::replica;
    let nats = replica::nats_config(&replica::nats_url());
    let (a_nats, b_nats) = (nats.clone(), nats.clone());
    let slow = Duration::from_secs(600);
    let p = Pairing::new(move |c| {
        c.events.nats = Some(a_nats);
        c.chat.poll = slow;
    })
    .await;
    let url = p.script.url();
    // B runs executors, so B owns the project; A runs none.
    let b = replica::start(p.app.database_url(), move |c| {
        c.events.nats = Some(b_nats);
        c.chat.poll = slow;
        c.gateway = Some(crate::support::work::gateway_config(&url));
        c.executors = Some(Default::default());
    })
    .await;
    let mut conn = p.app.pool.get().await.unwrap();
    for _ in 0..300 {
        let owned: i64 = executor_leases::table
            .filter(executor_leases::project_id.eq("web"))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        if owned == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = p.conversation(None).await;
    let mut on_a = p.stream(&id, None).await;
    p.script
        .push(Reply::tool_call("write_file", json!({"path": "where.txt", "content": "B\n"})))
        .push(Reply::text("Over there, then here.").chunk_delay(Duration::from_millis(20)));
    p.say(&id, "Write it down").await; // taken by A
    let frames = on_a.until("done").await;
    assert_eq!(
        kinds(&frames),
        ["message", "action", "action_result", "delta", "done"],
        "{frames:?}"
    );
    assert_eq!(said(&frames), "Over there, then here.");
    let name = format!("chat-{id}");
    let on_b = b.data_dir.join("worktrees").join("web").join(&name).join("where.txt");
    assert_eq!(std::fs::read_to_string(&on_b).unwrap(), "B\n", "written in B's worktree");
    assert!(!p.worktree(&name).exists(), "and not in A's");

    // A slow reply, written by B, stopped through A: B's writer stops at once.
    let long = (0..100).map(|i| format!("w{i} ")).collect::<String>();
    p.script.push(Reply::text(&long).chunk_delay(Duration::from_secs(3)));
    p.say(&id, "Go on").await;
    on_a.until("delta").await;
    assert_eq!(stop(&p, &id).await.status, StatusCode::OK);
    let done = data(on_a.until("done").await.last().unwrap());
    assert_eq!(done["state"], "stopped");
    // B's writer has really stopped (not merely been refused its writes).
    writers_settle(&b.base, &p.app.viewer).await;
    replica::drop_stream(&nats).await;
}

/// `loom serve` stopped by SIGTERM while it writes a reply records the reply as
/// interrupted before it exits, so nobody waits for the rest.
#[tokio::test]
async fn a_reply_interrupted_by_a_graceful_shutdown_says_so() {
    let p = Pairing::new(|_| {}).await;
    let id = p.conversation(None).await;
    p.script.push(Reply::text("The start of a long answer").chunk_delay(Duration::from_secs(5)));
    let env = [
        ("LOOM_GATEWAY_URL", p.script.url()),
        ("LOOM_GATEWAY_MODEL", "scripted-model".to_owned()),
        ("LOOM_GATEWAY_API_KEY", crate::support::work::KEY.to_owned()),
        ("LOOM_NO_EXECUTORS", "true".to_owned()),
    ];
    let mut server = crate::support::serve::Server::start(p.app.database_url(), &env);
    let port = server.port().await;
    let mut stream = p.stream(&id, None).await;
    let posted = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/conversations/{id}/messages"))
        .bearer_auth(&p.app.member)
        .json(&json!({"body": "Tell me everything"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    stream.until("delta").await;
    server.terminate();
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await;
    assert!(status.is_ok_and(|s| s.is_ok_and(|s| s.success())), "{}", server.log());
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "interrupted", "{e}");
    let reply = &p.details(&id).await["messages"][1];
    assert_eq!(reply["state"], "failed");
    let kept = reply["body"].as_str().unwrap();
    assert!(!kept.is_empty() && "The start of a long answer".starts_with(kept), "kept: {kept:?}");
}

/// A model that keeps acting without answering is stopped at the turn limit, and a project
/// whose repository cannot be fetched says so: both as `error` events, nothing left streaming.
#[tokio::test]
async fn the_turn_limit_and_an_unusable_worktree_are_said_as_errors() {
    let p = Pairing::new(|c| c.chat.max_turns = 2).await;
    let id = p.conversation(None).await;
    let mut stream = p.stream(&id, None).await;
    p.script.fallback(Reply::tool_call("list_files", json!({})));
    p.say(&id, "Look around").await;
    let frames = stream.until("error").await;
    assert_eq!(frames.iter().filter(|f| f.event == "action").count(), 2, "one per turn");
    let e = data(frames.last().unwrap());
    assert_eq!(e["code"], "too_many_turns", "{e}");
    assert!(e["message"].as_str().unwrap().contains("2 times"), "{e}");

    // A project on a repository that is gone (it was there when the project was made).
    let repo = p.app.repo("gone");
    let res = p
        .app
        .call(
            Method::POST,
            "/api/v1/projects",
            Some(&p.app.admin),
            Some(json!({"id": "gone", "name": "Gone", "repo": repo})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    std::fs::remove_dir_all(&repo).expect("remove the repository");
    let body = json!({"project": "gone", "persona": "software-engineer"});
    let res =
        p.app.call(Method::POST, "/api/v1/conversations", Some(&p.app.member), Some(body)).await;
    let gone = res.body["id"].as_str().unwrap().to_owned();
    let mut stream = p.stream(&gone, None).await;
    p.say(&gone, "Anything there?").await;
    let e = failure(&mut stream).await;
    assert_eq!(e["code"], "workspace_unavailable", "{e}");
    assert!(!e["message"].as_str().unwrap().contains(&repo), "no paths: {e}");
    assert_eq!(p.details(&gone).await["messages"][1]["state"], "failed");
}
