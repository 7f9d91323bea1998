//! Finding the JSON in a model's text reply: past its thinking, inside a code fence or among
//! prose. Models are sloppy about format; the parser is tolerant here so that the strict part
//! (the actions themselves) gets a chance to say what is actually wrong.

use serde_json::Value;

/// The reply without the thinking in front of it: `<think>...</think>` blocks at the start,
/// everything up to a closing `</think>` that has no opening tag (templates that put the
/// opening tag in the prompt), and the bare tag of an opening never closed, so that an action
/// written after unterminated thinking still counts. Tags further on are left alone: they may
/// be text inside an action, such as a file's content.
pub(super) fn strip_think(reply: &str) -> &str {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let mut rest = reply.trim_start();
    if let Some(close) = rest.find(CLOSE)
        && !rest[..close].contains(OPEN)
    {
        rest = rest[close + CLOSE.len()..].trim_start();
    }
    while let Some(after) = rest.strip_prefix(OPEN) {
        rest = match after.find(CLOSE) {
            Some(close) => after[close + CLOSE.len()..].trim_start(),
            None => after,
        };
    }
    rest
}

/// Why no JSON could be taken from a reply.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotFound {
    Empty,
    NoJson,
    /// JSON was there but did not parse; the serde message says where.
    Invalid {
        fenced: bool,
        error: String,
    },
    /// An object opened and never closed: the reply was probably cut off.
    Unclosed,
}

/// The JSON value a reply carries: the whole text, else the first ```json (or bare ```) fence,
/// else the first balanced `{...}` in the text that looks like an action.
pub(super) fn find_json(text: &str) -> Result<Value, NotFound> {
    let text = text.trim();
    if text.is_empty() {
        return Err(NotFound::Empty);
    }
    if let Ok(v @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str(text) {
        return Ok(v);
    }
    let mut first_problem = None;
    if let Some(fenced) = first_fence(text) {
        match serde_json::from_str::<Value>(fenced.trim()) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => return Ok(v),
            Ok(_) => {}
            Err(e) => {
                first_problem = Some(NotFound::Invalid { fenced: true, error: e.to_string() });
            }
        }
    }
    let mut fallback = None;
    let mut from = 0;
    while let Some(start) = text[from..].find('{').map(|i| from + i) {
        let Some(end) = balanced_end(&text[start..]).map(|len| start + len) else {
            // A stray brace in prose never closes; an action may still follow it.
            first_problem.get_or_insert(NotFound::Unclosed);
            from = start + 1;
            continue;
        };
        match serde_json::from_str::<Value>(&text[start..end]) {
            Ok(Value::Object(map)) if looks_like_action(&map) => return Ok(Value::Object(map)),
            Ok(v) => {
                fallback.get_or_insert(v);
            }
            Err(e) => {
                first_problem
                    .get_or_insert(NotFound::Invalid { fenced: false, error: e.to_string() });
            }
        }
        from = end;
    }
    match (first_problem, fallback) {
        (Some(problem), _) => Err(problem),
        (None, Some(v)) => Ok(v),
        (None, None) => Err(NotFound::NoJson),
    }
}

fn looks_like_action(map: &serde_json::Map<String, Value>) -> bool {
    ["action", "actions", "name"].iter().any(|k| map.contains_key(*k))
}

/// The body of the first fence whose info string is `json` or empty (an unclosed fence runs to
/// the end of the text).
fn first_fence(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let (info, body) = after.split_once('\n').unwrap_or((after, ""));
        let (body, next) = match body.find("```") {
            Some(close) => (&body[..close], &body[close + 3..]),
            None => (body, ""),
        };
        let info = info.trim();
        if info.is_empty() || info.eq_ignore_ascii_case("json") {
            return Some(body);
        }
        rest = next;
    }
    None
}

/// The length of the balanced `{...}` that `text` starts with, skipping braces inside JSON
/// strings; None when it never closes.
fn balanced_end(text: &str) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}
