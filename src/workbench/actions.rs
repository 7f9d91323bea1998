//! The action vocabulary (DESIGN.md, "Executors and the action loop"): the typed actions, how a
//! model's reply becomes them, and the descriptions of them that the model is given.

mod extract;
mod spec;
#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::beads::{BeadType, Priority};
use extract::NotFound;
use spec::{Spec, Ty};
pub use spec::{tool_specs, vocabulary_text};

/// One thing an agent asks to do. Serialised as `{"action": "<name>", ...arguments}`; absent
/// optional arguments are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    ListFiles {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        depth: Option<usize>,
    },
    ReadFile {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_line: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end_line: Option<usize>,
    },
    Search {
        query: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        regex: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        glob: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        files_only: Option<bool>,
    },
    FindFiles {
        pattern: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    WriteFile {
        path: String,
        content: String,
    },
    EditFile {
        path: String,
        old: String,
        new: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replace_all: Option<bool>,
    },
    MultiEdit {
        path: String,
        edits: Vec<Edit>,
    },
    InsertLines {
        path: String,
        after_line: usize,
        text: String,
    },
    DeleteFile {
        path: String,
    },
    Run {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    GitDiff,
    Commit {
        message: String,
    },
    CreateBead {
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<Priority>,
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        bead_type: Option<BeadType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<String>>,
    },
    Comment {
        body: String,
    },
    UpdatePlan {
        plan: Vec<String>,
    },
    Done {
        summary: String,
    },
    Block {
        question: String,
    },
    Approve {
        summary: String,
    },
    RequestChanges {
        body: String,
    },
}

/// One replacement of a `multi_edit` (and what an `edit_file` is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    pub old: String,
    pub new: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_all: Option<bool>,
}

impl Action {
    /// The action's name as the model writes it (`read_file`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::ListFiles { .. } => "list_files",
            Action::ReadFile { .. } => "read_file",
            Action::Search { .. } => "search",
            Action::FindFiles { .. } => "find_files",
            Action::WriteFile { .. } => "write_file",
            Action::EditFile { .. } => "edit_file",
            Action::MultiEdit { .. } => "multi_edit",
            Action::InsertLines { .. } => "insert_lines",
            Action::DeleteFile { .. } => "delete_file",
            Action::Run { .. } => "run",
            Action::GitDiff => "git_diff",
            Action::Commit { .. } => "commit",
            Action::CreateBead { .. } => "create_bead",
            Action::Comment { .. } => "comment",
            Action::UpdatePlan { .. } => "update_plan",
            Action::Done { .. } => "done",
            Action::Block { .. } => "block",
            Action::Approve { .. } => "approve",
            Action::RequestChanges { .. } => "request_changes",
        }
    }

    /// The action in a few words, naming what it is on (`read_file src/lib.rs from line
    /// 200`, ``run `cargo test` ``): how an elided result is remembered.
    pub fn label(&self) -> String {
        let cut = |s: &str| {
            let line = s.lines().next().unwrap_or_default();
            match line.char_indices().nth(80) {
                Some((i, _)) => format!("{}…", &line[..i]),
                None if line.len() < s.len() => format!("{line}…"),
                None => line.to_owned(),
            }
        };
        let name = self.name();
        match self {
            Action::ReadFile { path, start_line: Some(from), .. } => {
                format!("{name} {path} from line {from}")
            }
            Action::ReadFile { path, .. }
            | Action::WriteFile { path, .. }
            | Action::EditFile { path, .. }
            | Action::MultiEdit { path, .. }
            | Action::InsertLines { path, .. }
            | Action::DeleteFile { path } => format!("{name} {path}"),
            Action::ListFiles { path, .. } => format!("{name} {}", path.as_deref().unwrap_or(".")),
            Action::Search { query, path, .. } => {
                format!("{name} {:?} in {}", cut(query), path.as_deref().unwrap_or("."))
            }
            Action::FindFiles { pattern, .. } => format!("{name} {pattern:?}"),
            Action::Run { command, .. } => format!("{name} `{}`", cut(command)),
            Action::Commit { message } => format!("{name} {:?}", cut(message)),
            Action::CreateBead { title, .. } => format!("{name} {:?}", cut(title)),
            _ => name.to_owned(),
        }
    }

    /// Whether the action changes files: its confirmation is kept when old results are elided,
    /// so the model still knows what it changed.
    pub fn changes_files(&self) -> bool {
        matches!(
            self,
            Action::WriteFile { .. }
                | Action::EditFile { .. }
                | Action::MultiEdit { .. }
                | Action::InsertLines { .. }
                | Action::DeleteFile { .. }
                | Action::Commit { .. }
        )
    }

    /// A short string that is equal for two actions exactly when they have the same name and
    /// the same arguments (whatever order the model wrote them in): `read_file:<16 hex>`. Stable
    /// across processes and versions, so it can be stored and compared to spot a loop.
    pub fn fingerprint(&self) -> String {
        let mut canonical = String::new();
        // Serialising an enum of strings, numbers and lists cannot fail.
        if let Ok(value) = serde_json::to_value(self) {
            write_canonical(&value, &mut canonical);
        }
        let digest = Sha256::digest(canonical.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", self.name())
    }
}

/// JSON with object keys sorted at every level (serde_json's map order depends on a feature
/// some other crate may turn on).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The actions a conversation is offered: a run working on a bead (and a chat), or a run
/// reviewing the work of another agent, which reads, comments and decides but changes
/// nothing. The model is offered and told of its set only; an action outside it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Toolset {
    #[default]
    Work,
    Review,
}

/// A review's actions: reading the work, commenting on it, deciding.
const REVIEW_ACTIONS: [&str; 8] = [
    "list_files",
    "read_file",
    "search",
    "find_files",
    "comment",
    "update_plan",
    "approve",
    "request_changes",
];

impl Toolset {
    pub fn offers(self, name: &str) -> bool {
        match self {
            Toolset::Work => !matches!(name, "approve" | "request_changes"),
            Toolset::Review => REVIEW_ACTIONS.contains(&name),
        }
    }

    /// Whether `action` ends a conversation (it must be the last of its reply).
    pub fn ends(action: &Action) -> bool {
        matches!(
            action,
            Action::Done { .. }
                | Action::Block { .. }
                | Action::Approve { .. }
                | Action::RequestChanges { .. }
        )
    }

    /// How a conversation of this set finishes, in the model's words.
    pub fn finish(self) -> &'static str {
        match self {
            Toolset::Work => "Finish with done, or with block when you need a person.",
            Toolset::Review => {
                "Finish with approve, or with request_changes when the work must change."
            }
        }
    }

    /// The reminder at the end of a run's last turns.
    pub fn hurry(self) -> &'static str {
        match self {
            Toolset::Work => "Finish (done) or ask (block) soon.",
            Toolset::Review => "Decide (approve or request_changes) soon.",
        }
    }

    /// Why `name` is refused in this set, for the model.
    pub fn refusal(self, name: &str) -> String {
        match self {
            Toolset::Work => {
                format!("{name} is for reviewers; this run works on the bead. {}", self.finish())
            }
            Toolset::Review => format!(
                "{name} is not offered in a review: you read the work and judge it, you do not \
                 change it. {}",
                self.finish()
            ),
        }
    }
}

/// How a model's replies carry actions: as native tool calls (the tools are sent with every
/// request), or as JSON written in the text, for gateways and models without tool calling.
/// Runs and chats alike prompt, offer and parse by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    Native,
    Text,
}

/// Which reply mode to use (`LOOM_GATEWAY_TOOLS`): `auto` offers native tools until the
/// gateway refuses them (a model or server without tool calling), then JSON text for the rest
/// of the process; `native` and `text` fix the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ToolsSetting {
    #[default]
    Auto,
    Native,
    Text,
}

impl ToolsSetting {
    /// The mode to reply in, given whether the gateway was found to refuse tools.
    pub fn mode(self, gateway_refuses_tools: bool) -> ReplyMode {
        match self {
            ToolsSetting::Auto if gateway_refuses_tools => ReplyMode::Text,
            ToolsSetting::Auto | ToolsSetting::Native => ReplyMode::Native,
            ToolsSetting::Text => ReplyMode::Text,
        }
    }

    /// Whether a refusal of the tools falls back to JSON text.
    pub fn falls_back(self) -> bool {
        self == ToolsSetting::Auto
    }
}

/// A reply that holds no valid action. The message is written for the model, which gets it
/// back: what was wrong and what a valid reply looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
}

const FORMAT_HINT: &str = "Reply with one JSON object, either one action such as \
     {\"action\": \"read_file\", \"path\": \"README.md\"} or several as \
     {\"actions\": [{\"action\": \"list_files\"}, {\"action\": \"read_file\", \"path\": \"README.md\"}]}.";

/// What an invalid reply is told to do when tools are offered natively.
const NATIVE_HINT: &str = "Call one of the tools you are offered (each is one action; several \
     calls in one reply are performed in order), and finish with done, or block to ask a person.";

impl ParseError {
    /// The same error, its advice written for a model that calls tools natively.
    pub fn for_native_tools(self) -> ParseError {
        let message = match self.message.strip_suffix(FORMAT_HINT) {
            Some(problem) => format!("{problem}{NATIVE_HINT}"),
            None => self.message,
        };
        ParseError { message }
    }

    fn format(problem: impl std::fmt::Display) -> Self {
        ParseError { message: format!("{problem} {FORMAT_HINT}") }
    }

    fn arguments(at: &str, spec: &Spec, problem: impl std::fmt::Display) -> Self {
        let message = format!(
            "{at}{problem}. {name} takes {usage}, e.g. {{\"action\": \"{name}\"{example}}}.",
            name = spec.name,
            usage = spec.usage(),
            example = spec.example(),
        );
        ParseError { message }
    }
}

/// The actions in a model's reply. `native` holds the reply's native tool calls as (function
/// name, arguments JSON); when there are any they are the reply, and the text is ignored.
pub fn parse_reply(content: &str, native: &[(String, String)]) -> Result<Vec<Action>, ParseError> {
    if !native.is_empty() {
        let many = native.len() > 1;
        return native
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                let at = if many { format!("Tool call {}: ", i + 1) } else { String::new() };
                from_native(&at, name, args)
            })
            .collect();
    }
    let text = extract::strip_think(content);
    let values = extract::find_actions(text, &|name| spec::spec(&normal_name(name)).is_some())
        .map_err(|e| match e {
            NotFound::Empty => ParseError::format("Your reply was empty."),
            NotFound::NoJson => ParseError::format("Your reply contains no JSON action."),
            NotFound::Invalid { fenced: true, error } => ParseError::format(format!(
                "The code block in your reply is not valid JSON: {error}."
            )),
            NotFound::Invalid { fenced: false, error } => {
                ParseError::format(format!("Your reply's JSON is not valid: {error}."))
            }
            NotFound::Unclosed => ParseError::format(
                "Your reply's JSON object is never closed; the reply may have been cut off. Send \
             less in one reply (a large file can be written in parts with write_file, then \
             edit_file).",
            ),
        })?;
    let mut items = Vec::new();
    for value in values {
        match value {
            Value::Array(list) => items.extend(list),
            Value::Object(mut map) => match map.remove("actions") {
                Some(Value::Array(list)) => items.extend(list),
                Some(_) => {
                    return Err(ParseError::format("\"actions\" must be a list of actions."));
                }
                None => items.push(Value::Object(map)),
            },
            _ => return Err(ParseError::format("Your reply's JSON is not an action object.")),
        }
    }
    from_items(items)
}

/// An action's name as the model may write it (`Read-File`), as the table has it.
fn normal_name(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['-', ' '], "_")
}

fn from_native(at: &str, name: &str, arguments: &str) -> Result<Action, ParseError> {
    let arguments = if arguments.trim().is_empty() { "{}" } else { arguments };
    let parsed = serde_json::from_str::<Value>(arguments);
    // Some gateways encode the arguments twice, as a JSON string holding the object.
    let parsed = match parsed {
        Ok(Value::String(inner)) => serde_json::from_str::<Value>(&inner),
        other => other,
    };
    let problem = match parsed {
        Ok(Value::Object(mut map)) => {
            map.insert("action".into(), Value::from(name));
            return from_object(at, map);
        }
        Ok(_) => "must be a JSON object".to_string(),
        Err(e) => format!("are not valid JSON ({e})"),
    };
    Err(ParseError {
        message: format!(
            "{at}The arguments of {name} {problem}; send them as one object, like \
             {{\"path\": \"src/main.rs\"}}."
        ),
    })
}

fn from_items(items: Vec<Value>) -> Result<Vec<Action>, ParseError> {
    if items.is_empty() {
        return Err(ParseError::format("Your list of actions is empty."));
    }
    let many = items.len() > 1;
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = if many { format!("actions[{i}]: ") } else { String::new() };
            match item {
                Value::Object(map) => from_object(&at, map),
                _ => Err(ParseError::format(format!("{at}each action must be a JSON object."))),
            }
        })
        .collect()
}

/// One action object, checked against the spec table so that every mistake is named.
fn from_object(at: &str, mut map: Map<String, Value>) -> Result<Action, ParseError> {
    // The tool-call shape written as text: {"name": "read_file", "arguments": {...}}.
    if !map.contains_key("action")
        && let Some(name @ Value::String(_)) = map.remove("name")
    {
        map.insert("action".into(), name);
    }
    let name = match map.get("action") {
        Some(Value::String(name)) => normal_name(name),
        Some(_) => return Err(ParseError::format(format!("{at}\"action\" must be a string."))),
        None => {
            return Err(ParseError::format(format!(
                "{at}The JSON object has no \"action\" field naming the action."
            )));
        }
    };
    let Some(spec) = spec::spec(&name) else {
        return Err(ParseError::format(format!(
            "{at}Unknown action \"{name}\". The actions are: {}.",
            spec::names()
        )));
    };
    // Arguments nested as {"action": "x", "arguments": {...}} are the same thing.
    if let Some(Value::Object(_)) = map.get("arguments")
        && let Some(Value::Object(nested)) = map.remove("arguments")
    {
        map.extend(nested);
    }
    map.insert("action".into(), Value::from(spec.name));
    check_arguments(at, spec, &mut map)?;
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ParseError::arguments(at, spec, format_args!("{}: {e}", spec.name)))
}

/// Unknown, missing and ill-typed arguments, named; integers and booleans written as strings
/// are accepted.
fn check_arguments(at: &str, spec: &Spec, map: &mut Map<String, Value>) -> Result<(), ParseError> {
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| *k != "action" && !spec.args.iter().any(|a| a.name == k.as_str()))
        .map(|k| format!("\"{k}\""))
        .collect();
    if !unknown.is_empty() {
        let (s, list) = (if unknown.len() == 1 { "" } else { "s" }, unknown.join(", "));
        let missing: Vec<String> = spec
            .args
            .iter()
            .filter(|a| a.required && map.get(a.name).is_none_or(Value::is_null))
            .map(|a| format!("\"{}\"", a.name))
            .collect();
        let missing = match missing.is_empty() {
            true => String::new(),
            false => format!(" and is missing {}", missing.join(", ")),
        };
        return Err(ParseError::arguments(
            at,
            spec,
            format_args!("{} has no argument{s} {list}{missing}", spec.name),
        ));
    }
    for arg in spec.args {
        let value = map.get_mut(arg.name).filter(|v| !v.is_null());
        let Some(value) = value else {
            if arg.required {
                return Err(ParseError::arguments(
                    at,
                    spec,
                    format_args!("{} is missing the argument \"{}\"", spec.name, arg.name),
                ));
            }
            continue;
        };
        if let (Ty::Int | Ty::Priority, Value::String(s)) = (arg.ty, &*value)
            && let Ok(n) = s.trim().parse::<u64>()
        {
            *value = Value::from(n);
        }
        if let (Ty::Bool, Value::String(s)) = (arg.ty, &*value)
            && let Ok(b) = s.trim().parse::<bool>()
        {
            *value = Value::from(b);
        }
        if arg.ty == Ty::Edits {
            check_edits(at, spec, value)?;
            continue;
        }
        let fits = match arg.ty {
            Ty::Edits => true,
            Ty::Bool => value.is_boolean(),
            Ty::Str | Ty::BeadType => value.is_string(),
            Ty::Int => value.is_u64(),
            Ty::Priority => value.is_u64() || value.is_string(),
            Ty::Strings => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        };
        if !fits {
            return Err(ParseError::arguments(
                at,
                spec,
                format_args!(
                    "The argument \"{}\" of {} must be {}, not {}",
                    arg.name,
                    spec.name,
                    arg.ty.described(),
                    describe(value)
                ),
            ));
        }
    }
    Ok(())
}

/// The edits of a multi_edit: a non-empty list of `{old, new, replace_all?}`, each named by
/// its place when it is wrong.
fn check_edits(at: &str, spec: &Spec, value: &Value) -> Result<(), ParseError> {
    let wrong = |problem: String| ParseError::arguments(at, spec, problem);
    let Some(edits) = value.as_array().filter(|a| !a.is_empty()) else {
        return Err(wrong(format!(
            "The argument \"edits\" of {} must be a non-empty list of {{\"old\", \"new\", \
             \"replace_all\"?}} objects, not {}",
            spec.name,
            describe(value)
        )));
    };
    for (i, edit) in edits.iter().enumerate() {
        let Some(edit) = edit.as_object() else {
            return Err(wrong(format!("edits[{i}] must be an object, not {}", describe(edit))));
        };
        if let Some(key) =
            edit.keys().find(|k| !["old", "new", "replace_all"].contains(&k.as_str()))
        {
            return Err(wrong(format!(
                "edits[{i}] has no field \"{key}\" (an edit is {{\"old\", \"new\", \
                 \"replace_all\"?}})"
            )));
        }
        for field in ["old", "new"] {
            if !edit.get(field).is_some_and(Value::is_string) {
                return Err(wrong(format!("edits[{i}] needs \"{field}\" as a string")));
            }
        }
        if edit.get("replace_all").is_some_and(|v| !v.is_boolean() && !v.is_null()) {
            return Err(wrong(format!("edits[{i}]: \"replace_all\" must be true or false")));
        }
    }
    Ok(())
}

fn describe(value: &Value) -> String {
    let shown = value.to_string();
    let shown = if shown.chars().count() > 40 {
        format!("{}…", shown.chars().take(40).collect::<String>())
    } else {
        shown
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    format!("{kind} ({shown})")
}
