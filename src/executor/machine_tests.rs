//! The action loop, turn by turn, without I/O.

use serde_json::json;

use super::*;
use crate::executor::history::message_size;
use crate::gateway::{Usage, wire::FunctionCall};

fn machine(limits: Limits) -> Machine {
    let mut m = Machine::new(limits);
    assert_eq!(
        m.step(Event::Start { system: "You are an engineer.".into(), task: "Fix it.".into() }),
        Effect::Ask
    );
    m
}

fn text(content: &str) -> Event {
    Event::Replied(Completion {
        content: content.into(),
        usage: Usage { prompt_tokens: 10, completion_tokens: 5 },
        ..Completion::default()
    })
}

fn json_reply(v: serde_json::Value) -> Event {
    text(&v.to_string())
}

fn native(calls: &[(&str, &str, serde_json::Value)]) -> Event {
    Event::Replied(Completion {
        tool_calls: calls
            .iter()
            .map(|(id, name, args)| ToolCall {
                id: (*id).into(),
                kind: "function".into(),
                function: FunctionCall { name: (*name).into(), arguments: args.to_string() },
            })
            .collect(),
        usage: Usage { prompt_tokens: 10, completion_tokens: 5 },
        ..Completion::default()
    })
}

fn ok(t: &str) -> Event {
    Event::Performed(ActionResult::ok(t))
}

fn read(path: &str) -> Action {
    Action::ReadFile { path: path.into(), start_line: None, end_line: None }
}

fn last(m: &Machine) -> &Message {
    m.messages().last().expect("a message")
}

#[test]
fn a_run_reads_a_file_writes_one_and_finishes_with_its_summary() {
    let mut m = machine(Limits::default());
    let reply = "<think>Look first.</think>\n```json\n{\"action\": \"read_file\", \"path\": \"src/lib.rs\"}\n```";
    assert_eq!(m.step(text(reply)), Effect::Perform(read("src/lib.rs")));
    assert_eq!(m.step(ok("fn main() {}")), Effect::Ask);
    assert_eq!(m.messages().len(), 4, "system, task, the reply, the result");
    assert_eq!(m.messages()[2].role, Role::Assistant);
    assert_eq!(last(&m).role, Role::User);
    assert!(last(&m).content.as_deref().unwrap_or("").contains("read_file → fn main() {}"));
    let write = json!({"action": "write_file", "path": "a.txt", "content": "hi"});
    assert!(matches!(m.step(json_reply(write)), Effect::Perform(Action::WriteFile { .. })));
    assert_eq!(m.step(ok("wrote a.txt")), Effect::Ask);
    assert_eq!(
        m.step(json_reply(json!({"action": "done", "summary": "Wrote a.txt."}))),
        Effect::Finish(Ending::Done { summary: "Wrote a.txt.".into() })
    );
    assert_eq!((m.turns(), m.tokens()), (3, 45));
}

#[test]
fn several_actions_in_one_reply_run_in_order_and_their_results_go_back_together() {
    let mut m = machine(Limits::default());
    let reply = json!({"actions": [
        {"action": "read_file", "path": "a"},
        {"action": "run", "command": "make test"},
    ]});
    assert_eq!(m.step(json_reply(reply)), Effect::Perform(read("a")));
    assert!(matches!(m.step(ok("A")), Effect::Perform(Action::Run { .. })));
    assert_eq!(m.step(Event::Performed(ActionResult::error("exit 2: 1 failed"))), Effect::Ask);
    let back = last(&m).content.clone().unwrap_or_default();
    assert!(back.contains("[1] read_file → A"), "{back}");
    assert!(back.contains("[2] run → error: exit 2: 1 failed"), "{back}");
}

#[test]
fn native_tool_calls_are_each_answered_under_their_own_id() {
    let mut m = machine(Limits::default());
    let reply = native(&[("c1", "read_file", json!({"path": "a"})), ("c2", "git_diff", json!({}))]);
    assert_eq!(m.step(reply), Effect::Perform(read("a")));
    assert_eq!(m.step(ok("A")), Effect::Perform(Action::GitDiff));
    assert_eq!(m.step(ok("no changes")), Effect::Ask);
    let answers: Vec<_> = m.messages()[3..]
        .iter()
        .map(|msg| (msg.role, msg.tool_call_id.clone(), msg.content.clone()))
        .collect();
    assert_eq!(
        answers,
        [
            (Role::Tool, Some("c1".into()), Some("A".into())),
            (
                Role::Tool,
                Some("c2".into()),
                Some("no changes\n\n[39 turns and about 999985 tokens left in this run.]".into())
            ),
        ]
    );
    assert!(m.messages()[2].content.is_none(), "a reply of tool calls only has no content");
}

#[test]
fn invalid_replies_are_explained_to_the_model_and_too_many_in_a_row_stop_the_run() {
    let mut m = machine(Limits::default());
    assert_eq!(m.step(text("I will now look around.")), Effect::Ask);
    assert!(last(&m).content.as_deref().unwrap_or("").starts_with("Your reply could not be used"));
    assert_eq!(m.step(json_reply(json!({"action": "fly"}))), Effect::Ask);
    // A valid reply resets the count.
    assert!(matches!(m.step(json_reply(json!({"action": "git_diff"}))), Effect::Perform(_)));
    assert_eq!(m.step(ok("")), Effect::Ask);
    for _ in 0..2 {
        assert_eq!(m.step(text("hmm")), Effect::Ask);
    }
    let Effect::Finish(Ending::Stopped { outcome, reason }) = m.step(text("hmm")) else {
        panic!("the third invalid reply in a row ends the run")
    };
    assert_eq!(outcome, RunOutcome::InvalidReplies);
    assert!(reason.contains("3 replies in a row"), "{reason}");
}

#[test]
fn an_invalid_native_call_is_answered_under_every_call_id() {
    let mut m = machine(Limits::default());
    let reply = native(&[("c1", "read_file", json!({})), ("c2", "nope", json!({}))]);
    assert_eq!(m.step(reply), Effect::Ask);
    let ids: Vec<_> = m.messages()[3..].iter().map(|msg| msg.tool_call_id.clone()).collect();
    assert_eq!(ids, [Some("c1".into()), Some("c2".into())]);
}

#[test]
fn the_same_action_with_the_same_result_again_and_again_is_a_loop() {
    let mut m = machine(Limits::default());
    let again = json!({"action": "read_file", "path": "a"});
    for _ in 0..3 {
        assert!(matches!(m.step(json_reply(again.clone())), Effect::Perform(_)));
        assert_eq!(m.step(ok("same")), Effect::Ask);
    }
    assert!(matches!(m.step(json_reply(again.clone())), Effect::Perform(_)));
    let Effect::Finish(Ending::Stopped { outcome, .. }) = m.step(ok("same")) else {
        panic!("the fourth identical read is a loop")
    };
    assert_eq!(outcome, RunOutcome::LoopDetected);

    // The same command with a different result each time (tests after edits) is work.
    let mut m = machine(Limits::default());
    let test = json!({"action": "run", "command": "make test"});
    for i in 0..6 {
        assert!(matches!(m.step(json_reply(test.clone())), Effect::Perform(_)));
        assert_eq!(m.step(ok(&format!("{i} failures"))), Effect::Ask);
    }
}

#[test]
fn turn_and_token_limits_end_the_run_with_their_own_outcomes() {
    let mut m = machine(Limits { max_turns: 2, ..Limits::default() });
    assert!(matches!(m.step(json_reply(json!({"action": "git_diff"}))), Effect::Perform(_)));
    assert_eq!(m.step(ok("a")), Effect::Ask);
    assert!(matches!(m.step(json_reply(json!({"action": "list_files"}))), Effect::Perform(_)));
    let Effect::Finish(Ending::Stopped { outcome, .. }) = m.step(ok("b")) else {
        panic!("two turns are all it gets")
    };
    assert_eq!(outcome, RunOutcome::TurnLimit);

    let mut m = machine(Limits { token_budget: 20, ..Limits::default() });
    assert!(matches!(m.step(json_reply(json!({"action": "git_diff"}))), Effect::Perform(_)));
    assert_eq!(m.step(ok("a")), Effect::Ask);
    let Effect::Finish(Ending::Stopped { outcome, reason }) =
        m.step(json_reply(json!({"action": "git_diff"})))
    else {
        panic!("30 tokens is over a budget of 20")
    };
    assert_eq!(outcome, RunOutcome::TokenBudget);
    assert!(reason.contains("30 tokens"), "{reason}");
}

#[test]
fn beads_filed_past_the_limit_are_refused_to_the_model_not_performed() {
    let mut m = machine(Limits { max_created_beads: 1, ..Limits::default() });
    let reply = json!({"actions": [
        {"action": "create_bead", "title": "one"},
        {"action": "create_bead", "title": "two"},
    ]});
    assert!(matches!(m.step(json_reply(reply)), Effect::Perform(Action::CreateBead { .. })));
    assert_eq!(m.step(ok("filed web-1")), Effect::Ask, "the second is refused, not performed");
    let back = last(&m).content.clone().unwrap_or_default();
    assert!(back.contains("[2] create_bead → error: not filed"), "{back}");
}

#[test]
fn block_asks_a_human_and_gateway_failures_end_the_run_by_kind() {
    let mut m = machine(Limits::default());
    let reply = json!({"action": "block", "question": "Which database?"});
    assert_eq!(
        m.step(json_reply(reply)),
        Effect::Finish(Ending::NeedsHuman { question: "Which database?".into() })
    );
    assert!(matches!(m.step(ok("late")), Effect::Finish(_)), "nothing runs after the end");

    let mut m = machine(Limits::default());
    let down = GatewayError::Unavailable("503: overloaded".into());
    assert_eq!(
        m.step(Event::GatewayFailed(down)),
        Effect::Finish(stopped(RunOutcome::GatewayUnavailable, "503: overloaded"))
    );
    // A gateway refusing Loom itself (its key, its model) parks the bead: no run could work.
    for status in [401, 403, 404] {
        let mut m = machine(Limits::default());
        let refused = GatewayError::Rejected { status, message: "no".into() };
        let Effect::Finish(Ending::Stopped { outcome, .. }) = m.step(Event::GatewayFailed(refused))
        else {
            panic!("a refusal ends the run")
        };
        assert_eq!(outcome, RunOutcome::GatewayUnavailable, "{status}");
    }
    let mut m = machine(Limits::default());
    let refused = GatewayError::Rejected { status: 400, message: "context too long".into() };
    let Effect::Finish(Ending::Stopped { outcome, .. }) = m.step(Event::GatewayFailed(refused))
    else {
        panic!("a refusal ends the run")
    };
    assert_eq!(outcome, RunOutcome::Failed);
}

#[test]
fn long_results_are_cut_and_old_ones_elided_while_the_task_stays() {
    let limits = Limits { max_result_chars: 400, max_context_chars: 2_000, ..Limits::default() };
    let mut m = machine(limits);
    assert!(matches!(
        m.step(json_reply(json!({"action": "read_file", "path": "big"}))),
        Effect::Perform(_)
    ));
    assert_eq!(m.step(ok(&"x".repeat(900))), Effect::Ask);
    let cut = last(&m).content.clone().unwrap_or_default();
    assert!(cut.contains("characters left out here …]\nxxx"), "{cut}");
    let result = cut.split("\n\n[").next().unwrap_or_default();
    assert!(result.chars().count() <= 400 + "[1] read_file → ".len(), "{cut}");
    for i in 0..20 {
        let path = format!("f{i}");
        assert!(matches!(
            m.step(json_reply(json!({"action": "read_file", "path": path}))),
            Effect::Perform(_)
        ));
        assert_eq!(m.step(ok(&format!("{i}{}", "y".repeat(300)))), Effect::Ask);
    }
    let total: usize = m.messages().iter().map(|x| x.content.as_ref().map_or(0, String::len)).sum();
    // Unelided it would hold about 7,500 characters; every old result is now a short note.
    assert!(total < 4_000, "the conversation stays near its limit: {total}");
    let task = m.messages()[1].content.clone().unwrap_or_default();
    assert!(task.starts_with("Fix it.\n\n## Earlier in this run\n\nTurns 1–"), "{task}");
    assert!(task.contains("- Looked at (latest last):\n  - read_file big\n"), "{task}");
    assert!(m.messages()[3].content.as_deref().unwrap_or("").contains("elided"));
    assert!(last(&m).content.as_deref().unwrap_or("").starts_with("[1] read_file → 19"));
}

#[test]
fn a_reply_with_too_many_actions_is_refused_and_missing_usage_is_estimated() {
    let mut m = machine(Limits { max_actions_per_reply: 2, ..Limits::default() });
    let many = json!({"actions": [
        {"action": "git_diff"}, {"action": "git_diff"}, {"action": "git_diff"},
    ]});
    assert_eq!(m.step(json_reply(many)), Effect::Ask);
    assert!(last(&m).content.as_deref().unwrap_or("").contains("at most 2"));

    // A gateway that reports no usage still spends the budget.
    let mut m = machine(Limits { token_budget: 50, ..Limits::default() });
    let silent = Completion { content: "x".repeat(400), ..Completion::default() };
    let Effect::Finish(Ending::Stopped { outcome, .. }) = m.step(Event::Replied(silent)) else {
        panic!("about 100 tokens is over a budget of 50")
    };
    assert_eq!(outcome, RunOutcome::TokenBudget);
}

#[test]
fn old_replies_that_wrote_whole_files_are_elided_too_keeping_their_calls() {
    let limits = Limits { max_context_chars: 3_000, ..Limits::default() };
    let mut m = machine(limits);
    for i in 0..6 {
        let id = format!("c{i}");
        let write = json!({"path": format!("f{i}"), "content": "z".repeat(1_000)});
        assert!(matches!(m.step(native(&[(&id, "write_file", write)])), Effect::Perform(_)));
        assert_eq!(m.step(ok("wrote")), Effect::Ask);
    }
    let total: usize = m.messages().iter().map(message_size).sum();
    assert!(total < 4_000, "the old calls' arguments were elided: {total}");
    let first_call = &m.messages()[2].tool_calls[0];
    assert_eq!(first_call.id, "c0", "the call keeps its id, so its result still matches");
    let args: serde_json::Value =
        serde_json::from_str(&first_call.function.arguments).expect("valid JSON");
    assert!(args["elided"].as_str().unwrap_or_default().contains("characters of arguments"));
}

#[test]
fn a_batch_stops_at_its_first_failure_and_a_done_after_it_is_not_performed() {
    let mut m = machine(Limits::default());
    let reply = json!({"actions": [
        {"action": "edit_file", "path": "a.py", "old": "x = 1", "new": "x = 2"},
        {"action": "run", "command": "pytest -q"},
        {"action": "done", "summary": "Fixed."},
    ]});
    assert!(matches!(m.step(json_reply(reply)), Effect::Perform(Action::EditFile { .. })));
    let missed = Event::Performed(ActionResult::error("old was not found in \"a.py\"."));
    assert_eq!(m.step(missed), Effect::Ask, "the run goes on: done was not performed");
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(told.contains("[1] edit_file → error: old was not found"), "{told}");
    assert!(told.contains("[2] run → skipped: not performed because edit_file before it failed"));
    assert!(
        told.contains("[3] done → skipped: done was not performed because edit_file"),
        "{told}"
    );

    // Natively, every call is answered in its place.
    let calls =
        [("c1", "run", json!({"command": "false"})), ("c2", "done", json!({"summary": "Done."}))];
    assert!(matches!(m.step(native(&calls)), Effect::Perform(Action::Run { .. })));
    assert_eq!(m.step(Event::Performed(ActionResult::error("[exit code 1]"))), Effect::Ask);
    let answers: Vec<_> = m.messages().iter().rev().take(2).collect();
    assert_eq!(answers[1].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(answers[0].tool_call_id.as_deref(), Some("c2"));
    assert!(answers[0].content.as_deref().unwrap_or("").starts_with("skipped: done was not"));
}

#[test]
fn done_or_block_before_other_actions_is_an_invalid_reply_and_nothing_is_performed() {
    let mut m = machine(Limits::default());
    let reply = json!({"actions": [
        {"action": "done", "summary": "Fixed."},
        {"action": "run", "command": "pytest -q"},
    ]});
    assert_eq!(m.step(json_reply(reply)), Effect::Ask);
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(told.contains("done ends the run, so it must be the last action"), "{told}");
    assert!(told.contains("nothing in this reply was performed"), "{told}");
    // Last after actions that all succeed, it finishes the run.
    let reply = json!({"actions": [{"action": "run", "command": "true"}, {"action": "done", "summary": "Ok."}]});
    assert!(matches!(m.step(json_reply(reply)), Effect::Perform(Action::Run { .. })));
    assert_eq!(m.step(ok("[exit code 0]")), Effect::Finish(Ending::Done { summary: "Ok.".into() }));
}

#[test]
fn every_turn_ends_with_what_is_left_and_the_plan_stays_in_view() {
    let mut m = machine(Limits { max_turns: 5, token_budget: 1_000, ..Limits::default() });
    let plan = json!({"action": "update_plan", "plan": ["[x] reproduce", "fix", "test"]});
    assert_eq!(m.step(json_reply(plan)), Effect::Ask, "the machine keeps the plan itself");
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(told.starts_with("[1] update_plan → Plan updated (3 steps)"), "{told}");
    assert!(told.contains("[4 turns and about 985 tokens left in this run.]"), "{told}");
    assert!(told.ends_with("[Your plan:\n1. [x] reproduce\n2. fix\n3. test]"), "{told}");
    m.step(json_reply(json!({"action": "git_diff"})));
    m.step(ok("no changes"));
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(
        told.contains(
            "[3 turns and about 970 tokens left in this run. Finish (done) or ask (block) soon.]"
        ),
        "{told}"
    );
    assert!(told.contains("2. fix"), "the plan is still there: {told}");
}

#[test]
fn a_long_run_under_a_small_window_stays_inside_it_with_stubs_that_name_their_paths() {
    let limits = Limits { max_context_chars: 20_000, max_turns: 60, ..Limits::default() };
    let mut m = machine(limits);
    for i in 0..30 {
        let (action, result) = match i % 3 {
            0 => {
                (json!({"action": "read_file", "path": format!("src/f{i}.rs")}), "r".repeat(3_000))
            }
            1 => (
                json!({"action": "edit_file", "path": format!("src/f{i}.rs"), "old": "a", "new": "b"}),
                format!(
                    "Edited \"src/f{i}.rs\". Line 3 changed; the file has 9 lines.\n{}",
                    "e".repeat(3_000)
                ),
            ),
            _ => (
                json!({"action": "run", "command": "cargo test"}),
                format!("{i}{}", "t".repeat(3_000)),
            ),
        };
        m.step(json_reply(action));
        assert_eq!(m.step(ok(&result)), Effect::Ask, "turn {i}");
        let size: usize = m.messages().iter().map(message_size).sum();
        assert!(size <= 20_000, "turn {i}: {size} characters");
    }
    let stubs: Vec<String> = m
        .messages()
        .iter()
        .filter_map(|x| x.content.clone())
        .filter(|c| c.starts_with("[elided"))
        .collect();
    assert!(!stubs.is_empty(), "the latest old results are stubs");
    assert!(stubs.iter().all(|s| s.contains(" src/f") || s.contains("run `cargo")), "{stubs:?}");
    // The oldest turns were folded into the summary under the task, which names them all.
    let task = m.messages()[1].content.clone().unwrap_or_default();
    assert!(task.contains("  - read_file src/f0.rs\n"), "{task}");
    assert!(
        task.contains("  - src/f1.rs; last: Edited \"src/f1.rs\". Line 3 changed"),
        "an edit's confirmation is kept: {task}"
    );
    assert!(task.contains("- Ran (latest last):\n  - run `cargo test`"), "{task}");
    let folded = m.messages().len() < 2 + 2 * 30 - 10;
    assert!(folded, "{} messages left of 62", m.messages().len());
}

#[test]
fn compaction_folds_whole_turns_so_every_native_result_still_answers_a_call() {
    let limits = Limits { max_context_chars: 12_000, max_turns: 100, ..Limits::default() };
    let mut m = machine(limits);
    for i in 0..40 {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        let calls = [
            (a.as_str(), "edit_file", json!({"path": "src/lib.rs", "old": "x", "new": "y"})),
            (b.as_str(), "run", json!({"command": "cargo test"})),
        ];
        assert!(matches!(m.step(native(&calls)), Effect::Perform(_)));
        let edit = match i {
            7 => Event::Performed(ActionResult::error("old was not found in \"src/lib.rs\".")),
            _ => ok(&format!("Edited \"src/lib.rs\" (edit {i}).\n{}", "e".repeat(1_500))),
        };
        let after = m.step(edit);
        if i != 7 {
            assert_eq!(
                after,
                Effect::Perform(Action::Run { command: "cargo test".into(), timeout_s: None })
            );
            assert_eq!(
                m.step(ok(&format!("{i}{}\n[exit code 0]", "t".repeat(1_500)))),
                Effect::Ask
            );
        }
        assert!(m.messages().iter().map(message_size).sum::<usize>() <= 12_000, "turn {i}");
        let mut calls = std::collections::HashSet::new();
        for msg in m.messages() {
            calls.extend(msg.tool_calls.iter().map(|c| c.id.clone()));
            if let Some(id) = &msg.tool_call_id {
                assert!(calls.contains(id), "turn {i}: result {id} answers no call before it");
            }
        }
        let roles: Vec<_> = m.messages().iter().map(|x| x.role).collect();
        assert_eq!(roles[..2], [Role::System, Role::User]);
        assert!(roles.len() == 2 || roles[2] == Role::Assistant, "turn {i}: {roles:?}");
    }
    let task = m.messages()[1].content.clone().unwrap_or_default();
    assert!(task.contains("compacted to save space"), "{task}");
    assert!(task.contains("  - src/lib.rs, "), "one line per changed file: {task}");
    assert_eq!(task.matches("  - src/lib.rs").count(), 1, "{task}");
    assert!(task.contains("- Failed:\n  - edit_file src/lib.rs (failed)"), "{task}");
    assert!(
        task.contains("- Ran (latest last):\n  - run `cargo test` (×"),
        "repeats counted: {task}"
    );
}

#[test]
fn one_reply_of_many_reads_is_cut_to_fit_the_window() {
    let mut m = machine(Limits { max_context_chars: 30_000, ..Limits::default() });
    let reads: Vec<_> =
        (0..20).map(|i| json!({"action": "read_file", "path": format!("f{i}")})).collect();
    m.step(json_reply(json!({"actions": reads})));
    for i in 0..19 {
        assert!(matches!(m.step(ok(&"z".repeat(10_000))), Effect::Perform(_)), "read {i}");
    }
    assert_eq!(m.step(ok(&"z".repeat(10_000))), Effect::Ask);
    let size: usize = m.messages().iter().map(message_size).sum();
    assert!(size <= 30_000, "{size} characters");
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(
        told.contains("[20] read_file → ") && told.contains("left out here"),
        "every read is there, each cut"
    );
}

#[test]
fn a_resumed_runs_summary_names_the_turns_it_folded() {
    let limits = Limits { max_context_chars: 8_000, max_turns: 100, ..Limits::default() };
    let mut m = Machine::resumed(limits, 5, 0);
    m.step(Event::Start { system: "You are an engineer.".into(), task: "Fix it.".into() });
    m.step(json_reply(json!({"action": "create_bead", "title": "Fix the parser"})));
    assert_eq!(m.step(ok(&format!("Filed web-ab12.\n{}", "f".repeat(1_500)))), Effect::Ask);
    m.step(json_reply(json!({"action": "update_plan", "plan": ["one", "two"]})));
    for i in 0..20 {
        m.step(json_reply(json!({"action": "read_file", "path": format!("f{i}")})));
        assert_eq!(m.step(ok(&format!("{i}{}", "r".repeat(1_500)))), Effect::Ask);
    }
    let task = m.messages()[1].content.clone().unwrap_or_default();
    assert!(task.contains("Turns 6–"), "the run went on from turn 6: {task}");
    assert!(
        task.contains("- Filed or commented:\n  - create_bead \"Fix the parser\": Filed web-ab12."),
        "what was filed is said with its id: {task}"
    );
    assert!(!task.contains("update_plan"), "the plan stays in view on its own: {task}");
    assert!(task.contains("  - read_file f0\n"), "{task}");
}

#[test]
fn a_refusal_of_the_tools_fails_the_run_whatever_its_status_rather_than_parking_it() {
    for status in [400, 404] {
        let mut m = machine(Limits::default());
        let refused = GatewayError::Rejected { status, message: "does not support tools".into() };
        let Effect::Finish(Ending::Stopped { outcome, .. }) = m.step(Event::GatewayFailed(refused))
        else {
            panic!("a refusal ends the run")
        };
        assert_eq!(outcome, RunOutcome::Failed, "{status}");
    }
}

#[test]
fn a_review_reads_and_decides_but_may_not_change_the_work_or_finish_as_a_work_run() {
    let mut m = machine(Limits::default()).offering(Toolset::Review);
    assert_eq!(m.step(json_reply(json!({"action": "read_file", "path": "a.rs"}))), {
        Effect::Perform(read("a.rs"))
    });
    assert_eq!(m.step(ok("fn a() {}")), Effect::Ask);
    // Writing and `done` are refused to a reviewer, which is told how it finishes.
    let write = json!({"action": "write_file", "path": "a.rs", "content": "x"});
    assert_eq!(m.step(json_reply(write)), Effect::Ask);
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(told.contains("write_file is not offered in a review"), "{told}");
    assert!(told.contains("Finish with approve"), "{told}");
    assert_eq!(m.step(json_reply(json!({"action": "done", "summary": "ok"}))), Effect::Ask);
    // A request for changes must say what to change.
    let empty = json!({"action": "request_changes", "body": "  "});
    assert_eq!(m.step(json_reply(empty)), Effect::Ask);
    assert!(last(&m).content.as_deref().unwrap_or("").contains("request_changes needs a body"));
    let asked = json!({"action": "request_changes", "body": "Test the empty case."});
    assert_eq!(
        m.step(json_reply(asked)),
        Effect::Finish(Ending::ChangesRequested { body: "Test the empty case.".into() })
    );

    let mut m = machine(Limits::default()).offering(Toolset::Review);
    let calls = [
        ("c1", "read_file", json!({"path": "a.rs"})),
        ("c2", "approve", json!({"summary": "Right."})),
    ];
    assert_eq!(m.step(native(&calls)), Effect::Perform(read("a.rs")));
    assert_eq!(
        m.step(ok("fn a() {}")),
        Effect::Finish(Ending::Approved { summary: "Right.".into() })
    );
}

#[test]
fn a_work_run_cannot_approve_its_own_work_and_a_decision_must_come_last() {
    let mut m = machine(Limits::default());
    assert_eq!(m.step(json_reply(json!({"action": "approve", "summary": "mine"}))), Effect::Ask);
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(told.contains("approve is for reviewers"), "{told}");

    let mut m = machine(Limits::default()).offering(Toolset::Review);
    let early = json!({"actions": [{"action": "approve", "summary": "ok"}, {"action": "read_file", "path": "a"}]});
    assert_eq!(m.step(json_reply(early)), Effect::Ask);
    let told = last(&m).content.clone().unwrap_or_default();
    assert!(told.contains("approve ends the run, so it must be the last action"), "{told}");
}
