//! How `loom chat` shows a reply: text as it streams, one line per action and per result,
//! the end; or each event as one JSON line.

use std::io::Write;

use serde_json::{Value, json};

use super::super::output::cell;
use super::super::sse::Frame;

/// A message from before, continuing a conversation.
pub(super) fn past(label: &str, message: &Value) {
    let who = match message["role"].as_str() {
        Some("user") => "you",
        _ => label,
    };
    let ending = match message["state"].as_str() {
        Some("stopped") => "\n(stopped)".to_owned(),
        Some("failed") => format!("\n(failed: {})", cell(&message["error"])),
        Some("streaming") => "\n(still replying)".to_owned(),
        _ => String::new(),
    };
    println!("{who}> {}{ending}", cell(&message["body"]));
}

/// Prints one reply's events as they come.
pub(super) struct Printer {
    json: bool,
    /// The reply's message id: its `done` or `error` ends it.
    reply: Option<i64>,
    /// Whether the cursor is at the start of a line.
    fresh_line: bool,
}

impl Printer {
    /// The printer of reply `reply`; for a person, the reply starts with who is answering.
    pub(super) fn start(json: bool, reply: Option<i64>, label: &str) -> Printer {
        if !json {
            print!("{label}> ");
            flush();
        }
        Printer { json, reply, fresh_line: json }
    }

    /// Prints a frame; true when it ended the reply.
    pub(super) fn frame(&mut self, frame: &Frame) -> bool {
        if frame.is_comment() {
            return false;
        }
        let Ok(data) = serde_json::from_str::<Value>(&frame.data) else {
            eprintln!("loom chat: skipped an event that is not JSON");
            return false;
        };
        let kind = frame.event.as_str();
        let ends = matches!(kind, "done" | "error")
            && (self.reply.is_none()
                || data["message_id"].is_null()
                || data["message_id"].as_i64() == self.reply);
        if self.json {
            let id = frame
                .id
                .as_deref()
                .map(|id| id.parse::<i64>().map_or(Value::from(id), Value::from));
            println!("{}", json!({ "event": kind, "id": id, "data": data }));
            flush();
            return ends;
        }
        match kind {
            "delta" => {
                let text = data["text"].as_str().unwrap_or_default();
                if !text.is_empty() {
                    print!("{text}");
                    self.fresh_line = text.ends_with('\n');
                    flush();
                }
            }
            "action" => {
                self.end_line();
                println!("  → {}", describe(&data["action"]));
            }
            "action_result" => {
                self.end_line();
                let mark = if data["ok"] == true { '✓' } else { '✗' };
                println!("  {mark} {}", gist(data["output"].as_str().unwrap_or_default()));
            }
            "done" if ends => {
                self.end_line();
                if data["state"] == "stopped" {
                    println!("(stopped)");
                }
            }
            "error" if ends => {
                self.end_line();
                flush();
                eprintln!("error: {} ({})", cell(&data["message"]), cell(&data["code"]));
            }
            _ => {}
        }
        ends
    }

    pub(super) fn end_line(&mut self) {
        if !self.fresh_line {
            println!();
            self.fresh_line = true;
        }
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

/// An action as a person reads it: its name and its main argument.
fn describe(action: &Value) -> String {
    let name = action["action"].as_str().unwrap_or("action");
    let main = ["path", "command", "query", "message", "title", "body", "question", "summary"]
        .iter()
        .find_map(|key| action[*key].as_str());
    match main {
        Some(arg) => format!("{name} {}", gist(arg)),
        None => name.to_owned(),
    }
}

/// The first line of `text`, cut to fit a terminal, saying how many lines it left out.
fn gist(text: &str) -> String {
    const MAX: usize = 100;
    let text = text.trim();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut shown = match first.chars().count() > MAX {
        true => format!("{}…", first.chars().take(MAX - 1).collect::<String>()),
        false => first.to_owned(),
    };
    match lines.count() {
        0 => {}
        1 => shown.push_str(" (+1 line)"),
        more => shown.push_str(&format!(" (+{more} lines)")),
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_shows_its_name_and_main_argument_and_a_result_its_first_line() {
        let write = json!({"action": "write_file", "path": "notes.txt", "content": "x"});
        assert_eq!(describe(&write), "write_file notes.txt");
        assert_eq!(describe(&json!({"action": "git_diff"})), "git_diff");
        assert_eq!(
            describe(&json!({"action": "run", "command": "make\ntest"})),
            "run make (+1 line)"
        );
        assert_eq!(gist("ok\nmore\nlines\n"), "ok (+2 lines)");
        let long = gist(&"y".repeat(300));
        assert!(long.ends_with('…') && long.chars().count() == 100, "{long}");
    }
}
