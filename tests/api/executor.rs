//! Agents doing real work end to end: a scripted model reads, edits, runs and finishes; the
//! executor commits in the bead's worktree, merges into the project branch, pushes upstream
//! and closes the bead. Real git repositories, real Postgres, a real HTTP gateway.

use serde_json::json;

use loom::executor::Limits;

use crate::support::gateway::Reply;
use crate::support::work::Work;

const GREETING: &str = "Hello\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    // Each step carries the tokens of the reply that asked for it.
    assert!(
        steps.iter().all(|s| (s["prompt_tokens"].as_i64(), s["completion_tokens"].as_i64())
            == (Some(100), Some(20))),
        "{steps:?}"
    );
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

    // `loom run` prints the transcript; a bad id is a clear error.
    let cli = crate::support::cli::Cli::with_token(&w.app.base, &w.app.viewer);
    let (ok, out, err) = cli.run(&["run", "show", &run], None);
    assert!(ok, "{err}");
    for part in
        ["outcome   success", "summary   Made the greeting friendlier.", "edit_file", "· ok ·"]
    {
        assert!(out.contains(part), "{part} missing from:\n{out}");
    }
    let (ok, out, _) = cli.run(&["run", "list", &bead], None);
    assert!(ok && out.contains(&run) && out.contains("success"), "{out}");
    let (ok, _, err) = cli.run(&["run", "show", "not-a-run"], None);
    assert!(!ok && err.starts_with("error:"), "{err}");
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
async fn of_two_beads_editing_the_same_line_one_lands_and_the_other_goes_back_with_the_paths() {
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
        // For whichever conflicts: its next run finds the project branch merged into its
        // worktree by Loom (its own git metadata is read-only in the sandbox), resolves the
        // markers and is done.
        for reply in [
            json!({"action": "run", "command": "git merge main"}),
            json!({"action": "read_file", "path": "config.toml"}),
            json!({"action": "write_file", "path": "config.toml", "content": "level = 5\n"}),
            json!({"action": "done", "summary": "Level 5, merged with main."}),
        ] {
            w.script.push_for(bead, Reply::action(reply));
        }
    }
    w.settle().await;
    let (a, b) = (w.show(&one).await, w.show(&two).await);
    assert_eq!((a["status"].as_str(), b["status"].as_str()), (Some("closed"), Some("closed")));
    let runs = |v: &serde_json::Value| v["runs"].as_array().map(Vec::len).unwrap_or(0);
    let sent_back = if runs(&a) == 2 { &a } else { &b };
    assert_eq!(runs(sent_back), 2, "one bead ran twice: {a}\n{b}");
    let comments = sent_back["comments"].as_array().unwrap();
    assert!(
        comments
            .iter()
            .any(|c| c["body"].as_str().unwrap().contains("conflicts in:\n- `config.toml`")),
        "{comments:?}"
    );
    let id = sent_back["id"].as_str().unwrap().to_owned();
    let second = w
        .script
        .completions()
        .iter()
        .filter_map(|c| c["messages"][1]["content"].as_str().map(str::to_owned))
        .find(|task| task.contains(&id) && task.contains("conflicts in: `config.toml`"));
    let task = second.expect("the second run is told of the conflict");
    assert!(task.contains("merge conflict with the project branch in config.toml"), "{task}");
    let steps = w.steps(&id).await;
    let own_merge = steps[0]["result"].as_str().unwrap();
    assert!(!own_merge.starts_with("[exit code 0]"), "git metadata is read-only: {own_merge}");
    let markers = steps[1]["result"].as_str().unwrap();
    assert!(markers.contains("<<<<<<<") && markers.contains(">>>>>>>"), "{markers}");
    assert_eq!(w.upstream.file("config.toml"), "level = 5\n");
    // The merge commit is the agent's, with both branches as parents.
    let log = w.upstream.git(&["log", "--format=%an|%p|%s", "-1", "main"]);
    let (author, rest) = log.trim().split_once('|').unwrap();
    assert!(author != "Pat" && author != "Loom", "{log}");
    assert_eq!(rest.split_once('|').unwrap().0.split(' ').count(), 2, "a merge commit: {log}");
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

#[tokio::test]
async fn an_outage_parks_the_bead_without_an_attempt_and_the_work_finishes_once_it_is_back() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Survive an outage").await;
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "write_file", "path": "a.txt", "content": "b\n"})),
    );
    w.script.set_down(true);
    assert_eq!(w.gateway.probe().await, loom::gateway::Health::Down);
    w.settle().await;
    let parked = w.show(&bead).await;
    assert_eq!(
        (parked["status"].as_str(), parked["blocked_reason"].as_str(), parked["attempts"].as_i64()),
        (Some("blocked"), Some("gateway_unavailable"), Some(0)),
        "{parked}"
    );
    assert_eq!(parked["runs"][0]["outcome"], "gateway_unavailable");
    assert!(w.script.completions().is_empty(), "no call is made while the gateway is down");

    // The ticker leaves it parked while the gateway is still down...
    let ticker = loom::ticker::Ticker::new(
        w.app.pool.clone(),
        loom::beads::RetryPolicy::default(),
        w.health.clone(),
        loom::dispatch::Nudge::default(),
    );
    assert_eq!(ticker.resume_parked().await.unwrap().healed, 0);
    // ... and reopens it once the probe sees it back; the work then finishes.
    w.script.set_down(false);
    assert_eq!(w.gateway.probe().await, loom::gateway::Health::Healthy);
    // ... once its park's back-off has passed.
    assert_eq!(ticker.resume_parked().await.unwrap().healed, 0);
    let later = chrono::Utc::now() + chrono::Duration::minutes(1);
    assert_eq!(ticker.resume_parked_at(later).await.unwrap().healed, 1);
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Wrote b."})));
    w.settle().await;
    let done = w.show(&bead).await;
    assert_eq!((done["status"].as_str(), done["attempts"].as_i64()), (Some("closed"), Some(0)));
    assert_eq!(w.upstream.file("a.txt"), "b\n");
}

#[tokio::test]
async fn a_gateway_going_down_mid_run_parks_the_bead_at_its_next_call() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Half way").await;
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "write_file", "path": "a.txt", "content": "half\n"})),
    );
    // The second call finds the gateway answering 503 through every retry.
    w.script.push_for(&bead, Reply::status(503));
    w.script.push_for(&bead, Reply::status(503));
    w.script.push_for(&bead, Reply::status(503));
    w.settle().await;
    let parked = w.show(&bead).await;
    assert_eq!(parked["blocked_reason"], "gateway_unavailable", "{parked}");
    assert_eq!(parked["attempts"], 0);
    assert_eq!(w.health.get(), loom::gateway::Health::Down);
    // The parked worktree keeps the work done so far for the resumed run.
    let kept = w.data.path().join("worktrees/web").join(&bead).join("a.txt");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "half\n");
}

/// `kill -9` of the process working a bead, mid-call: the next owner of the project adopts
/// the run in the same worktree, and the work is finished, not lost and not done twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_is_taken_over_and_the_bead_finished() {
    use std::time::Duration;
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Outlive a crash").await;
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "write_file", "path": "a.txt", "content": "survived\n"})),
    );
    // The second call hangs: the process is killed while it waits.
    w.script.push_for(&bead, Reply::text("too late").delay(Duration::from_secs(120)));
    let mut server = w.serve_beside();
    for _ in 0..600 {
        if w.script.completions().len() >= 2 {
            break;
        }
        server.assert_running();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.script.completions().len(), 2, "the child works the bead:\n{}", server.log());
    server.kill_hard().await;

    // This process takes the project over once the dead owner's lease lapses (3 s).
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Survived."})));
    w.take_over(&bead).await;
    let done = w.show(&bead).await;
    assert_eq!(
        (done["status"].as_str(), done["attempts"].as_i64()),
        (Some("closed"), Some(0)),
        "{done}"
    );
    assert_eq!(done["runs"].as_array().unwrap().len(), 1, "the same run, resumed");
    assert_eq!(w.upstream.file("a.txt"), "survived\n", "the work done before the crash is kept");
    assert_eq!(w.executors.owned(), ["web"]);
}

#[tokio::test]
async fn an_agents_commands_find_the_machines_toolchain_without_loom_settings() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Check the toolchain").await;
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "run", "command": "cargo --version; echo HOME=$HOME"})),
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Checked."})));
    w.settle().await;
    let steps = w.steps(&bead).await;
    let out = steps[0]["result"].as_str().unwrap();
    assert!(out.contains("[exit code 0]") && out.contains("cargo 1."), "{out}");
    // HOME is the project's own directory under the data dir, not Loom's.
    let home = w.data.path().join("homes/web");
    assert!(out.contains(&format!("HOME={}", home.display())), "{out}");
}

#[tokio::test]
async fn discovered_work_is_filed_once_linked_to_its_origin_comments_go_on_the_bead_and_a_question_blocks_it()
 {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Audit the code").await;
    let found = json!({"action": "create_bead", "title": "Fix the flaky test", "priority": "P1", "labels": ["tests"]});
    w.script.push_for(&bead, Reply::action(found.clone()));
    // The same title again (case and spaces aside) is not filed twice.
    let again = json!({"action": "create_bead", "title": "  fix the FLAKY test "});
    w.script.push_for(&bead, Reply::action(again));
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "write_file", "path": "notes.md", "content": "audit\n"})),
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "commit", "message": "Audit notes"})));
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "comment", "body": "Halfway: notes written."})),
    );
    w.script.push_for(
        &bead,
        Reply::action(
            json!({"action": "block", "question": "Should the audit cover vendored code?"}),
        ),
    );
    w.settle().await;

    let steps = w.steps(&bead).await;
    let filed = steps[0]["result"].as_str().unwrap();
    assert!(filed.starts_with("filed web-"), "{filed}");
    let new_id = filed.trim_start_matches("filed ").split(':').next().unwrap().to_owned();
    assert!(
        steps[1]["result"].as_str().unwrap().contains(&format!("{new_id} already tracks")),
        "{:?}",
        steps[1]
    );
    let new = w.show(&new_id).await;
    assert_eq!((new["priority"].as_i64(), new["labels"][0].as_str()), (Some(1), Some("tests")));
    assert_eq!(new["dependencies"][0]["kind"], "discovered-from");
    assert_eq!(new["dependencies"][0]["id"], bead.as_str());
    assert!(steps[3]["result"].as_str().unwrap().starts_with("committed "), "{:?}", steps[3]);

    let asked = w.show(&bead).await;
    assert_eq!(
        (asked["status"].as_str(), asked["blocked_reason"].as_str()),
        (Some("blocked"), Some("needs_human"))
    );
    let bodies: Vec<_> = asked["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap().to_owned())
        .collect();
    assert!(bodies.iter().any(|b| b == "Halfway: notes written."), "{bodies:?}");
    assert!(
        bodies.iter().any(|b| b.contains("Should the audit cover vendored code?")),
        "{bodies:?}"
    );
    // The commit made mid-run is on the bead's branch, not yet on the project branch.
    assert_eq!(w.upstream.log().len(), 1);
    assert_eq!(w.upstream.log()[0].0, "Initial commit");
}

#[tokio::test]
async fn a_model_that_never_replies_with_an_action_costs_an_attempt_and_backs_off() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Talk, do nothing").await;
    w.script.fallback(Reply::text("Sure! I would be happy to help with that."));
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(shown["runs"][0]["outcome"], "invalid_replies");
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("open"), Some(1)));
    assert!(shown["not_before"].as_str().is_some(), "it backs off before the next attempt");
    assert_eq!(w.script.completions().len(), 3);
    // Each invalid reply was explained to the model before the next try.
    let last = &w.script.completions()[2]["messages"];
    let told = last
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["content"].as_str().is_some_and(|c| c.starts_with("Your reply could not be used"))
        })
        .count();
    assert_eq!(told, 2);
}

/// The service as a person runs it: dispatcher, executors and probe in the background. A
/// bead filed through the API is worked and closed with nothing driving it but the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_service_works_a_filed_bead_to_a_commit_on_its_own() {
    use crate::support::gateway::ScriptedGateway;
    use crate::support::work::{KEY, Upstream, gateway_config, serving};
    let script = ScriptedGateway::start().await;
    script.require_key(KEY);
    let app = serving(gateway_config(&script.url())).await;
    let upstream = Upstream::new(&[("README.md", "# Web\n")]);
    let body = json!({"id": "web", "name": "Web", "repo": upstream.path(), "branch": "main"});
    let res = app
        .call(reqwest::Method::POST, "/api/v1/projects", Some(&app.admin.clone()), Some(body))
        .await;
    assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
    let res =
        app.post("/api/v1/agents", json!({"name": "ada", "persona": "software-engineer"})).await;
    assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
    let bead = app.bead("web", "Add a usage section", json!({})).await;
    script.push_for(&bead, Reply::action(json!({"action": "edit_file", "path": "README.md", "old": "# Web\n", "new": "# Web\n\nRun `make`.\n"})));
    script.push_for(
        &bead,
        Reply::action(json!({"action": "done", "summary": "Added a usage section."})),
    );
    let mut shown = app.show(&bead).await;
    for _ in 0..300 {
        if shown["status"] == "closed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        shown = app.show(&bead).await;
    }
    assert_eq!(shown["status"], "closed", "{shown}");
    assert_eq!(upstream.file("README.md"), "# Web\n\nRun `make`.\n");
    assert_eq!(upstream.log()[0].0, "Added a usage section.");
}

/// A person closes the bead while the agent is finishing: the work is not merged, and the
/// run ends as the person's take-back said (cancelled), not as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bead_taken_back_mid_run_is_not_merged() {
    use std::time::Duration;
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Change of plans").await;
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "write_file", "path": "a.txt", "content": "b\n"})),
    );
    // The agent's `done` is answered only once the person has taken the bead back.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "done", "summary": "Changed."})).held(release.clone()),
    );
    let (script, base, token, id) =
        (w.script.clone(), w.app.base.clone(), w.app.member.clone(), bead.clone());
    let person = tokio::spawn(async move {
        for _ in 0..200 {
            if script.completions().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let res = reqwest::Client::new()
            .post(format!("{base}/api/v1/beads/{id}/close"))
            .bearer_auth(token)
            .json(&json!({"reason": "not needed after all"}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        release.notify_one();
    });
    w.settle().await;
    person.await.unwrap();
    let shown = w.show(&bead).await;
    assert_eq!(
        (shown["status"].as_str(), shown["close_reason"].as_str()),
        (Some("closed"), Some("not needed after all"))
    );
    assert_eq!(shown["runs"][0]["outcome"], "cancelled");
    assert_eq!(w.upstream.file("a.txt"), "a\n", "taken-back work is not merged");
    assert_eq!(w.upstream.log().len(), 1);
}

pub(crate) async fn count(w: &Work, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl;
    diesel::sql_query(sql).get_result::<N>(&mut w.app.pool.get().await.unwrap()).await.unwrap().n
}

/// More claims than the project runs at once: the ones waiting for a slot are held by the
/// executor with their leases renewed, not left to lapse (which would cost them attempts).
#[tokio::test]
async fn runs_waiting_for_a_slot_are_held_and_renewed_then_worked_in_turn() {
    let mut w = Work::new(&[("a.txt", "a\n")], 2, Limits::default()).await;
    let res = w
        .app
        .call(
            reqwest::Method::PATCH,
            "/api/v1/projects/web",
            Some(&w.app.admin.clone()),
            Some(json!({"max_parallel": 1})),
        )
        .await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    let beads = [w.bead("First").await, w.bead("Second").await];
    for b in &beads {
        w.script.push_for(b, Reply::action(json!({"action": "done", "summary": "Done."})));
    }
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 2);
    // Age both leases, as if the claims were made long ago.
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE beads SET lease_expires_at = now() + interval '2 seconds' WHERE status = 'in_progress'")
        .execute(&mut w.app.pool.get().await.unwrap())
        .await
        .unwrap();
    assert_eq!(w.executors.step().await.unwrap(), loom::executor::Step::Worked(1), "one slot");
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM runs WHERE outcome IS NULL AND worker IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM beads WHERE status = 'in_progress' AND lease_expires_at > now() + interval '30 seconds'").await,
        2,
        "the waiting run's lease was renewed too"
    );
    w.settle().await;
    for b in &beads {
        assert_eq!(w.show(b).await["status"], "closed");
    }
}

#[tokio::test]
async fn a_dispatcher_that_requires_an_executor_leaves_beads_ready_until_one_owns_the_project() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Wait for an executor").await;
    let config = loom::dispatch::DispatchConfig { require_executor: true, ..Default::default() };
    let strict = loom::dispatch::Dispatcher::new(
        w.app.pool.clone(),
        config,
        loom::dispatch::Nudge::default(),
    );
    assert_eq!(strict.run_until_idle().await.unwrap(), 0, "no executor owns the project yet");
    assert_eq!(w.show(&bead).await["status"], "open");
    w.executors.step().await.unwrap();
    assert_eq!(w.executors.owned(), ["web"]);
    assert_eq!(strict.run_until_idle().await.unwrap(), 1);
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Done."})));
    w.executors.run_until_idle().await.unwrap();
    assert_eq!(w.show(&bead).await["status"], "closed");
}

#[tokio::test]
async fn an_agents_md_linking_out_of_the_worktree_is_not_read_into_the_prompt() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    // The repository commits AGENTS.md as a link to a file outside it.
    let secret = w.data.path().join("outside-secret.txt");
    std::fs::write(&secret, "TOP-SECRET-VALUE").unwrap();
    let work = w.upstream.dir.path().join("work");
    std::os::unix::fs::symlink(&secret, work.join("AGENTS.md")).unwrap();
    crate::support::work::git(&work, &["add", "AGENTS.md"]);
    crate::support::work::git(&work, &["commit", "-q", "-m", "Link AGENTS.md"]);
    crate::support::work::git(&work, &["push", "-q", w.upstream.path().to_str().unwrap(), "main"]);
    let bead = w.bead("Read the rules").await;
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Done."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    let system = w.script.completions()[0]["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(!system.contains("TOP-SECRET-VALUE"), "a link out of the worktree was followed");
    assert!(!system.contains("The project's rules"));
}

/// A wrong model name is Loom's configuration, not the bead's fault: the bead parks without
/// cost and the status says what to fix; the probe's `/models` answering does not bring
/// the gateway back while completions are refused, so the bead waits instead of cycling; once
/// the model is served, the work goes on. (A bead whose own calls fail every time is
/// charged at its fifth park: see `gateway_parks`.)
#[tokio::test]
async fn a_misconfigured_model_parks_beads_without_cost_until_the_model_is_served() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Any work").await;
    w.script.fallback(Reply::status_with(404, "model 'scripted-model' not found"));
    let ticker = loom::ticker::Ticker::new(
        w.app.pool.clone(),
        loom::beads::RetryPolicy::default(),
        w.health.clone(),
        loom::dispatch::Nudge::default(),
    );
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(
        (shown["blocked_reason"].as_str(), shown["attempts"].as_i64()),
        (Some("gateway_unavailable"), Some(0)),
        "{shown}"
    );
    let report = w.health.report();
    assert_eq!(report.health, loom::gateway::Health::Down);
    assert!(report.reason.unwrap().contains("LOOM_GATEWAY_MODEL"));
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(w.gateway.probe().await, loom::gateway::Health::Down);
    assert_eq!(ticker.resume_parked_at(later).await.unwrap().healed, 0);

    w.script.fallback(Reply::action(json!({"action": "done", "summary": "Nothing to do."})));
    assert_eq!(w.gateway.probe().await, loom::gateway::Health::Healthy);
    assert_eq!(ticker.resume_parked_at(later).await.unwrap().healed, 1);
    w.settle().await;
    let done = w.show(&bead).await;
    assert_eq!((done["status"].as_str(), done["attempts"].as_i64()), (Some("closed"), Some(0)));
}

/// A clean shutdown mid-run whose turn outlasts the grace: the run is stopped where it is,
/// stays open, is handed back unworked (not counted as a crash), the project is free at
/// once, and the next owner finishes the bead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_hands_the_run_over_and_the_next_owner_finishes_it() {
    use std::time::Duration;
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Span a restart").await;
    w.script.push_for(&bead, Reply::text("slow").delay(Duration::from_secs(60)));
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 1);
    shut_down_mid_call(&w, Duration::from_millis(300)).await;
    assert_eq!(count(&w, "SELECT count(*) AS n FROM runs WHERE outcome IS NULL AND worker IS NULL AND resumes = 0").await, 1);
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM executor_leases").await,
        0,
        "the project is free"
    );
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "done", "summary": "Done after a restart."})),
    );
    w.executors.run_until_idle().await.unwrap();
    let done = w.show(&bead).await;
    assert_eq!(
        (done["status"].as_str(), done["attempts"].as_i64()),
        (Some("closed"), Some(0)),
        "{done}"
    );
}

/// A second executor of `w`'s project, shut down once the gateway has been asked its first
/// question (the run is mid-call), with `grace` for the turn to reach its checkpoint.
async fn shut_down_mid_call(w: &Work, grace: std::time::Duration) {
    let first = loom::executor::Executors::start(
        w.app.pool.clone(),
        w.gateway.clone(),
        w.data.path(),
        loom::beads::RetryPolicy::default(),
        loom::executor::ExecutorConfig { shutdown_grace: grace, ..Default::default() },
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(first.run(cancel.clone()));
    wait_for_calls(w, 1).await;
    assert_eq!(w.script.completions().len(), 1, "the first owner is mid-call");
    cancel.cancel();
    running.await.unwrap();
}

async fn wait_for_calls(w: &Work, n: usize) {
    for _ in 0..250 {
        if w.script.completions().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A clean shutdown mid-call, within the grace: the call's answer is used (the action it
/// asked for is done and recorded) before the run stops at that checkpoint, and the next
/// owner goes on from there instead of asking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_lets_the_turn_under_way_reach_its_checkpoint_before_handing_over() {
    use std::time::Duration;
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Finish the turn").await;
    let edit = json!({"path": "a.txt", "old": "a", "new": "b"});
    w.script.push_for(&bead, Reply::tool_call("edit_file", edit).delay(Duration::from_millis(800)));
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 1);
    shut_down_mid_call(&w, Duration::from_secs(30)).await;
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM run_steps WHERE ok").await,
        1,
        "the edit the answer asked for was made and recorded"
    );
    assert_eq!(
        count(
            &w,
            "SELECT count(*) AS n FROM runs WHERE outcome IS NULL AND worker IS NULL AND turns = 1"
        )
        .await,
        1,
        "the run is handed over after its first turn"
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "b it is."})));
    w.executors.run_until_idle().await.unwrap();
    assert_eq!(w.script.completions().len(), 2, "the first question was not asked again");
    let done = w.show(&bead).await;
    assert_eq!((done["status"].as_str(), done["attempts"].as_i64()), (Some("closed"), Some(0)));
    assert_eq!(w.upstream.file("a.txt"), "b\n");
}

/// The landing queue pushed a train and its replica died before recording it (the window
/// between push and record): the next step finds the work in origin's branch and records
/// it, closing the bead once, without pushing or checking it again.
#[tokio::test]
async fn a_landing_pushed_but_not_recorded_is_recorded_once_without_landing_twice() {
    use diesel_async::RunQueryDsl;
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Merge once").await;
    let edit = json!({"path": "a.txt", "old": "a", "new": "b"});
    w.script.push_for(&bead, Reply::tool_call("edit_file", edit));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "b."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    let head = w.upstream.git(&["rev-parse", "main"]);
    // As if the queue had died after the push: the bead still waits, nothing recorded.
    for q in [
        format!(
            "UPDATE beads SET status = 'landing', closed_at = NULL, close_reason = NULL, \
             landing_since = now(), landing_sha = (SELECT data->>'sha' FROM activity \
             WHERE kind = 'bead.landing' AND bead_id = '{bead}') WHERE id = '{bead}'"
        ),
        format!(
            "DELETE FROM activity WHERE kind IN ('git.merged', 'bead.closed') AND bead_id = '{bead}'"
        ),
        "UPDATE runs SET merged_sha = NULL".to_owned(),
    ] {
        diesel::sql_query(q).execute(&mut w.app.pool.get().await.unwrap()).await.unwrap();
    }
    w.executors.run_until_idle().await.unwrap();
    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "closed", "{shown}");
    assert_eq!(shown["close_reason"], "b.", "{shown}");
    assert_eq!(w.upstream.git(&["rev-parse", "main"]), head, "nothing was pushed again");
    let with_trailer =
        w.upstream.git(&["log", "--format=%B", "main"]).matches(&format!("Bead: {bead}")).count();
    assert_eq!(with_trailer, 1, "the bead's work is in the history once");
    let merged = w.app.get(&format!("/api/v1/activity?bead={bead}&kind=git.merged")).await;
    assert_eq!(merged.body["items"].as_array().map(Vec::len), Some(1), "{}", merged.body);
    let queue = w.app.get("/api/v1/projects/web/queue").await.body;
    assert_eq!(queue["recent"].as_array().map(Vec::len), Some(1), "checked once: {queue}");
}

/// A run stalled on something outside it (a model, a remote) is stopped at its deadline
/// and charged, instead of holding its bead with a renewed lease for ever.
#[tokio::test]
async fn a_run_past_its_deadline_is_stopped_and_charged() {
    let limits =
        Limits { max_duration: std::time::Duration::from_millis(300), ..Limits::default() };
    let mut w = Work::new(&[("a.txt", "a\n")], 1, limits).await;
    let bead = w.bead("Stall").await;
    w.script.push_for(&bead, Reply::text("late").delay(std::time::Duration::from_secs(5)));
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!(
        (shown["status"].as_str(), shown["attempts"].as_i64()),
        (Some("open"), Some(1)),
        "{shown}"
    );
    assert!(shown["runs"][0]["error"].as_str().unwrap().contains("took longer than"), "{shown}");
}

/// A run whose process died under it again and again is not adopted once more: the bead
/// itself may be what kills it. It fails, with the reason, and costs an attempt.
#[tokio::test]
async fn a_run_interrupted_too_often_is_failed_instead_of_resumed() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Crash the worker").await;
    assert_eq!(w.dispatcher.run_until_idle().await.unwrap(), 1);
    // As if two processes had died working it, and a third owned it last.
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "UPDATE runs SET resumes = 2, worker = gen_random_uuid() WHERE outcome IS NULL",
    )
    .execute(&mut w.app.pool.get().await.unwrap())
    .await
    .unwrap();
    w.executors.run_until_idle().await.unwrap();
    let shown = w.show(&bead).await;
    assert_eq!(
        (shown["status"].as_str(), shown["attempts"].as_i64()),
        (Some("open"), Some(1)),
        "{shown}"
    );
    assert!(shown["runs"][0]["error"].as_str().unwrap().contains("interrupted 3 times"), "{shown}");
    assert!(w.script.completions().is_empty(), "it was not worked again");
}

#[tokio::test]
async fn the_task_names_who_wrote_each_comment_on_the_bead() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Read the thread").await;
    let res = w
        .app
        .post(&format!("/api/v1/beads/{bead}/comments"), json!({"body": "Mind the API."}))
        .await;
    assert!(res.status.is_success(), "{:?}", res.body);
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Read."})));
    w.settle().await;
    let task = w.script.completions()[0]["messages"][1]["content"].as_str().unwrap().to_owned();
    assert!(task.contains("**member:** Mind the API."), "{task}");
}

#[tokio::test]
async fn a_bead_the_tracker_refuses_is_an_error_the_model_reads_and_nothing_is_filed() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("File badly").await;
    let too_long = "x".repeat(300);
    w.script.push_for(&bead, Reply::action(json!({"action": "create_bead", "title": too_long})));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Tried."})));
    w.settle().await;
    let steps = w.steps(&bead).await;
    assert_eq!(steps[0]["ok"], false, "{steps:?}");
    assert!(steps[0]["result"].as_str().unwrap().contains("title"), "{steps:?}");
    assert_eq!(count(&w, "SELECT count(*) AS n FROM beads").await, 1, "nothing was filed");
}
