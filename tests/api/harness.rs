//! What a model reads, through the real executor, workbench and a scripted gateway (issue 19):
//! results keep what it needs to act (a command's end and exit code, where it is in a file,
//! why an edit missed), batches stop at a failure, search skips what git ignores, unknown
//! arguments are named, and every turn says what is left.

use serde_json::{Value, json};

use loom::executor::Limits;

use crate::support::gateway::Reply;
use crate::support::work::Work;
use loom::workbench::actions::ToolsSetting;

/// The text of the last message of the `n`th request the gateway received.
fn last_message(w: &Work, n: usize) -> String {
    let request: Value = w.script.completions()[n].clone();
    let messages = request["messages"].as_array().expect("messages");
    messages.last().and_then(|m| m["content"].as_str()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_commands_end_and_exit_code_are_read_and_a_big_file_is_paged_to_its_end() {
    let big: String = (1..=2000).map(|i| format!("line {i}\n")).collect();
    let mut w = Work::new(&[("big.txt", &big)], 1, Limits::default()).await;
    let bead = w.bead("Look around").await;
    let s = &w.script;
    s.push_for(
        &bead,
        Reply::action(json!({"action": "run", "command": "seq 1 200000; echo END; exit 3"})),
    );
    s.push_for(&bead, Reply::action(json!({"action": "read_file", "path": "big.txt"})));
    s.push_for(
        &bead,
        Reply::action(json!({"action": "read_file", "path": "big.txt", "start_line": 1500})),
    );
    s.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Looked."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");

    let ran = last_message(&w, 1);
    assert!(ran.starts_with("[1] run → error: [exit code 3]\n1\n2\n"), "{}", &ran[..200]);
    assert!(
        ran.contains("left out ...]") && ran.contains("199999\n200000\nEND\n"),
        "the end is kept"
    );
    assert!(ran.chars().count() < 13_000, "{}", ran.chars().count());

    let page = last_message(&w, 2);
    assert!(page.starts_with("[1] read_file → big.txt L1-"), "{}", &page[..100]);
    assert!(page.contains("     1\tline 1\n"), "numbered");
    let next = page.split("read on with start_line=").nth(1).expect("where to read on");
    let next: usize = next.split(']').next().and_then(|n| n.parse().ok()).expect("a line");
    assert!(next > 500 && next < 2000, "{next}");
    let last = last_message(&w, 3);
    assert!(
        last.contains("big.txt L1500-2000 of 2000") && last.contains("  2000\tline 2000"),
        "{}",
        &last[..100]
    );
    assert!(last.contains("turns and about"), "every turn says what is left: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_edit_stops_its_batch_and_the_done_after_it_is_not_performed() {
    let mut w = Work::new(&[("a.py", "x = 1\n")], 1, Limits::default()).await;
    let bead = w.bead("Bump x").await;
    let batch = json!({"actions": [
        {"action": "edit_file", "path": "a.py", "old": "x  = 1", "new": "x = 2"},
        {"action": "run", "command": "touch ran.txt"},
        {"action": "done", "summary": "Bumped."},
    ]});
    w.script.push_for(&bead, Reply::action(batch));
    w.script.push_for(
        &bead,
        Reply::action(
            json!({"action": "edit_file", "path": "a.py", "old": "x = 1", "new": "x = 2"}),
        ),
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Bumped now."})));
    w.settle().await;

    let shown = w.show(&bead).await;
    assert_eq!(shown["close_reason"], "Bumped now.", "{shown}");
    let told = last_message(&w, 1);
    assert!(told.contains("[1] edit_file → error: old was not found in \"a.py\""), "{told}");
    assert!(told.contains("Only whitespace differs"), "{told}");
    assert!(told.contains("[2] run → skipped: not performed because edit_file before it failed"));
    assert!(told.contains("[3] done → skipped: done was not performed"), "{told}");
    let edited = last_message(&w, 2);
    assert!(edited.contains("Edited \"a.py\". Line 1 changed; the file has 1 lines."), "{edited}");
    assert!(edited.contains("     1\tx = 2"), "{edited}");
    assert_eq!(w.upstream.file("a.py"), "x = 2\n");
    assert!(
        w.upstream.git(&["ls-tree", "-r", "--name-only", "main"]).lines().all(|f| f != "ran.txt")
    );
}

/// A rename of three occurrences in one edit, then an edit that would unbalance a brace:
/// refused with the error lines shown, the file left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_replaces_every_occurrence_and_an_edit_that_breaks_the_syntax_is_refused() {
    let code = "fn total(xs: &[u32]) -> u32 {\n    xs.iter().sum()\n}\n\nfn twice(xs: &[u32]) -> u32 {\n    total(xs) + total(xs)\n}\n";
    let mut w = Work::new(&[("src/lib.rs", code)], 1, Limits::default()).await;
    let bead = w.bead("Rename total to sum_all").await;
    let rename =
        json!({"path": "src/lib.rs", "old": "total", "new": "sum_all", "replace_all": true});
    w.script.push_for(&bead, Reply::tool_call("edit_file", rename));
    let broken = json!({"path": "src/lib.rs", "old": "    xs.iter().sum()\n}", "new": "    xs.iter().sum()"});
    w.script.push_for(&bead, Reply::tool_call("edit_file", broken));
    w.script.push_for(&bead, Reply::tool_call("done", json!({"summary": "Renamed."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");

    let renamed = last_message(&w, 1);
    assert!(
        renamed.starts_with("Edited \"src/lib.rs\" (3 occurrences replaced). Lines 1-6 changed"),
        "{renamed}"
    );
    assert!(renamed.contains("     6\t    sum_all(xs) + sum_all(xs)"), "{renamed}");
    let refused = last_message(&w, 2);
    assert!(refused.starts_with("error: The edit was not applied: it would leave \"src/lib.rs\" with syntax errors (0 before,"), "{refused}");
    assert_eq!(w.upstream.file("src/lib.rs"), code.replace("total", "sum_all"), "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_skips_what_gitignore_excludes_and_unknown_arguments_are_named() {
    let files = [
        (".gitignore", "node_modules/\n"),
        ("node_modules/dep/index.js", "const needle = 1;\n"),
        ("src/app.js", "const needle = 2;\n"),
    ];
    let mut w = Work::new(&files, 1, Limits::default()).await;
    let bead = w.bead("Find the needle").await;
    let s = &w.script;
    s.push_for(&bead, Reply::action(json!({"action": "search", "query": "needle"})));
    s.push_for(&bead, Reply::tool_call("read_file", json!({"path": "src/app.js", "offset": 2})));
    s.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Found it."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");

    let found = last_message(&w, 1);
    assert!(found.starts_with("[1] search → src/app.js:1: const needle = 2;"), "{found}");
    assert!(!found.contains("node_modules"), "{found}");
    let refused = last_message(&w, 2);
    assert!(refused.contains("read_file has no argument \"offset\""), "{refused}");
    assert!(refused.contains("\"start_line\"?: integer"), "the accepted ones are named: {refused}");
}

/// With `LOOM_GATEWAY_TOOLS=text` no tools travel with the requests, the prompt teaches the
/// JSON format, and both a run and a chat act on JSON written in the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replying_in_text_sends_no_tools_and_runs_and_chats_act_on_json_in_the_text() {
    let mut w = Work::replying_in_text(&[("a.txt", "one\n")], Limits::default()).await;
    let bead = w.bead("Say two").await;
    chat_in_text(&w).await;

    w.script.push_for(
        &bead,
        Reply::text("Reading first.\n{\"action\": \"read_file\", \"path\": \"a.txt\"}"),
    );
    w.script.push_for(&bead, Reply::text("Plain words, no action."));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Read it."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");

    let calls = w.script.completions();
    assert!(
        calls.iter().all(|c| c.get("tools").is_none_or(|t| t.as_array().is_none_or(Vec::is_empty))),
        "no tools sent"
    );
    let chat_system = calls[0]["messages"][0]["content"].as_str().unwrap_or_default();
    assert!(chat_system.contains("A reply is one JSON object"), "the chat is taught the format");
    let run = calls.iter().find(|c| c["stream"] != true).expect("the run's first call");
    let system = run["messages"][0]["content"].as_str().unwrap_or_default();
    assert!(system.contains("A reply is one JSON object"), "{system}");
    let n = calls.len();
    let told = calls[n - 1]["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(told.contains("Reply with one JSON object"), "a text-mode hint: {told}");
}

/// With native tools, a reply in words is told to call a tool, not to write JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_calling_model_that_replies_in_words_is_told_to_call_a_tool() {
    let mut w = Work::new(&[("a.txt", "one\n")], 1, Limits::default()).await;
    let bead = w.bead("Do it").await;
    w.script.push_for(&bead, Reply::text("I think it is fine."));
    w.script.push_for(&bead, Reply::tool_call("done", json!({"summary": "Fine."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    let told = last_message(&w, 1);
    assert!(told.contains("Call one of the tools you are offered"), "{told}");
    assert!(!told.contains("Reply with one JSON object"), "{told}");
    let system =
        w.script.completions()[0]["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
    assert!(system.contains("You work by calling the tools you are offered"), "{system}");
    assert!(!system.contains("A reply is one JSON object"), "{system}");
}

/// Whether a chat-completion request carried tools.
fn has_tools(call: &Value) -> bool {
    call["tools"].as_array().is_some_and(|t| !t.is_empty())
}

/// A conversation asks to make `a.txt` Spanish; the reply edits it with JSON written in the
/// text and says so.
async fn chat_in_text(w: &Work) {
    use reqwest::{Method, StatusCode};
    let body = json!({"project": "web", "persona": "software-engineer"});
    let started =
        w.app.call(Method::POST, "/api/v1/conversations", Some(&w.app.member), Some(body)).await;
    assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
    let conversation = started.body["id"].as_str().expect("id").to_owned();
    let edit = json!({"action": "edit_file", "path": "a.txt", "old": "one", "new": "uno"});
    w.script
        .push_for("Spanish", Reply::text(format!("I'll edit it:\n```json\n{edit}\n```")))
        .push_for("Spanish", Reply::text("Done: a.txt says uno now."));
    let url = format!("{}/api/v1/conversations/{conversation}/stream", w.app.base);
    let mut stream = crate::support::sse::SseClient::open(&url, &w.app.viewer, Some("0")).await;
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let said = json!({"body": "Make it Spanish."});
    let posted = w.app.call(Method::POST, &path, Some(&w.app.member), Some(said)).await;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{:?}", posted.body);
    let frames = stream.until("done").await;
    assert!(
        frames.iter().any(|f| f.event == "action_result" && f.data.contains("\"ok\":true")),
        "the chat acted on JSON in its text: {frames:?}"
    );
}

/// A bead worked with a read written as JSON text, then `done`.
async fn run_in_text(w: &mut Work) {
    let bead = w.bead("Read it").await;
    w.script.push_for(&bead, Reply::text("{\"action\": \"read_file\", \"path\": \"a.txt\"}"));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Read it."})));
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert_eq!(shown["attempts"], 0, "the refusal cost no attempt: {shown}");
}

const NO_TOOLS: &str = "registry.ollama.ai/library/gemma:2b does not support tools";

/// In `auto` (the default), a gateway that refuses tools is asked again without them: the
/// run starts over in JSON text, free of charge and without a canary, and the runs after it
/// talk to it in text from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_gateway_without_tools_starts_over_in_json_text_and_later_runs_start_there() {
    let mut w =
        Work::with_tools(&[("a.txt", "one\n")], Limits::default(), ToolsSetting::Auto).await;
    w.script.refuse_tools(NO_TOOLS);
    run_in_text(&mut w).await;
    let calls = w.script.completions();
    assert!(has_tools(&calls[0]), "the first request offered tools");
    let system = calls[1]["messages"][0]["content"].as_str().unwrap_or_default();
    assert!(system.contains("A reply is one JSON object"), "taught the format: {system}");
    assert_eq!(calls[1]["messages"].as_array().map(Vec::len), Some(2), "started over");
    run_in_text(&mut w).await;
    let calls = w.script.completions();
    assert_eq!(calls.len(), 5, "two runs of two turns, one refusal");
    assert!(calls[1..].iter().all(|c| !has_tools(c)), "none after the refusal");
    assert_eq!(w.script.canaries(), 0, "a refusal of tools is not a question of health");
}

/// A chat that meets the refusal goes on in JSON text too; with `native` configured, a
/// refusal of tools is the run's failure, never a switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_on_a_gateway_without_tools_goes_on_in_json_text_unless_native_is_required() {
    let w = Work::with_tools(&[("a.txt", "one\n")], Limits::default(), ToolsSetting::Auto).await;
    w.script.refuse_tools(NO_TOOLS);
    chat_in_text(&w).await;
    let calls = w.script.completions();
    assert!(has_tools(&calls[0]), "the first request offered tools");
    assert!(calls.len() == 3 && calls[1..].iter().all(|c| !has_tools(c)), "{calls:?}");
    let system = calls[1]["messages"][0]["content"].as_str().unwrap_or_default();
    assert!(system.contains("A reply is one JSON object"), "taught the format: {system}");

    let mut w =
        Work::with_tools(&[("a.txt", "one\n")], Limits::default(), ToolsSetting::Native).await;
    w.script.refuse_tools(NO_TOOLS);
    let bead = w.bead("Read it").await;
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_ne!(shown["status"], "closed", "{shown}");
    assert!(
        shown["last_error"].as_str().unwrap_or_default().contains("does not support tools"),
        "{shown}"
    );
    assert!(w.script.completions().iter().all(has_tools), "native stays native");
}

/// A retry is told how the last attempt ended and what the bead's branch already holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_told_how_the_last_attempt_ended_and_the_commits_on_its_branch() {
    use diesel_async::RunQueryDsl;
    let limits = Limits { max_turns: 2, ..Limits::default() };
    let mut w = Work::new(&[("a.txt", "one\n")], 1, limits).await;
    let bead = w.bead("Write the parser").await;
    let s = &w.script;
    s.push_for(
        &bead,
        Reply::tool_calls(&[
            (
                "write_file",
                json!({"path": "parser.py", "content": "def parse(s):\n    return s\n"}),
            ),
            ("commit", json!({"message": "Start the parser"})),
        ]),
    );
    s.push_for(&bead, Reply::tool_call("read_file", json!({"path": "a.txt"})));
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(shown["runs"][0]["outcome"], "turn_limit", "{shown}");
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("open"), Some(1)));

    let mut conn = w.app.pool.get().await.expect("a connection");
    diesel::sql_query("UPDATE beads SET not_before = NULL").execute(&mut conn).await.expect("sql");
    drop(conn);
    w.script.push_for(&bead, Reply::tool_call("done", json!({"summary": "Parser written."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    let retry = &w.script.completions()[2];
    let task = retry["messages"][1]["content"].as_str().unwrap_or_default();
    assert!(
        task.contains(
            "This is attempt 2. The last run ended: the run reached its limit of 2 turns"
        ),
        "how the last attempt ended: {task}"
    );
    let listed = task.split("Start the parser").next().unwrap_or_default();
    assert!(
        listed.len() < task.len() && listed.contains("1 commit"),
        "the branch's commit: {task}"
    );
}
