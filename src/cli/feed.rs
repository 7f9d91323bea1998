//! `loom feed [--follow]`: the activity feed in the terminal, one line per event; following
//! it streams new events as they happen, and reconnects where it left off.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::Remote;
use super::client::{Client, ClientError};
use super::output::{cell, who};
use super::sse::{Frame, Parser};

#[derive(Debug, Clone, clap::Args)]
pub struct FeedArgs {
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub bead: Option<String>,
    /// Events an agent caused (its id).
    #[arg(long)]
    pub agent: Option<String>,
    /// A kind (`bead.closed`) or a family (`bead`).
    #[arg(long)]
    pub kind: Option<String>,
    /// How many past events to show first.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Keep printing events as they happen (Ctrl-C stops).
    #[arg(long, short)]
    pub follow: bool,
}

impl FeedArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("project", &self.project),
            ("bead", &self.bead),
            ("agent", &self.agent),
            ("kind", &self.kind),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

pub async fn run(remote: Remote, args: FeedArgs) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    // Following, the stream opens before the history is read: whatever happens meanwhile
    // is in one or the other (or both, and shown once).
    let stream = match args.follow {
        true => Some(client.open_stream(STREAM, &args.query(), None).await?),
        false => None,
    };
    let mut query = args.query();
    query.push(("limit", args.limit.clamp(1, 500).to_string()));
    let page: Value = client.get("/api/v1/activity", &query).await?;
    let mut items: Vec<Value> = page["items"].as_array().cloned().unwrap_or_default();
    items.reverse();
    for item in &items {
        print_event(item, remote.json);
    }
    let Some(stream) = stream else { return Ok(()) };
    let mut seen = Seen {
        last: None,
        shown: items.iter().filter_map(|i| i["id"].as_i64()).map(|id| id.to_string()).collect(),
    };
    let first = read_stream(client.base(), stream, &mut seen, remote.json);
    let first = tokio::select! {
        _ = tokio::signal::ctrl_c() => return Ok(()),
        outcome = first => outcome,
    };
    if let Err(e) = first {
        eprintln!("loom feed: {e}; reconnecting");
    }
    follow(&client, &args.query(), &mut seen, remote.json).await
}

const STREAM: &str = "/api/v1/activity/stream";

/// Where the stream is: the last id it sent (to resume after), and the ids of the history
/// printed before it, not to be printed twice.
struct Seen {
    last: Option<String>,
    shown: std::collections::HashSet<String>,
}

/// Streams until interrupted, reconnecting with back-off after the last event seen.
async fn follow(
    client: &Client,
    query: &[(&str, String)],
    seen: &mut Seen,
    json: bool,
) -> anyhow::Result<()> {
    let mut retry = Duration::from_millis(500);
    loop {
        let outcome = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            outcome = stream_once(client, query, seen, json) => outcome,
        };
        match outcome {
            Ok(()) => retry = Duration::from_millis(500),
            // A refusal (bad filter, token revoked) will not get better by retrying.
            Err(e @ ClientError::Api { .. }) | Err(e @ ClientError::NoToken) => {
                return Err(e.into());
            }
            Err(e) => {
                eprintln!("loom feed: {e}; reconnecting in {} s", retry.as_secs_f32());
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(10));
    }
}

/// One connection: prints events until the stream ends or breaks.
async fn stream_once(
    client: &Client,
    query: &[(&str, String)],
    seen: &mut Seen,
    json: bool,
) -> Result<(), ClientError> {
    let res = client.open_stream(STREAM, query, seen.last.as_deref()).await?;
    read_stream(client.base(), res, seen, json).await
}

async fn read_stream(
    base: &str,
    res: reqwest::Response,
    seen: &mut Seen,
    json: bool,
) -> Result<(), ClientError> {
    let mut body = res.bytes_stream();
    let mut parser = Parser::new();
    loop {
        let Some(chunk) = body.next().await else { return Ok(()) };
        let chunk =
            chunk.map_err(|source| ClientError::Unreachable { url: base.to_owned(), source })?;
        for frame in parser.push(&chunk) {
            handle(frame, seen, json);
        }
    }
}

fn handle(frame: Frame, seen: &mut Seen, json: bool) {
    let data = !frame.is_comment();
    if let Some(id) = frame.id {
        let printed = seen.shown.remove(&id);
        seen.last = Some(id);
        if printed {
            return;
        }
    }
    if !data {
        return;
    }
    match serde_json::from_str::<Value>(&frame.data) {
        Ok(event) => print_event(&event, json),
        Err(_) => eprintln!("loom feed: skipped an event that is not JSON"),
    }
}

fn print_event(e: &Value, json: bool) {
    if json {
        println!("{e}");
        return;
    }
    println!("{}", line(e));
}

/// One event as a line: when, what, where, and the gist.
pub fn line(e: &Value) -> String {
    let at = e["created_at"].as_str().unwrap_or_default();
    let at = at.get(..19).unwrap_or(at).replace('T', " ");
    let place = match (&e["bead_id"], &e["project_id"]) {
        (Value::String(b), _) => b.clone(),
        (_, Value::String(p)) => p.clone(),
        _ => "-".into(),
    };
    let actor = who(&e["actor"], &e["actor_agent_id"]);
    format!("{at}  {:<18} {:<14} {actor:<16} {}", cell(&e["kind"]), place, gist(e))
}

/// The part of an event's data a person wants at a glance.
fn gist(e: &Value) -> String {
    let d = &e["data"];
    let text = |k: &str| d[k].as_str().map(str::to_owned);
    let found = match e["kind"].as_str().unwrap_or_default() {
        "bead.created" => text("title"),
        "bead.closed" | "bead.reopened" => text("reason"),
        "bead.blocked" => Some(format!(
            "{}{}",
            cell(&d["reason"]),
            text("note").map(|n| format!(": {n}")).unwrap_or_default()
        )),
        "bead.updated" => Some(format!("changed {}", cell(&d["fields"]))),
        "dependency.added" | "dependency.removed" => {
            Some(format!("{} {}", cell(&d["kind"]), cell(&d["depends_on"])))
        }
        "run.started" => Some(format!("attempt {}", cell(&d["attempt"]))),
        "run.ended" => Some(format!(
            "{}{}",
            cell(&d["outcome"]),
            text("summary").map(|s| format!(": {s}")).unwrap_or_default()
        )),
        "run.step" => Some(format!(
            "turn {} {} {}",
            cell(&d["turn"]),
            cell(&d["action"]),
            if d["ok"] == true { "ok" } else { "failed" }
        )),
        "git.commit" => Some(format!(
            "{} {}",
            cell(&d["sha"]).chars().take(10).collect::<String>(),
            cell(&d["message"])
        )),
        "git.merged" => Some(format!(
            "{} into {}",
            cell(&d["sha"]).chars().take(10).collect::<String>(),
            cell(&d["branch"])
        )),
        "gateway.health" => Some(format!(
            "{}{}",
            cell(&d["health"]),
            text("reason").map(|r| format!(": {r}")).unwrap_or_default()
        )),
        "agent.created" | "agent.updated" | "agent.deleted" | "agent.status" => {
            Some(format!("{} {}", cell(&d["name"]), cell(&d["status"])))
        }
        _ => None,
    };
    found.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_when_what_where_and_the_gist() {
        let e = serde_json::json!({
            "id": 3, "kind": "run.ended", "created_at": "2026-12-01T17:35:04.123Z",
            "project_id": "web", "bead_id": "web-1",
            "data": {"outcome": "success", "summary": "Fixed it."}
        });
        let l = line(&e);
        assert!(l.starts_with("2026-12-01 17:35:04  run.ended"), "{l}");
        assert!(l.contains(" - "), "no actor: Loom itself: {l}");
        let by = serde_json::json!({
            "kind": "bead.created", "created_at": "x", "actor": "ada",
            "actor_agent_id": "0193a1b2-0000-7000-8000-000000000000", "data": {"title": "T"}
        });
        assert!(line(&by).contains("ada (agent)"), "{}", line(&by));
        assert!(l.contains("web-1") && l.ends_with("success: Fixed it."), "{l}");
        let g = serde_json::json!({"kind": "gateway.health", "created_at": "x", "data": {"health": "down", "reason": null}});
        assert!(line(&g).ends_with("down"), "{}", line(&g));
    }
}
