//! `loom run ...`: agents' runs on beads, and a run's transcript step by step.

use clap::Subcommand;
use serde_json::Value;

use super::Remote;
use super::client::{Client, segment};
use super::output::{cell, print_json, table};

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// A bead's runs, newest first.
    List { bead: String },
    /// One run: how it ended, what it cost, and every action with its result.
    Show { id: String },
}

pub async fn run(remote: Remote, command: RunCommand) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    match command {
        RunCommand::List { bead } => {
            let list: Value =
                client.get(&format!("/api/v1/beads/{}/runs", segment(&bead)?), &[]).await?;
            if remote.json {
                return print_json(&list);
            }
            table(
                &list["items"],
                &[
                    ("ID", "id"),
                    ("ATTEMPT", "attempt"),
                    ("OUTCOME", "outcome"),
                    ("TURNS", "turns"),
                    ("STARTED", "started_at"),
                    ("ENDED", "ended_at"),
                ],
            );
            Ok(())
        }
        RunCommand::Show { id } => {
            let run: Value = client.get(&format!("/api/v1/runs/{}", segment(&id)?), &[]).await?;
            if remote.json {
                return print_json(&run);
            }
            print!("{}", transcript(&run));
            Ok(())
        }
    }
}

/// A run as a person reads it: a header, then each step's action and result.
pub fn transcript(run: &Value) -> String {
    let mut out = String::new();
    let outcome = match &run["outcome"] {
        Value::Null => "still running".to_owned(),
        v => cell(v),
    };
    out += &format!(
        "run {} on {} (attempt {})\n",
        cell(&run["id"]),
        cell(&run["bead"]),
        cell(&run["attempt"])
    );
    out += &format!("agent     {}\n", cell(&run["agent"]));
    out += &format!("outcome   {outcome}\n");
    out += &format!("started   {}\n", cell(&run["started_at"]));
    out += &format!("ended     {}\n", cell(&run["ended_at"]));
    out += &format!(
        "turns     {}, tokens {} in / {} out\n",
        cell(&run["turns"]),
        cell(&run["prompt_tokens"]),
        cell(&run["completion_tokens"])
    );
    for (key, label) in [("summary", "summary"), ("error", "error"), ("merged_sha", "merged")] {
        if !run[key].is_null() {
            out += &format!("{label:<9} {}\n", cell(&run[key]));
        }
    }
    let empty = Vec::new();
    for (i, step) in run["steps"].as_array().unwrap_or(&empty).iter().enumerate() {
        let action = &step["action"];
        let name = action["action"].as_str().unwrap_or("?");
        let args: Vec<String> = action
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "action")
            .map(|(k, v)| format!("{k}={}", short(&cell(v), 60)))
            .collect();
        let mark = if step["ok"] == Value::Bool(true) { "ok" } else { "FAILED" };
        out += &format!(
            "\n[{}] turn {} · {name} {} · {mark} · {} ms\n",
            i + 1,
            cell(&step["turn"]),
            args.join(" "),
            cell(&step["duration_ms"])
        );
        for line in step["result"].as_str().unwrap_or("").lines().take(20) {
            out += &format!("    {line}\n");
        }
    }
    out
}

fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', "⏎");
    match one_line.chars().count() > max {
        true => format!("{}…", one_line.chars().take(max).collect::<String>()),
        false => one_line,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::transcript;

    #[test]
    fn a_transcript_shows_the_outcome_and_every_step_with_its_result() {
        let run = json!({
            "id": "r1", "bead": "web-a1", "agent": "ag", "attempt": 2, "outcome": "success",
            "started_at": "t0", "ended_at": "t1", "turns": 3, "prompt_tokens": 10,
            "completion_tokens": 5, "summary": "Fixed it.", "error": null, "merged_sha": "abc",
            "steps": [
                {"turn": 1, "action": {"action": "read_file", "path": "a.txt"}, "ok": true,
                 "result": "line one\nline two", "duration_ms": 3},
                {"turn": 2, "action": {"action": "run", "command": "make test"}, "ok": false,
                 "result": "[exit code 2]", "duration_ms": 900},
            ]
        });
        let t = transcript(&run);
        for part in [
            "run r1 on web-a1 (attempt 2)",
            "outcome   success",
            "summary   Fixed it.",
            "merged    abc",
            "[1] turn 1 · read_file path=a.txt · ok · 3 ms",
            "    line two",
            "[2] turn 2 · run command=make test · FAILED · 900 ms",
        ] {
            assert!(t.contains(part), "{part} missing from:\n{t}");
        }
        assert!(!t.contains("error"), "no error line when there is none");
        let open = transcript(&json!({"id": "r2", "outcome": null, "steps": []}));
        assert!(open.contains("still running"));
    }
}
