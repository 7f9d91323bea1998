//! `loom bead ...`

use clap::Subcommand;
use serde_json::{Value, json};

use super::Remote;
use super::client::{Client, segment};
use super::output::{cell, field, print_json, table, who};

const LIST_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("PRI", "priority"),
    ("TYPE", "type"),
    ("STATUS", "status"),
    ("TITLE", "title"),
    ("LABELS", "labels"),
];

#[derive(Debug, Subcommand)]
pub enum BeadCommand {
    /// File a bead.
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        description: Option<String>,
        /// task, bug, feature, epic, chore or decision.
        #[arg(long = "type")]
        bead_type: Option<String>,
        /// 0-4 or P0-P4.
        #[arg(long)]
        priority: Option<String>,
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        persona: Option<String>,
        #[arg(long)]
        parent: Option<String>,
        /// A bead that must close first (repeatable).
        #[arg(long = "depends-on")]
        depends_on: Vec<String>,
    },
    /// List beads, most urgent first.
    List {
        #[arg(long)]
        project: Option<String>,
        /// Comma-separated statuses.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        priority: Option<String>,
        #[arg(long = "type")]
        bead_type: Option<String>,
        #[arg(long)]
        label: Option<String>,
        /// Text to search for.
        #[arg(long)]
        q: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a bead with its dependencies and comments.
    Show { id: String },
    /// Edit a bead.
    Update {
        id: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        priority: Option<String>,
        #[arg(long = "type")]
        bead_type: Option<String>,
        /// Replaces the labels (repeatable).
        #[arg(long = "label")]
        labels: Option<Vec<String>>,
        #[arg(long)]
        persona: Option<String>,
        /// open or deferred (use close/block/reopen for the others).
        #[arg(long)]
        status: Option<String>,
        /// The version you are editing (default: the current one).
        #[arg(long)]
        version: Option<i64>,
    },
    /// Close a bead.
    Close {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reopen a bead (also unblocks it and resets its attempts).
    Reopen {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Approve a bead in review: its work enters the project's landing queue.
    Approve {
        id: String,
        /// Said on the bead with the approval.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Send a bead in review back to its agent with what should change.
    RequestChanges {
        id: String,
        /// What should change (the bead's next run reads it).
        body: String,
    },
    /// Block a bead by hand.
    Block {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Ready beads in dispatch order.
    Ready {
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Beads that are not ready, and what holds each.
    Blocked {
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Dependencies between beads.
    Dep {
        #[command(subcommand)]
        command: DepCommand,
    },
    /// Comment on a bead.
    Comment { id: String, body: String },
}

#[derive(Debug, Subcommand)]
pub enum DepCommand {
    /// BEAD depends on DEPENDS_ON.
    Add {
        bead: String,
        depends_on: String,
        /// blocks, parent-child, related or discovered-from.
        #[arg(long, default_value = "blocks")]
        kind: String,
    },
    /// Remove a dependency.
    Rm {
        bead: String,
        depends_on: String,
        #[arg(long, default_value = "blocks")]
        kind: String,
    },
}

/// Numbers stay numbers; "P1" stays text (the server accepts both).
pub(super) fn priority_value(p: String) -> Value {
    p.parse::<i64>().map(Value::from).unwrap_or(Value::from(p))
}

/// A typed id is encoded, so `../agents` names a bead (that does not exist), not a route.
fn bead_path(id: &str, rest: &str) -> anyhow::Result<String> {
    Ok(format!("/api/v1/beads/{}{rest}", segment(id)?))
}

fn set(body: &mut Value, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        body[key] = v;
    }
}

pub async fn run(remote: Remote, command: BeadCommand) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    let bead: Value = match command {
        BeadCommand::Create {
            project,
            title,
            description,
            bead_type,
            priority,
            labels,
            persona,
            parent,
            depends_on,
        } => {
            let mut body = json!({ "project": project, "title": title });
            set(&mut body, "description", description.map(Value::from));
            set(&mut body, "type", bead_type.map(Value::from));
            set(&mut body, "priority", priority.map(priority_value));
            set(&mut body, "persona", persona.map(Value::from));
            set(&mut body, "parent", parent.map(Value::from));
            if !labels.is_empty() {
                body["labels"] = json!(labels);
            }
            if !depends_on.is_empty() {
                body["depends_on"] = json!(depends_on);
            }
            client.post("/api/v1/beads", &body).await?
        }
        BeadCommand::List { project, status, priority, bead_type, label, q, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("project", project),
                ("status", status),
                ("priority", priority),
                ("type", bead_type),
                ("label", label),
                ("q", q),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            return list(&client, &remote, "/api/v1/beads", &query).await;
        }
        BeadCommand::Ready { project, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(project.map(|p| ("project", p)));
            return list(&client, &remote, "/api/v1/beads/ready", &query).await;
        }
        BeadCommand::Blocked { project, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(project.map(|p| ("project", p)));
            return blocked(&client, &remote, &query).await;
        }
        BeadCommand::Show { id } => {
            let details: Value = client.get(&bead_path(&id, "")?, &[]).await?;
            if remote.json {
                return print_json(&details);
            }
            show(&details);
            return Ok(());
        }
        BeadCommand::Update {
            id,
            title,
            description,
            priority,
            bead_type,
            labels,
            persona,
            status,
            version,
        } => {
            let version = match version {
                Some(v) => v,
                None => {
                    let current: Value = client.get(&bead_path(&id, "")?, &[]).await?;
                    current["version"].as_i64().unwrap_or(0)
                }
            };
            let mut body = json!({ "version": version });
            set(&mut body, "title", title.map(Value::from));
            set(&mut body, "description", description.map(Value::from));
            set(&mut body, "priority", priority.map(priority_value));
            set(&mut body, "type", bead_type.map(Value::from));
            set(&mut body, "labels", labels.map(|l| json!(l)));
            set(&mut body, "persona", persona.map(Value::from));
            set(&mut body, "status", status.map(Value::from));
            client.patch(&bead_path(&id, "")?, &body).await?
        }
        BeadCommand::Close { id, reason } => {
            client.post(&bead_path(&id, "/close")?, &json!({ "reason": reason })).await?
        }
        BeadCommand::Reopen { id, reason } => {
            client.post(&bead_path(&id, "/reopen")?, &json!({ "reason": reason })).await?
        }
        BeadCommand::Approve { id, comment } => {
            client.post(&bead_path(&id, "/approve")?, &json!({ "comment": comment })).await?
        }
        BeadCommand::RequestChanges { id, body } => {
            client.post(&bead_path(&id, "/request-changes")?, &json!({ "body": body })).await?
        }
        BeadCommand::Block { id, reason } => {
            client.post(&bead_path(&id, "/block")?, &json!({ "reason": reason })).await?
        }
        BeadCommand::Dep { command } => return dep(&client, command).await,
        BeadCommand::Comment { id, body } => {
            let comment: Value =
                client.post(&bead_path(&id, "/comments")?, &json!({ "body": body })).await?;
            if remote.json {
                return print_json(&comment);
            }
            println!("commented on {id}");
            return Ok(());
        }
    };
    if remote.json {
        return print_json(&bead);
    }
    println!(
        "{} [{}] P{} {}  (version {})",
        cell(&bead["id"]),
        cell(&bead["status"]),
        cell(&bead["priority"]),
        cell(&bead["title"]),
        cell(&bead["version"])
    );
    Ok(())
}

async fn list(
    client: &Client,
    remote: &Remote,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<()> {
    let page: Value = client.get(path, query).await?;
    if remote.json {
        return print_json(&page);
    }
    table(&page["items"], LIST_COLUMNS);
    if !page["next_cursor"].is_null() {
        eprintln!("(more beads: raise --limit)");
    }
    Ok(())
}

/// One line per hold: "waits on web-1a2b (open)", "blocked: needs_human", ...
fn describe_holds(holds: &Value) -> String {
    let empty = Vec::new();
    let parts: Vec<String> = holds
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|h| match h["kind"].as_str() {
            Some("blockers") => {
                let ids: Vec<String> = h["blockers"]
                    .as_array()
                    .unwrap_or(&empty)
                    .iter()
                    .map(|b| cell(&b["id"]))
                    .collect();
                format!("waits on {}", ids.join(", "))
            }
            Some("blocked") => format!(
                "blocked: {}{}",
                cell(&h["reason"]),
                h["note"].as_str().map(|n| format!(" ({n})")).unwrap_or_default()
            ),
            Some("deferred") => format!("deferred until {}", cell(&h["until"])),
            Some("ancestor") => format!("held by {} ({})", cell(&h["id"]), cell(&h["status"])),
            Some("backoff") => format!("retry after {}", cell(&h["until"])),
            Some("review") => "waiting for a review".to_owned(),
            Some("landing") => "in the landing queue".to_owned(),
            Some("paired") => {
                format!("a person is pairing on it (conversation {})", cell(&h["conversation"]))
            }
            Some(other) => other.to_owned(),
            None => "?".into(),
        })
        .collect();
    parts.join("; ")
}

async fn blocked(client: &Client, remote: &Remote, query: &[(&str, String)]) -> anyhow::Result<()> {
    let mut page: Value = client.get("/api/v1/beads/blocked", query).await?;
    if remote.json {
        return print_json(&page);
    }
    if let Some(items) = page["items"].as_array_mut() {
        for item in items {
            item["held"] = Value::from(describe_holds(&item["holds"]));
        }
    }
    table(
        &page["items"],
        &[
            ("ID", "id"),
            ("PRI", "priority"),
            ("STATUS", "status"),
            ("TITLE", "title"),
            ("HELD BY", "held"),
        ],
    );
    Ok(())
}

fn show(d: &Value) {
    println!("{}  {}", cell(&d["id"]), cell(&d["title"]));
    for key in [
        "project",
        "status",
        "type",
        "priority",
        "labels",
        "persona",
        "parent",
        "assignee",
        "attempts",
        "version",
        "created_at",
    ] {
        println!("  {key:<10} {}", field(key, &d[key]));
    }
    if d["ready"].as_bool() == Some(true) {
        println!("  ready");
    } else if d["holds"].as_array().is_some_and(|h| !h.is_empty()) {
        println!("  not ready: {}", describe_holds(&d["holds"]));
    }
    if let Some(text) = d["description"].as_str().filter(|t| !t.is_empty()) {
        println!("\n{text}");
    }
    for (title, key) in [("depends on", "dependencies"), ("needed by", "dependents")] {
        if let Some(links) = d[key].as_array().filter(|l| !l.is_empty()) {
            println!("\n{title}:");
            for l in links {
                println!(
                    "  {:<16} {:<12} {:<16} {}",
                    cell(&l["kind"]),
                    cell(&l["status"]),
                    cell(&l["id"]),
                    cell(&l["title"])
                );
            }
        }
    }
    if let Some(comments) = d["comments"].as_array().filter(|c| !c.is_empty()) {
        println!("\ncomments:");
        for c in comments {
            let author = who(&c["author"], &c["author_agent_id"]);
            println!("  {} by {author}:", cell(&c["created_at"]));
            for line in cell(&c["body"]).lines() {
                println!("    {line}");
            }
        }
    }
}

async fn dep(client: &Client, command: DepCommand) -> anyhow::Result<()> {
    match command {
        DepCommand::Add { bead, depends_on, kind } => {
            let _: Value = client
                .post(
                    &bead_path(&bead, "/dependencies")?,
                    &json!({ "depends_on": depends_on, "kind": kind }),
                )
                .await?;
            println!("{bead} now depends on {depends_on} ({kind})");
        }
        DepCommand::Rm { bead, depends_on, kind } => {
            client
                .delete(
                    &bead_path(&bead, "/dependencies")?,
                    Some(&json!({ "depends_on": depends_on, "kind": kind })),
                )
                .await?;
            println!("removed: {bead} depends on {depends_on} ({kind})");
        }
    }
    Ok(())
}
