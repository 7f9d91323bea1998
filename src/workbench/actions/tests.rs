use serde_json::{Value, json};

use super::spec::{BEAD_TYPES, SPECS, Ty};
use super::*;

fn parse(text: &str) -> Result<Vec<Action>, ParseError> {
    parse_reply(text, &[])
}

fn native(calls: &[(&str, &str)]) -> Result<Vec<Action>, ParseError> {
    let calls: Vec<(String, String)> =
        calls.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect();
    parse_reply("ignored when there are tool calls", &calls)
}

fn read(path: &str) -> Action {
    Action::ReadFile { path: path.into(), start_line: None, end_line: None }
}

fn error(result: Result<Vec<Action>, ParseError>) -> String {
    match result {
        Ok(actions) => panic!("expected a parse error, got {actions:?}"),
        Err(e) => e.message,
    }
}

#[test]
fn a_whole_message_of_json_is_one_action() {
    assert_eq!(
        parse(r#"{"action": "read_file", "path": "src/lib.rs"}"#),
        Ok(vec![read("src/lib.rs")])
    );
    assert_eq!(parse(r#"  {"action": "git_diff"}  "#), Ok(vec![Action::GitDiff]));
}

#[test]
fn an_actions_list_is_several_actions_in_order() {
    let reply = r#"{"actions": [
        {"action": "write_file", "path": "a.txt", "content": "hi\n"},
        {"action": "run", "command": "cat a.txt", "timeout_s": 5},
        {"action": "done", "summary": "wrote a.txt"}
    ]}"#;
    let actions = parse(reply).unwrap();
    assert_eq!(
        actions,
        vec![
            Action::WriteFile { path: "a.txt".into(), content: "hi\n".into() },
            Action::Run { command: "cat a.txt".into(), timeout_s: Some(5) },
            Action::Done { summary: "wrote a.txt".into() },
        ]
    );
}

#[test]
fn a_fenced_block_is_found_after_prose() {
    let reply = "I'll look at the README first.\n\n```json\n{\"action\": \"read_file\", \"path\": \"README.md\"}\n```\n";
    assert_eq!(parse(reply), Ok(vec![read("README.md")]));
    let bare = "Next:\n```\n{\"action\": \"list_files\", \"depth\": 1}\n```";
    assert_eq!(parse(bare), Ok(vec![Action::ListFiles { path: None, depth: Some(1) }]));
    let other_language_first =
        "```rust\nfn main() {}\n```\nthen\n```json\n{\"action\": \"git_diff\"}\n```";
    assert_eq!(parse(other_language_first), Ok(vec![Action::GitDiff]));
}

#[test]
fn think_blocks_are_dropped_before_the_json() {
    let reply = "<think>Maybe {\"action\": \"delete_file\", \"path\": \"x\"}? No.</think>\n{\"action\": \"read_file\", \"path\": \"x\"}";
    assert_eq!(parse(reply), Ok(vec![read("x")]));
    let only_closing = "the template opened it {not json</think>{\"action\": \"git_diff\"}";
    assert_eq!(parse(only_closing), Ok(vec![Action::GitDiff]));
    let unclosed = "<think>I should read it.\n{\"action\": \"read_file\", \"path\": \"x\"}";
    assert_eq!(parse(unclosed), Ok(vec![read("x")]));
    let twice = "<think>a</think>\n<think>b</think>{\"action\": \"git_diff\"}";
    assert_eq!(parse(twice), Ok(vec![Action::GitDiff]));
}

#[test]
fn think_tags_inside_an_action_are_content_not_thinking() {
    let reply = r#"<think>write it</think>{"action": "write_file", "path": "t.txt", "content": "a <think>b</think> c"}"#;
    assert_eq!(
        parse(reply),
        Ok(vec![Action::WriteFile {
            path: "t.txt".into(),
            content: "a <think>b</think> c".into()
        }])
    );
}

#[test]
fn json_embedded_in_prose_is_found_past_stray_braces() {
    let reply = "The function body `{` looks wrong, and fn f() {} too. So: {\"action\": \"search\", \"query\": \"fn f(\"} — that should find it.";
    assert_eq!(
        parse(reply),
        Ok(vec![Action::Search {
            query: "fn f(".into(),
            path: None,
            regex: None,
            glob: None,
            files_only: None
        }])
    );
    let braces_in_strings = r#"Here: {"action": "write_file", "path": "a.rs", "content": "fn main() { println!(\"}\"); }"} done"#;
    assert_eq!(
        parse(braces_in_strings),
        Ok(vec![Action::WriteFile {
            path: "a.rs".into(),
            content: "fn main() { println!(\"}\"); }".into()
        }])
    );
}

#[test]
fn native_tool_calls_win_and_empty_arguments_mean_none() {
    let actions =
        native(&[("read_file", r#"{"path": "a.rs"}"#), ("git_diff", ""), ("list_files", "  ")]);
    assert_eq!(
        actions,
        Ok(vec![read("a.rs"), Action::GitDiff, Action::ListFiles { path: None, depth: None }])
    );
    let bad = error(native(&[("git_diff", ""), ("read_file", "{}")]));
    assert!(bad.starts_with("Tool call 2: read_file is missing"), "{bad}");
    assert!(bad.contains("\"path\""), "{bad}");
    let twice_encoded = native(&[("read_file", r#""{\"path\": \"a.rs\"}""#)]);
    assert_eq!(twice_encoded, Ok(vec![read("a.rs")]));
    let not_json = error(native(&[("read_file", "{path: a}")]));
    assert!(not_json.contains("not valid JSON"), "{not_json}");
}

#[test]
fn the_tool_call_shape_written_as_text_is_accepted() {
    let reply = r#"{"name": "read_file", "arguments": {"path": "a.rs"}}"#;
    assert_eq!(parse(reply), Ok(vec![read("a.rs")]));
    let nested = r#"{"action": "read_file", "arguments": {"path": "a.rs"}}"#;
    assert_eq!(parse(nested), Ok(vec![read("a.rs")]));
}

#[test]
fn an_unknown_action_is_named_with_the_valid_ones() {
    let e = error(parse(r#"{"action": "open_file", "path": "a"}"#));
    assert!(e.contains("Unknown action \"open_file\""), "{e}");
    for spec in SPECS {
        assert!(e.contains(spec.name), "{e} should list {}", spec.name);
    }
    assert!(e.contains(r#"{"action": "read_file", "path": "README.md"}"#), "{e}");
}

#[test]
fn a_missing_field_is_named_with_the_actions_arguments() {
    let e = error(parse(r#"{"action": "read_file", "file": "a.rs"}"#));
    assert!(e.starts_with("read_file has no argument \"file\" and is missing \"path\""), "{e}");
    assert!(e.contains(r#"{"path": string, "start_line"?: integer, "end_line"?: integer}"#), "{e}");
    let in_list = error(parse(
        r#"{"actions": [{"action": "git_diff"}, {"action": "edit_file", "path": "a", "old": "x"}]}"#,
    ));
    assert!(
        in_list.starts_with("actions[1]: edit_file is missing the argument \"new\""),
        "{in_list}"
    );
    let no_name = error(parse(r#"{"path": "a.rs"}"#));
    assert!(no_name.contains("no \"action\" field"), "{no_name}");
}

#[test]
fn an_ill_typed_field_is_named_with_its_type() {
    let e = error(parse(r#"{"action": "run", "command": ["cargo", "test"]}"#));
    assert!(e.contains("\"command\" of run must be a string, not a list"), "{e}");
    let e = error(parse(r#"{"action": "list_files", "depth": -1}"#));
    assert!(e.contains("must be a non-negative integer"), "{e}");
    let e = error(parse(r#"{"action": "create_bead", "title": "t", "priority": 9}"#));
    assert!(e.contains("priority is 0-4"), "{e}");
    let e = error(parse(r#"{"action": "create_bead", "title": "t", "type": "story"}"#));
    assert!(e.contains("story") && e.contains("decision"), "{e}");
}

#[test]
fn integers_written_as_strings_and_nulls_for_optional_fields_are_accepted() {
    let reply = r#"{"action": "run", "command": "make", "timeout_s": "30"}"#;
    assert_eq!(parse(reply), Ok(vec![Action::Run { command: "make".into(), timeout_s: Some(30) }]));
    let reply = r#"{"action": "list_files", "path": null, "depth": null}"#;
    assert_eq!(parse(reply), Ok(vec![Action::ListFiles { path: None, depth: None }]));
    let reply = r#"{"action": "create_bead", "title": "Flaky test", "priority": "P1", "type": "bug", "labels": ["ci"]}"#;
    assert_eq!(
        parse(reply),
        Ok(vec![Action::CreateBead {
            title: "Flaky test".into(),
            description: None,
            priority: Some(Priority::new(1).unwrap()),
            bead_type: Some(BeadType::Bug),
            labels: Some(vec!["ci".into()]),
        }])
    );
}

#[test]
fn a_reply_without_json_says_what_a_valid_reply_looks_like() {
    let e = error(parse("I will now read the file."));
    assert!(e.contains("no JSON action"), "{e}");
    assert!(e.contains(r#"{"actions": ["#), "{e}");
    assert!(error(parse("<think>hmm</think>  ")).contains("empty"));
    let cut_off = error(parse(r#"{"action": "write_file", "path": "a", "content": "lots of"#));
    assert!(cut_off.contains("never closed"), "{cut_off}");
    let invalid = error(parse("```json\n{\"action\": \"read_file\", \"path\": 'a'}\n```"));
    assert!(invalid.contains("not valid JSON") && invalid.contains("line 1"), "{invalid}");
    assert!(error(parse(r#"{"actions": []}"#)).contains("empty"));
}

#[test]
fn fingerprints_ignore_key_order_and_differ_with_arguments() {
    let a = parse(r#"{"action": "edit_file", "path": "a", "old": "x", "new": "y"}"#).unwrap();
    let b = parse(r#"{"new": "y", "old": "x", "path": "a", "action": "edit_file"}"#).unwrap();
    let c = parse(r#"{"action": "edit_file", "path": "a", "old": "x", "new": "z"}"#).unwrap();
    assert_eq!(a[0].fingerprint(), b[0].fingerprint());
    assert_ne!(a[0].fingerprint(), c[0].fingerprint());
    assert!(a[0].fingerprint().starts_with("edit_file:"));
    let explicit_null = parse(r#"{"action": "list_files", "depth": null}"#).unwrap();
    assert_eq!(
        explicit_null[0].fingerprint(),
        Action::ListFiles { path: None, depth: None }.fingerprint()
    );
}

/// A value of the argument's type, for the round trip below.
fn sample(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!("x"),
        Ty::Bool => json!(true),
        Ty::Int => json!(3),
        Ty::Strings => json!(["a", "b"]),
        Ty::Edits => json!([{"old": "a", "new": "b", "replace_all": true}]),
        Ty::Priority => json!(1),
        Ty::BeadType => json!("chore"),
    }
}

#[test]
fn the_spec_table_and_the_action_type_agree_on_every_name_and_argument() {
    for spec in SPECS {
        let mut full = serde_json::Map::new();
        full.insert("action".into(), json!(spec.name));
        for arg in spec.args {
            full.insert(arg.name.into(), sample(arg.ty));
        }
        let actions = parse_reply(&Value::Object(full.clone()).to_string(), &[]).unwrap();
        assert_eq!(actions[0].name(), spec.name);
        // Serialising gives back every argument the table names, so none is silently dropped.
        assert_eq!(serde_json::to_value(&actions[0]).unwrap(), Value::Object(full));
    }
}

#[test]
fn tool_specs_describe_every_action_with_its_required_arguments() {
    let tools = tool_specs(Toolset::Work);
    let tools = tools.as_array().unwrap();
    assert_eq!(tools.len(), SPECS.len() - 2, "all but a review's decisions");
    let read = tools.iter().find(|t| t["function"]["name"] == "read_file").unwrap();
    assert_eq!(read["type"], "function");
    assert_eq!(read["function"]["parameters"]["required"], json!(["path"]));
    assert_eq!(read["function"]["parameters"]["properties"]["start_line"]["type"], "integer");
    let diff = tools.iter().find(|t| t["function"]["name"] == "git_diff").unwrap();
    assert_eq!(diff["function"]["parameters"]["properties"], json!({}));
}

#[test]
fn the_vocabulary_names_every_action_of_its_set_and_the_reply_format() {
    for set in [Toolset::Work, Toolset::Review] {
        let text = vocabulary_text(ReplyMode::Text, set);
        for spec in SPECS {
            let named = text.contains(&format!("- {} {{", spec.name));
            assert_eq!(named, set.offers(spec.name), "{set:?}: {}", spec.name);
        }
        assert!(text.contains(r#"{"actions": ["#));
        assert!(text.contains("<think>"));
        assert!(text.contains(set.finish()), "{set:?}");
    }
}

#[test]
fn a_review_reads_comments_and_decides_and_a_work_run_cannot_decide() {
    let names = |set| -> Vec<String> {
        let tools = tool_specs(set);
        let tools = tools.as_array().unwrap();
        tools.iter().map(|t| t["function"]["name"].as_str().unwrap().to_owned()).collect()
    };
    let review = names(Toolset::Review);
    assert_eq!(
        review,
        [
            "list_files",
            "read_file",
            "search",
            "find_files",
            "comment",
            "update_plan",
            "approve",
            "request_changes"
        ]
    );
    let work = names(Toolset::Work);
    assert!(!work.iter().any(|n| n == "approve" || n == "request_changes"), "{work:?}");
    assert!(work.iter().any(|n| n == "done"));
    let native = vocabulary_text(ReplyMode::Native, Toolset::Review);
    assert!(native.contains("approve, request_changes") && !native.contains("write_file"));
    let approve = parse_reply("", &[("approve".into(), r#"{"summary": "ok"}"#.into())]);
    assert_eq!(approve.unwrap(), [Action::Approve { summary: "ok".into() }]);
}

#[test]
fn the_bead_types_offered_are_the_ones_beads_accept() {
    // Exhaustive: a new bead type stops this compiling until the list offers it too.
    let _every_variant = |t: BeadType| match t {
        BeadType::Task
        | BeadType::Bug
        | BeadType::Feature
        | BeadType::Epic
        | BeadType::Chore
        | BeadType::Decision => (),
    };
    assert_eq!(BEAD_TYPES.len(), 6);
    for name in BEAD_TYPES {
        let parsed: BeadType = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), json!(name));
    }
}

#[test]
fn unknown_arguments_are_refused_by_name_with_the_accepted_ones() {
    let message =
        error(parse(r#"{"action": "read_file", "path": "a.rs", "offset": 10, "limit": 5}"#));
    assert!(message.starts_with("read_file has no arguments \"limit\", \"offset\"."), "{message}");
    assert!(message.contains("read_file takes {\"path\": string, \"start_line\"?: integer"));
    let native = error(native(&[(
        "edit_file",
        r#"{"path": "a", "old": "x", "new": "y", "replace_al": true}"#,
    )]));
    assert!(native.starts_with("edit_file has no argument \"replace_al\"."), "{native}");
    // Booleans written as strings are read as booleans; other strings are not.
    let search = parse(r#"{"action": "search", "query": "x", "regex": "true"}"#).unwrap();
    assert!(matches!(&search[0], Action::Search { regex: Some(true), .. }));
    let message = error(parse(r#"{"action": "search", "query": "x", "files_only": "yes"}"#));
    assert!(message.contains("\"files_only\" of search must be true or false"), "{message}");
}

#[test]
fn raw_newlines_and_tabs_inside_strings_are_repaired() {
    let reply =
        "{\"action\": \"write_file\", \"path\": \"a.py\", \"content\": \"def f():\n\treturn 1\n\"}";
    let actions = parse(reply).unwrap();
    assert_eq!(
        actions,
        [Action::WriteFile { path: "a.py".into(), content: "def f():\n\treturn 1\n".into() }]
    );
    let fenced = format!("Writing it.\n```json\n{reply}\n```");
    assert_eq!(parse(&fenced).unwrap(), actions);
}

#[test]
fn every_action_object_in_a_reply_is_taken_in_order() {
    let reply = "First I read it: {\"action\": \"read_file\", \"path\": \"a\"}\nthen list:\n\
                 ```json\n{\"action\": \"list_files\"}\n```";
    assert_eq!(parse(reply).unwrap(), [read("a"), Action::ListFiles { path: None, depth: None }]);
}

#[test]
fn an_example_or_a_files_json_is_never_taken_for_an_action() {
    let reply = "The package.json holds:\n```json\n{\"name\": \"web\", \"version\": \"1.0.0\"}\n```\n\
                 so I run its tests:\n```json\n{\"action\": \"run\", \"command\": \"npm test\"}\n```";
    assert_eq!(
        parse(reply).unwrap(),
        [Action::Run { command: "npm test".into(), timeout_s: None }]
    );
    // Shown alone, it is not performed: the model is told what a reply must hold.
    let shown =
        error(parse("It holds {\"name\": \"web\", \"scripts\": {\"test\": \"jest\"}} now."));
    assert!(shown.contains("Unknown action \"web\""), "{shown}");
    // The tool-call shape naming a real action is one.
    let call = "{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}";
    assert_eq!(parse(&format!("Calling: {call}")).unwrap(), [read("a")]);
}
