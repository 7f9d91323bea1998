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

/// The JSON a reply carries: the whole text when it is JSON; else every object in it that is
/// an action (`action`, `actions`, or the tool-call shape naming a known action), in order,
/// wherever it is (in a fence or among prose), so an example object or a file's JSON shown in
/// passing is never taken for one. Raw newlines and tabs inside strings, which models write
/// in file contents, are repaired.
pub(super) fn find_actions(
    text: &str,
    is_action: &dyn Fn(&str) -> bool,
) -> Result<Vec<Value>, NotFound> {
    let text = text.trim();
    if text.is_empty() {
        return Err(NotFound::Empty);
    }
    if text.starts_with(['{', '['])
        && let Ok(v @ (Value::Object(_) | Value::Array(_))) = parse_lenient(text)
    {
        return Ok(vec![v]);
    }
    let mut first_problem = None;
    let (mut found, mut fallback) = (Vec::new(), None);
    let mut from = 0;
    while let Some(start) = text[from..].find('{').map(|i| from + i) {
        let Some(end) = balanced_end(&text[start..]).map(|len| start + len) else {
            // A stray brace in prose never closes; an action may still follow it.
            first_problem.get_or_insert(NotFound::Unclosed);
            from = start + 1;
            continue;
        };
        match parse_lenient(&text[start..end]) {
            Ok(Value::Object(map)) if looks_like_action(&map, is_action) => {
                found.push(Value::Object(map));
                from = end;
                continue;
            }
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
    if !found.is_empty() {
        return Ok(found);
    }
    // A broken fence says most about what went wrong: only looked for when nothing was found.
    match (fence_problem(text).or(first_problem), fallback) {
        (Some(problem), _) => Err(problem),
        (None, Some(v)) => Ok(vec![v]),
        (None, None) => Err(NotFound::NoJson),
    }
}

/// JSON, or failing that JSON whose strings hold raw control characters (newlines, tabs)
/// once they are escaped; the first error when neither parses.
fn parse_lenient(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text).or_else(|e| {
        let repaired = escape_raw_controls(text);
        match repaired == text {
            true => Err(e),
            false => serde_json::from_str(&repaired).map_err(|_| e),
        }
    })
}

/// `text` with the raw control characters inside its JSON strings escaped.
fn escape_raw_controls(text: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(text.len()), false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                '\n' => {
                    out.push_str("\\n");
                    continue;
                }
                '\r' => {
                    out.push_str("\\r");
                    continue;
                }
                '\t' => {
                    out.push_str("\\t");
                    continue;
                }
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

fn looks_like_action(
    map: &serde_json::Map<String, Value>,
    is_action: &dyn Fn(&str) -> bool,
) -> bool {
    let named = |key: &str| map.get(key).and_then(Value::as_str).is_some_and(is_action);
    map.get("actions").is_some_and(Value::is_array) || named("name")
        // A misspelt action is still an action: its error says which names there are.
        || map.get("action").is_some_and(Value::is_string)
}

/// The problem of the first ```json (or bare) fence whose body is not valid JSON, if any.
fn fence_problem(text: &str) -> Option<NotFound> {
    let body = first_fence(text)?.trim();
    if !body.starts_with(['{', '[']) {
        return None;
    }
    parse_lenient(body).err().map(|e| NotFound::Invalid { fenced: true, error: e.to_string() })
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
