//! Agents doing real work end to end: a scripted model reads, edits, runs and finishes; the
//! executor commits in the bead's worktree, merges into the project branch, pushes upstream
//! and closes the bead. Real git repositories, real Postgres, a real HTTP gateway.

use serde_json::json;

use loom::executor::Limits;

use crate::support::gateway::Reply;
use crate::support::work::Work;

const GREETING: &str = "Hello\n";

#[tokio::test]
async fn a_bead_read_edited_tested_and_done_lands_a_commit_upstream_and_closes() {
    let mut w = Work::new(
        &[("greeting.txt", GREETING), ("AGENTS.md", "Keep lines short.")],
        1,
        Limits::default(),
    )
    .await;
    let bead = w.bead("Make the greeting friendlier").await;
    let s = &w.script;
    s.push_for(&bead, Reply::action(json!({"action": "read_file", "path": "greeting.txt"})));
    s.push_for(
        &bead,
        Reply::tool_call(
            "edit_file",
            json!({"path": "greeting.txt", "old": "Hello", "new": "Hello, friend"}),
        ),
    );
    s.push_for(
        &bead,
        Reply::action(json!({"action": "run", "command": "grep -c friend greeting.txt"})),
    );
    s.push_for(
        &bead,
        Reply::action(json!({"action": "done", "summary": "Made the greeting friendlier."})),
    );
    w.settle().await;

    let shown = w.show(&bead).await;
    assert_eq!(
        (shown["status"].as_str(), shown["close_reason"].as_str()),
        (Some("closed"), Some("Made the greeting friendlier.")),
        "{shown}"
    );
    assert_eq!(w.upstream.file("greeting.txt"), "Hello, friend\n");
    let log = w.upstream.log();
    assert_eq!(log[0].0, "Made the greeting friendlier.");
    assert_eq!(log[0].1, "ada0 <ada0@agents.loom.invalid>", "the agent is the author");
    let run = shown["runs"][0]["id"].as_str().unwrap().to_owned();
    let message = w.upstream.git(&["log", "-1", "--format=%B", "main"]);
    assert!(message.contains(&format!("Bead: {bead}")), "{message}");
    assert!(message.contains(&format!("Run: {run}")), "{message}");
    assert_eq!(w.upstream.git(&["log", "-1", "--format=%cn", "main"]).trim(), "Loom");

    // The run is visible: steps with their actions and results, tokens, the merge.
    let steps = w.steps(&bead).await;
    let actions: Vec<_> =
        steps.iter().map(|s| s["action"]["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, ["read_file", "edit_file", "run"]);
    assert!(steps.iter().all(|s| s["ok"] == true), "{steps:?}");
    assert!(steps[2]["result"].as_str().unwrap().contains('1'), "{:?}", steps[2]);
    let r = &shown["runs"][0];
    assert_eq!((r["outcome"].as_str(), r["turns"].as_i64()), (Some("success"), Some(4)));
    assert_eq!(
        (r["prompt_tokens"].as_i64(), r["completion_tokens"].as_i64()),
        (Some(400), Some(80))
    );
    assert!(r["merged_sha"].as_str().is_some_and(|s| s.len() == 40));

    // What the model was told: persona, AGENTS.md, the bead, the vocabulary, native tools.
    let first = &w.script.completions()[0];
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Keep lines short."), "AGENTS.md is in the prompt");
    assert!(system.contains("loom/") && system.contains("edit_file"));
    assert!(
        first["messages"][1]["content"].as_str().unwrap().contains("Make the greeting friendlier")
    );
    assert!(first["tools"].as_array().is_some_and(|t| t.len() >= 13));
    // The native call was answered under its id.
    let third = &w.script.completions()[2];
    let answered = third["messages"].as_array().unwrap().iter().any(|m| m["role"] == "tool");
    assert!(answered, "{third}");

    let agent = w.app.get(&format!("/api/v1/agents/{}", w.agents[0])).await.body;
    assert_eq!(agent["status"], "idle");
    assert_eq!(w.script.left(), 0);
}

#[tokio::test]
async fn two_beads_in_one_project_run_side_by_side_and_both_merge() {
    let mut w = Work::new(&[("a.txt", "a\n"), ("b.txt", "b\n")], 2, Limits::default()).await;
    let (one, two) = (w.bead("Change a").await, w.bead("Change b").await);
    for (bead, file) in [(&one, "a.txt"), (&two, "b.txt")] {
        w.script.push_for(
            bead,
            Reply::action(json!({"action": "write_file", "path": file, "content": format!("{file} changed\n")})),
        );
        w.script.push_for(
            bead,
            Reply::action(json!({"action": "done", "summary": format!("Changed {file}")})),
        );
    }
    w.settle().await;
    for bead in [&one, &two] {
        assert_eq!(w.show(bead).await["status"], "closed");
    }
    assert_eq!(w.upstream.file("a.txt"), "a.txt changed\n");
    assert_eq!(w.upstream.file("b.txt"), "b.txt changed\n");
    let worktrees = w.data.path().join("worktrees/web");
    let left = std::fs::read_dir(&worktrees).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "finished worktrees are removed");
}

#[tokio::test]
async fn of_two_beads_editing_the_same_line_one_merges_and_the_other_is_blocked_with_the_paths() {
    let mut w = Work::new(&[("config.toml", "level = 1\n")], 2, Limits::default()).await;
    let (one, two) = (w.bead("Level two").await, w.bead("Level three").await);
    for (bead, level) in [(&one, 2), (&two, 3)] {
        w.script.push_for(
            bead,
            Reply::action(json!({"action": "edit_file", "path": "config.toml", "old": "level = 1", "new": format!("level = {level}")})),
        );
        w.script.push_for(
            bead,
            Reply::action(json!({"action": "done", "summary": format!("Level {level}")})),
        );
    }
    w.settle().await;
    let (a, b) = (w.show(&one).await, w.show(&two).await);
    let mut states = [a["status"].as_str().unwrap(), b["status"].as_str().unwrap()];
    states.sort();
    assert_eq!(states, ["blocked", "closed"]);
    let blocked = if a["status"] == "blocked" { &a } else { &b };
    assert_eq!(blocked["blocked_reason"], "merge_conflict");
    let comments = blocked["comments"].as_array().unwrap();
    assert!(
        comments.iter().any(|c| c["body"].as_str().unwrap().contains("`config.toml`")),
        "{comments:?}"
    );
    let merged = if a["status"] == "closed" { "2" } else { "3" };
    assert_eq!(w.upstream.file("config.toml"), format!("level = {merged}\n"));
}

#[tokio::test]
async fn paths_outside_the_worktree_are_refused_to_the_model_and_the_run_goes_on() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Poke around").await;
    for path in ["../../../etc/passwd", "/etc/passwd", ".git/config"] {
        w.script.push_for(&bead, Reply::action(json!({"action": "read_file", "path": path})));
    }
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "write_file", "path": "../escape.txt", "content": "x"})),
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Looked."})));
    w.settle().await;
    let steps = w.steps(&bead).await;
    assert_eq!(steps.len(), 4);
    assert!(steps.iter().all(|s| s["ok"] == false), "{steps:?}");
    assert!(!w.data.path().join("worktrees/escape.txt").exists());
    assert_eq!(w.show(&bead).await["status"], "closed");
}

#[tokio::test]
async fn a_model_that_repeats_itself_is_stopped_and_the_bead_blocked_as_a_loop() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Read forever").await;
    w.script.fallback(Reply::action(json!({"action": "read_file", "path": "a.txt"})));
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(
        (shown["status"].as_str(), shown["blocked_reason"].as_str()),
        (Some("blocked"), Some("loop_detected"))
    );
    assert_eq!(shown["runs"][0]["outcome"], "loop_detected");
    assert_eq!(w.steps(&bead).await.len(), 4);
}

#[tokio::test]
async fn a_rate_limited_gateway_is_waited_out_as_retry_after_says() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Finish").await;
    w.script.push_for(&bead, Reply::status(429).retry_after("1"));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Nothing to do."})));
    let started = std::time::Instant::now();
    w.settle().await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(w.show(&bead).await["status"], "closed");
    let run = w.show(&bead).await["runs"][0]["id"].as_str().unwrap().parse().unwrap();
    let calls = loom::gateway::GatewayCall::for_run(&mut w.app.pool.get().await.unwrap(), run)
        .await
        .unwrap();
    assert_eq!(calls.iter().map(|c| c.http_status).collect::<Vec<_>>(), [Some(429), Some(200)]);
}
