//! `loom chat`: the real binary pairing with a scripted gateway. Piped lines are sent one
//! at a time, each reply printed as it streams (text, actions and their results); `--json`
//! for scripts; a bad start, a failing reply and a reply in progress said clearly; continuing
//! a conversation; Ctrl-C stopping a reply.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::chat::Pairing;
use crate::support::cli::Cli;
use crate::support::gateway::Reply;

const START: &[&str] = &["chat", "--project", "web", "--persona", "software-engineer"];

/// The conversation id from the line that opens a chat.
fn conversation_id(out: &str) -> String {
    let line = out.lines().find(|l| l.starts_with("Conversation ")).expect("the opening line");
    line.split_whitespace().nth(1).unwrap().to_owned()
}

fn roles_and_states(details: &Value) -> Vec<(String, String)> {
    let messages = details["messages"].as_array().unwrap();
    messages
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["state"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_lines_are_sent_one_at_a_time_and_each_reply_streams_with_its_actions() {
    let p = Pairing::new(|_| {}).await;
    p.script
        .push(Reply::tool_call("write_file", json!({"path": "notes.txt", "content": "paired\n"})))
        .push(Reply::text("I wrote notes.txt for you.").chunk_delay(Duration::from_millis(20)))
        .push(
            Reply::text("The second answer, after the first.")
                .chunk_delay(Duration::from_millis(20)),
        );
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let input = "Write a notes file\n\n   \nAnd then?\n";
    let (ok, out, err) = cli.run(START, Some(input));
    assert!(ok, "{err}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Conversation ")
            && lines[0].contains("with software-engineer on project web")
            && lines[0].contains("/quit"),
        "{out}"
    );
    // Blank lines are skipped; the second line went only once the first reply was done (a
    // reply in progress would have refused it).
    assert_eq!(lines.len(), 8, "{out}");
    assert_eq!(lines[1], "you> Write a notes file");
    assert_eq!(lines[2].trim_end(), "software-engineer>");
    assert_eq!(lines[3], "  → write_file notes.txt");
    assert!(lines[4].starts_with("  ✓ ") && lines[4].len() > 6, "{out}");
    assert_eq!(lines[5], "I wrote notes.txt for you.");
    assert_eq!(lines[6], "you> And then?");
    assert_eq!(lines[7], "software-engineer> The second answer, after the first.");
    assert!(err.is_empty(), "{err}");

    let id = conversation_id(&out);
    let details = p.details(&id).await;
    let pairs = roles_and_states(&details);
    let expected = [("user", "complete"), ("assistant", "complete")];
    let expected: Vec<(String, String)> =
        expected.repeat(2).iter().map(|(r, s)| (r.to_string(), s.to_string())).collect();
    assert_eq!(pairs, expected);
    assert_eq!(details["messages"][2]["body"], "And then?");
    let written = std::fs::read_to_string(p.worktree(&format!("chat-{id}")).join("notes.txt"));
    assert_eq!(written.unwrap(), "paired\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_every_event_is_one_parseable_line_and_a_reply_ends_with_done() {
    let p = Pairing::new(|_| {}).await;
    let text = "Hello there, this streams in pieces.";
    p.script.push(Reply::text(text).chunk_delay(Duration::from_millis(20)).tokens(300, 40));
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let args: Vec<&str> = START.iter().copied().chain(["--json"]).collect();
    let (ok, out, err) = cli.run(&args, Some("Hello\n"));
    assert!(ok, "{err}\n{out}");
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_eq!(events[0]["event"], "conversation");
    let id = events[0]["data"]["id"].as_str().unwrap();
    assert_eq!(events[0]["data"]["persona"], "software-engineer");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "done", "{out}");
    assert_eq!(last["data"]["state"], "complete");
    assert_eq!(last["data"]["tokens"]["prompt"], 300);
    let said: String = events
        .iter()
        .filter(|e| e["event"] == "delta")
        .map(|e| e["data"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(said, text);
    let ids: Vec<i64> = events[1..].iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    assert_eq!(p.details(id).await["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_start_exits_non_zero_with_the_servers_message() {
    let p = Pairing::new(|_| {}).await;
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let (ok, out, err) =
        cli.run(&["chat", "--project", "nope", "--persona", "software-engineer"], Some("hi\n"));
    assert!(!ok, "{out}");
    assert!(err.contains("no project \"nope\"") && err.contains("unknown_project"), "{err}");
    let (ok, _, err) = cli.run(&["chat", "--project", "web", "--persona", "nobody"], None);
    assert!(!ok && err.contains("unknown_persona"), "{err}");
    let (ok, _, err) = cli.run(&["chat", "--project", "web"], None);
    assert!(!ok && err.contains("agent_or_persona_required"), "{err}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let (ok, _, err) = cli.run(&["chat", "--conversation", &unknown], None);
    assert!(!ok && err.contains("not_found"), "{err}");
    let viewer = Cli::with_token(&p.app.base, &p.app.viewer);
    let (ok, _, err) = viewer.run(START, None);
    assert!(!ok && err.contains("HTTP 403"), "{err}");
    let (ok, _, err) = Cli::new(&p.app.base).run(START, None);
    assert!(!ok && err.contains("not logged in"), "{err}");
    assert!(p.script.completions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reply_is_said_on_stderr_and_the_chat_goes_on_with_the_next_line() {
    let p = Pairing::new(|_| {}).await;
    p.script
        .push(Reply::status_with(400, "the prompt is too long"))
        .push(Reply::text("Recovered."));
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let (ok, out, err) = cli.run(START, Some("one\ntwo\n"));
    assert!(ok, "{err}\n{out}");
    let error = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}"));
    assert!(
        error.contains("the prompt is too long") && error.ends_with("(gateway_rejected)"),
        "{err}"
    );
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    let expected = ["you> one", "software-engineer>", "you> two", "software-engineer> Recovered."];
    assert_eq!(lines[1..], expected, "{out}");
    let states: Vec<String> = roles_and_states(&p.details(&conversation_id(&out)).await)
        .into_iter()
        .filter(|(role, _)| role == "assistant")
        .map(|(_, state)| state)
        .collect();
    assert_eq!(states, ["failed", "complete"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuing_a_conversation_prints_its_past_and_refuses_clearly_while_a_reply_streams() {
    let p = Pairing::new(|_| {}).await;
    let bead = p.app.bead("web", "Pair on the parser", json!({})).await;
    let id = p.conversation(Some(&bead)).await;
    p.script.push(Reply::text("Earlier answer."));
    let mut stream = p.stream(&id, None).await;
    p.say(&id, "Earlier question").await;
    stream.until("done").await;

    p.script.push(Reply::text("Later answer."));
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let (ok, out, err) = cli.run(&["chat", "--conversation", &id], Some("Later question\n"));
    assert!(ok, "{err}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[..2], ["you> Earlier question", "software-engineer> Earlier answer."]);
    assert!(
        lines[2].starts_with(&format!("Conversation {id} with software-engineer on bead {bead}")),
        "{out}"
    );
    assert_eq!(lines[3..], ["you> Later question", "software-engineer> Later answer."]);
    assert_eq!(p.details(&id).await["messages"].as_array().unwrap().len(), 4);
    let asked = &p.script.completions()[1]["messages"];
    assert_eq!(asked.as_array().unwrap().len(), 4, "the past went to the model: {asked}");

    // While a reply streams, a message is refused with the server's reason, and the chat
    // still ends well at the end of its input.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    p.script.push(Reply::text("Thinking...").held(release.clone()));
    p.say(&id, "Hold on").await;
    let (ok, out, err) = cli.run(&["chat", "--conversation", &id], Some("Interrupting\n"));
    release.notify_one();
    assert!(ok, "{err}\n{out}");
    assert!(out.contains("(still replying)"), "{out}");
    assert!(err.contains("still replying") && err.contains("reply_in_progress"), "{err}");
}

/// Reads `out` into `seen` until it holds `wanted`.
async fn read_until(out: &mut tokio::process::ChildStdout, seen: &mut String, wanted: &str) {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains(wanted) {
        let n = tokio::time::timeout_at(deadline, out.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} in time: {seen}"))
            .unwrap();
        assert!(n > 0, "the output ended without {wanted:?}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_reply_stops_it_and_the_chat_takes_the_next_line() {
    let p = Pairing::new(|_| {}).await;
    let long = (0..200).map(|i| format!("w{i} ")).collect::<String>();
    // The gateway sends a quarter of the text, then waits: the Ctrl-C lands in the pause.
    p.script
        .push(Reply::text(&long).chunk_delay(Duration::from_secs(2)))
        .push(Reply::text("Short."));
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let mut child = cli.spawn_piped(START);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"Go on and on\n").await.unwrap();
    let mut seen = String::new();
    read_until(&mut stdout, &mut seen, "w2 ").await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    read_until(&mut stdout, &mut seen, "(stopped)\n").await;

    stdin.write_all(b"Short answer please\n").await.unwrap();
    drop(stdin);
    read_until(&mut stdout, &mut seen, "software-engineer> Short.\n").await;
    let status =
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}: {seen}");

    let details = p.details(&conversation_id(&seen)).await;
    let reply = &details["messages"][1];
    assert_eq!(reply["state"], "stopped");
    let kept = reply["body"].as_str().unwrap();
    assert!(!kept.is_empty() && kept.len() < long.len(), "{kept:?}");
    assert_eq!(details["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_addressed_by_name_and_named_as_the_one_answering() {
    let p = Pairing::new(|_| {}).await;
    let res =
        p.app.post("/api/v1/agents", json!({"name": "ada", "persona": "software-engineer"})).await;
    assert_eq!(res.status, reqwest::StatusCode::CREATED, "{:?}", res.body);
    p.script.push(Reply::text("Ada here."));
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let (ok, out, err) = cli.run(&["chat", "--project", "web", "--agent", "ada"], Some("hi\n"));
    assert!(ok, "{err}\n{out}");
    assert!(out.lines().next().unwrap().contains("with ada (software-engineer) on"), "{out}");
    assert!(out.lines().any(|l| l == "ada> Ada here."), "{out}");
    let details = p.details(&conversation_id(&out)).await;
    assert_eq!(details["agent"], res.body["id"]);

    let (ok, _, err) = cli.run(&["chat", "--project", "web", "--agent", "grace"], None);
    assert!(!ok && err.contains("no agent named \"grace\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_gives_the_bead_back_and_a_second_one_says_why_not() {
    let p = Pairing::new(|_| {}).await;
    let bead = p.app.bead("web", "Pair in the terminal", json!({})).await;
    p.script.push(Reply::text("Looked at it."));
    let cli = Cli::with_token(&p.app.base, &p.app.member);
    let args = ["chat", "--project", "web", "--persona", "software-engineer", "--bead", &bead];
    let (ok, out, err) = cli.run(&args, Some("Have a look\n/handoff\n/handoff\n"));
    assert!(ok, "{err}\n{out}");
    assert_eq!(p.app.show(&bead).await["ready"], true, "handed back:\n{out}");
    assert!(err.contains("already_handed_off"), "the second says why: {err}");
}
