//! One table describing every action's arguments: the parser checks replies against it, and the
//! native tool specs, the system-prompt vocabulary and the parse errors are all written from it,
//! so the four can never disagree.

use serde_json::{Value, json};

use super::Toolset;

/// The JSON type an argument takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Str,
    Bool,
    /// A non-negative integer.
    Int,
    Strings,
    /// A list of `{old, new, replace_all?}`.
    Edits,
    /// 0..=4, or "P0".."P4".
    Priority,
    BeadType,
}

#[derive(Debug)]
pub(super) struct Arg {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Debug)]
pub(super) struct Spec {
    pub name: &'static str,
    pub doc: &'static str,
    pub args: &'static [Arg],
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Arg {
    Arg { name, ty, required: true, doc }
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Arg {
    Arg { name, ty, required: false, doc }
}

pub(super) const BEAD_TYPES: [&str; 6] = ["task", "bug", "feature", "epic", "chore", "decision"];

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "list_files",
        doc: "List a directory (default: the root) `depth` levels down (default 2), sorted; \
              directories end in `/`.",
        args: &[
            opt("path", Ty::Str, "Directory to list; default the worktree root."),
            opt("depth", Ty::Int, "Levels to descend; default 2."),
        ],
    },
    Spec {
        name: "read_file",
        doc: "Read a text file, numbered, under a header `path La-b of N`; `start_line` and \
              `end_line` (from 1, inclusive) pick a range. A page holds about 10,000 \
              characters; a note gives the start_line to read on from.",
        args: &[
            req("path", Ty::Str, "File to read."),
            opt("start_line", Ty::Int, "First line to return, counting from 1."),
            opt("end_line", Ty::Int, "Last line to return, inclusive."),
        ],
    },
    Spec {
        name: "search",
        doc: "Find the lines matching `query` (one line: literal, case-sensitive text, or a \
              regex with `regex: true`, where `(?i)` ignores case) in the text files under \
              `path` (default: everywhere; what .gitignore excludes is skipped unless given as \
              the path), narrowed by a `glob` on paths (`*.rs`, `src/**/test_*.py`). Returns \
              `file:line: text`; when the matches are many, or with `files_only`, the count per \
              file instead.",
        args: &[
            req("query", Ty::Str, "The text to find, or a regex with `regex: true`."),
            opt("path", Ty::Str, "File or directory to search; default the whole worktree."),
            opt("regex", Ty::Bool, "Read `query` as a regular expression; default false."),
            opt("glob", Ty::Str, "Only files whose path matches, e.g. `*.ts` or `src/**`."),
            opt("files_only", Ty::Bool, "List matching files with their counts; default false."),
        ],
    },
    Spec {
        name: "find_files",
        doc: "Find files by name under `path` (default: everywhere; .gitignore respected): a \
              glob (`*.toml`, `**/test_*.py`, `src/**/mod.rs`) or plain text that names contain \
              (any case).",
        args: &[
            req("pattern", Ty::Str, "A glob, or text the file name contains."),
            opt("path", Ty::Str, "Directory to look under; default the whole worktree."),
        ],
    },
    Spec {
        name: "write_file",
        doc: "Create a file or replace all of it; missing parent directories are created.",
        args: &[
            req("path", Ty::Str, "File to write."),
            req("content", Ty::Str, "The complete new content."),
        ],
    },
    Spec {
        name: "edit_file",
        doc: "Replace `old` with `new` in a file. `old` must match the file exactly, whitespace \
              included, and only once (add neighbouring lines to make it unique), unless \
              `replace_all` changes every occurrence. Answers with the changed lines, numbered. \
              An edit that would add syntax errors to a Rust, Python, JavaScript, TypeScript, \
              Go, JSON, YAML or TOML file is not applied.",
        args: &[
            req("path", Ty::Str, "File to edit."),
            req("old", Ty::Str, "The exact text to replace."),
            req("new", Ty::Str, "The text to put in its place."),
            opt("replace_all", Ty::Bool, "Replace every occurrence; default false."),
        ],
    },
    Spec {
        name: "multi_edit",
        doc: "Several edit_file replacements in one file, applied in order and all or none: \
              for changes that only make sense (or only parse) together.",
        args: &[
            req("path", Ty::Str, "File to edit."),
            req("edits", Ty::Edits, "The replacements, each {old, new, replace_all?}."),
        ],
    },
    Spec {
        name: "insert_lines",
        doc: "Insert `text` as whole lines after line `after_line` of a file (0 puts it at the \
              top; the last line's number, at the end).",
        args: &[
            req("path", Ty::Str, "File to insert into."),
            req("after_line", Ty::Int, "The line to insert after; 0 for the top."),
            req("text", Ty::Str, "The lines to insert."),
        ],
    },
    Spec {
        name: "delete_file",
        doc: "Delete one file (not a directory).",
        args: &[req("path", Ty::Str, "File to delete.")],
    },
    Spec {
        name: "run",
        doc: "Run `sh -c command` in the worktree root with stdin closed and a minimal \
              environment, in a sandbox: it sees the worktree (writable), the system and \
              toolchains (read-only) and a private /tmp; git's metadata is read-only (`git log`, \
              `git diff` and `git status` work; save work with the commit action, not `git \
              commit`), and the network is off unless the project opens it. It is killed after \
              `timeout_s` seconds (default 120, at most 600), and anything it left running in \
              the background is killed when it ends. Returns the exit code and the output (long \
              output keeps its head and tail). A non-zero exit is a failed action: the \
              actions after it in the same reply are skipped.",
        args: &[
            req("command", Ty::Str, "The shell command line."),
            opt("timeout_s", Ty::Int, "Seconds before it is killed; default 120, at most 600."),
        ],
    },
    Spec { name: "git_diff", doc: "Show the uncommitted changes in the worktree.", args: &[] },
    Spec {
        name: "commit",
        doc: "Commit every change in the worktree.",
        args: &[req("message", Ty::Str, "A short summary line, then details if they help.")],
    },
    Spec {
        name: "create_bead",
        doc: "File a new bead for work you found that does not belong in this one. `priority` is \
              0 (most urgent) to 4, default 2; `type` is one of task, bug, feature, epic, chore, \
              decision, default task.",
        args: &[
            req("title", Ty::Str, "One line, at most 200 characters."),
            opt("description", Ty::Str, "Markdown: what and why."),
            opt("priority", Ty::Priority, "0 (most urgent) to 4; default 2."),
            opt("type", Ty::BeadType, "The kind of work; default task."),
            opt("labels", Ty::Strings, "Labels such as \"backend\"."),
        ],
    },
    Spec {
        name: "comment",
        doc: "Comment on your bead: progress, findings, decisions.",
        args: &[req("body", Ty::Str, "Markdown.")],
    },
    Spec {
        name: "update_plan",
        doc: "Write down your plan, or update it as you go: it stays in view at the end of \
              every result you read, however long the run. Mark finished steps, e.g. \
              \"[x] reproduce the bug\".",
        args: &[req("plan", Ty::Strings, "The steps, in order, each one line.")],
    },
    Spec {
        name: "done",
        doc: "Finish: what is left is committed and your work goes to review (when the project \
              asks for one) and the project's checks, then lands and the bead closes. `summary` \
              says what changed and how you checked it.",
        args: &[req("summary", Ty::Str, "What changed and how you checked it.")],
    },
    Spec {
        name: "block",
        doc: "Stop and ask a human, when you cannot go on without a decision, access or knowledge \
              only a person has.",
        args: &[req("question", Ty::Str, "One specific question a person can answer.")],
    },
    Spec {
        name: "approve",
        doc: "Finish the review: the work is right and goes on to the project's checks and \
              lands. `summary` is recorded on the bead.",
        args: &[req("summary", Ty::Str, "What you checked and why the work is right to land.")],
    },
    Spec {
        name: "request_changes",
        doc: "Finish the review: the work goes back to its author, who is told `body`. Be \
              specific: the file, the behaviour, the missing test.",
        args: &[req("body", Ty::Str, "What must change, specific enough to act on.")],
    },
];

pub(super) fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

pub(super) fn names() -> String {
    SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The actions `set` offers, in table order.
fn offered(set: Toolset) -> impl Iterator<Item = &'static Spec> {
    SPECS.iter().filter(move |s| set.offers(s.name))
}

impl Ty {
    fn label(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Bool => "boolean",
            Ty::Int => "integer",
            Ty::Strings => "[string]",
            Ty::Edits => "[{old, new, replace_all?}]",
            Ty::Priority => "integer 0-4",
            Ty::BeadType => "task|bug|feature|epic|chore|decision",
        }
    }

    /// The type in an error message: "must be {described}".
    pub(super) fn described(self) -> String {
        match self {
            Ty::Str => "a string".into(),
            Ty::Bool => "true or false".into(),
            Ty::Int => "a non-negative integer".into(),
            Ty::Strings => "a list of strings".into(),
            Ty::Edits => "a list of {old, new, replace_all?} objects".into(),
            Ty::Priority => "an integer from 0 to 4".into(),
            Ty::BeadType => format!("one of {}", BEAD_TYPES.join(", ")),
        }
    }

    fn schema(self) -> Value {
        match self {
            Ty::Str => json!({"type": "string"}),
            Ty::Bool => json!({"type": "boolean"}),
            Ty::Int => json!({"type": "integer", "minimum": 0}),
            Ty::Strings => json!({"type": "array", "items": {"type": "string"}}),
            Ty::Edits => json!({
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "old": {"type": "string", "description": "The exact text to replace."},
                        "new": {"type": "string", "description": "The text to put in its place."},
                        "replace_all": {"type": "boolean", "description": "Replace every occurrence."},
                    },
                    "required": ["old", "new"],
                    "additionalProperties": false,
                },
            }),
            Ty::Priority => json!({"type": "integer", "minimum": 0, "maximum": 4}),
            Ty::BeadType => json!({"type": "string", "enum": BEAD_TYPES}),
        }
    }
}

impl Spec {
    /// The arguments in one line, `{"path": string, "depth"?: integer}`; `?` marks optional.
    pub(super) fn usage(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                format!("\"{}\"{}: {}", a.name, if a.required { "" } else { "?" }, a.ty.label())
            })
            .collect();
        format!("{{{}}}", args.join(", "))
    }

    /// The required arguments with sample values, as they follow `"action": "<name>"`.
    pub(super) fn example(&self) -> String {
        self.args
            .iter()
            .filter(|a| a.required)
            .map(|a| {
                let sample = match (a.name, a.ty) {
                    ("path", _) => "\"src/main.rs\"",
                    (_, Ty::Int | Ty::Priority) => "1",
                    (_, Ty::Strings) => "[\"...\"]",
                    (_, Ty::Edits) => "[{\"old\": \"...\", \"new\": \"...\"}]",
                    (_, Ty::Bool) => "true",
                    _ => "\"...\"",
                };
                format!(", \"{}\": {sample}", a.name)
            })
            .collect()
    }

    fn parameters(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .args
            .iter()
            .map(|a| {
                let mut schema = a.ty.schema();
                schema["description"] = Value::from(a.doc);
                (a.name.to_string(), schema)
            })
            .collect();
        let required: Vec<&str> = self.args.iter().filter(|a| a.required).map(|a| a.name).collect();
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }
}

/// Every action as an OpenAI tool (`{"type": "function", "function": {name, description,
/// parameters}}`), for the `tools` field of a chat completion request.
pub fn tool_specs(set: Toolset) -> Value {
    offered(set)
        .map(|s| {
            json!({
                "type": "function",
                "function": {"name": s.name, "description": s.doc, "parameters": s.parameters()},
            })
        })
        .collect()
}

const REPLY_FORMAT: &str = r#"# Actions
You work by replying with actions. A reply is one JSON object and nothing else: one action,
    {"action": "read_file", "path": "src/main.rs"}
or several, performed in order,
    {"actions": [{"action": "edit_file", "path": "a.py", "old": "x = 1", "new": "x = 2"}, {"action": "run", "command": "pytest -q"}]}
A ```json fence around it is fine, and so is a <think> block before it. The results come back in
the next message; so does the error, if a reply cannot be read.

Paths are relative to the worktree root. Absolute paths, paths that leave the worktree (by `..` or
through a symlink) and anything in `.git` are refused. Arguments marked `?` are optional.

"#;

const NATIVE_FORMAT: &str = r#"# Actions
You work by calling the tools you are offered: each tool is one action. Several calls in one
reply are performed in order, and stop at the first that fails (you are told which were
skipped); an action that finishes must come last. The results come back as the tools' answers.

Paths are relative to the worktree root. Absolute paths, paths that leave the worktree (by `..` or
through a symlink) and anything in `.git` are refused.

The tools: "#;

/// The action vocabulary and how replies carry it, for the system prompt: the whole table for
/// JSON written as text; for native tools (whose descriptions travel with the request) how to
/// call them and their names.
pub fn vocabulary_text(mode: super::ReplyMode, set: Toolset) -> String {
    let finish = set.finish();
    if mode == super::ReplyMode::Native {
        let mut text = String::from(NATIVE_FORMAT);
        text.push_str(&offered(set).map(|s| s.name).collect::<Vec<_>>().join(", "));
        text.push_str(&format!(".\n\nEvery reply must call a tool. {finish}\n"));
        return text;
    }
    let mut text = String::from(REPLY_FORMAT);
    for s in offered(set) {
        text.push_str(&format!("- {} {}\n  {}\n", s.name, s.usage(), s.doc));
    }
    text.push_str(&format!("\nEvery reply must carry an action. {finish}\n"));
    text
}
