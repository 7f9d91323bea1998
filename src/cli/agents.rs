//! `loom agent ...`: agents over the REST API, addressed by id or by name.

use anyhow::{anyhow, bail};
use clap::{ArgGroup, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Remote;
use super::client::Client;
use super::output::{cell, print_json, table};

const LIST_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("PERSONA", "persona"),
    ("PROJECT", "project"),
    ("STATUS", "status"),
    ("LAST HEARTBEAT", "last_heartbeat_at"),
];

/// The server's largest page, so resolving a name takes as few requests as it can.
const MAX_PAGE: &str = "500";

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List agents, by name.
    List {
        /// Only agents bound to this project.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show one agent.
    Show {
        #[arg(value_name = "ID_OR_NAME")]
        agent: String,
    },
    /// Create an idle agent.
    Create {
        /// Its name (or `--name`).
        #[arg(value_name = "NAME", required_unless_present = "name", conflicts_with = "name")]
        positional_name: Option<String>,
        /// Its name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        persona: String,
        /// Bind it to one project (default: it takes work from any project).
        #[arg(long)]
        project: Option<String>,
    },
    /// Rename an agent or change its persona or project (pause it first if it is working).
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    Update {
        #[arg(value_name = "ID_OR_NAME")]
        agent: String,
        #[arg(long, group = "change")]
        name: Option<String>,
        #[arg(long, group = "change")]
        persona: Option<String>,
        #[arg(long, group = "change", conflicts_with = "unbind")]
        project: Option<String>,
        /// Unbind it from its project, so it takes work from any project.
        #[arg(long, group = "change")]
        unbind: bool,
    },
    /// Delete an agent (not while it works).
    Delete {
        #[arg(value_name = "ID_OR_NAME")]
        agent: String,
    },
    /// Pause an agent; a bead it is working on goes back to open.
    Pause {
        #[arg(value_name = "ID_OR_NAME")]
        agent: String,
    },
    /// Resume a paused agent: it takes work again.
    Resume {
        #[arg(value_name = "ID_OR_NAME")]
        agent: String,
    },
}

pub async fn run(remote: Remote, command: AgentCommand) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    let agent: Value = match command {
        AgentCommand::List { project, limit } => {
            return list(&client, &remote, project, limit).await;
        }
        AgentCommand::Show { agent } => return show(&client, &remote, &agent).await,
        AgentCommand::Delete { agent } => {
            let id = resolve(&client, &agent).await?;
            client.delete::<()>(&agent_path(&id), None).await?;
            println!("deleted agent {agent}");
            return Ok(());
        }
        AgentCommand::Create { positional_name, name, persona, project } => {
            let name = name.or(positional_name);
            let mut body = json!({ "name": name, "persona": persona });
            if let Some(p) = project {
                body["project"] = Value::from(p);
            }
            client.post("/api/v1/agents", &body).await?
        }
        AgentCommand::Update { agent, name, persona, project, unbind } => {
            let id = resolve(&client, &agent).await?;
            client.patch(&agent_path(&id), &patch_body(name, persona, project, unbind)).await?
        }
        AgentCommand::Pause { agent } => act(&client, &agent, "pause").await?,
        AgentCommand::Resume { agent } => act(&client, &agent, "resume").await?,
    };
    if remote.json {
        return print_json(&agent);
    }
    let project = match &agent["project"] {
        Value::Null => "any project".to_owned(),
        p => format!("project {}", cell(p)),
    };
    println!(
        "{} ({}): {}, persona {}, {project}",
        cell(&agent["name"]),
        cell(&agent["id"]),
        cell(&agent["status"]),
        cell(&agent["persona"]),
    );
    Ok(())
}

fn agent_path(id: &str) -> String {
    format!("/api/v1/agents/{id}")
}

/// Only the fields asked for; `project: null` is how the API unbinds.
fn patch_body(
    name: Option<String>,
    persona: Option<String>,
    project: Option<String>,
    unbind: bool,
) -> Value {
    let mut body = json!({});
    if let Some(n) = name {
        body["name"] = Value::from(n);
    }
    if let Some(p) = persona {
        body["persona"] = Value::from(p);
    }
    if unbind {
        body["project"] = Value::Null;
    } else if let Some(p) = project {
        body["project"] = Value::from(p);
    }
    body
}

/// POSTs to `/agents/{id}/<action>` (pause, resume) and returns the agent.
async fn act(client: &Client, agent: &str, action: &str) -> anyhow::Result<Value> {
    let id = resolve(client, agent).await?;
    let path = format!("{}/{action}", agent_path(&id));
    Ok(client.send::<(), Value>(Method::POST, &path, &[], None).await?)
}

/// The id of the agent the user means: a UUID as it is, anything else looked up by name.
pub(super) async fn resolve(client: &Client, arg: &str) -> anyhow::Result<String> {
    // Names are at most 32 characters, so only the 36-character hyphenated form can be
    // told apart from a name; a 32-digit UUID without dashes is looked up as a name.
    if arg.len() == 36 && Uuid::parse_str(arg).is_ok() {
        return Ok(arg.to_owned());
    }
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", MAX_PAGE.to_owned())];
        query.extend(cursor.take().map(|c| ("cursor", c)));
        let page: Value = client.get("/api/v1/agents", &query).await?;
        let mut items = page["items"].as_array().into_iter().flatten();
        if let Some(found) = items.find(|a| a["name"] == arg) {
            return found["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the server listed agent {arg:?} without an id"));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => bail!("no agent named {arg:?}"),
        }
    }
}

async fn list(
    client: &Client,
    remote: &Remote,
    project: Option<String>,
    limit: i64,
) -> anyhow::Result<()> {
    let mut query = vec![("limit", limit.to_string())];
    query.extend(project.map(|p| ("project", p)));
    let page: Value = client.get("/api/v1/agents", &query).await?;
    if remote.json {
        return print_json(&page);
    }
    table(&page["items"], LIST_COLUMNS);
    if !page["next_cursor"].is_null() {
        eprintln!("(more agents: raise --limit)");
    }
    warn_if_agents_cannot_work(client).await;
    Ok(())
}

/// Idle agents look ready to work; when the gateway keeps them from it, say so and how to fix
/// it. Best effort: a status that cannot be read says nothing.
async fn warn_if_agents_cannot_work(client: &Client) {
    let Ok(status) = client.get::<Value>("/api/v1/status", &[]).await else { return };
    let gateway = &status["gateway"];
    let reason = gateway["reason"].as_str().unwrap_or("no reason given");
    if gateway["configured"] == false {
        eprintln!("note: agents do not work: {reason}");
    } else if gateway["health"] == "down" {
        eprintln!("note: agents are waiting: the LLM gateway is down: {reason}");
    }
}

async fn show(client: &Client, remote: &Remote, agent: &str) -> anyhow::Result<()> {
    let id = resolve(client, agent).await?;
    let shown: Value = client.get(&agent_path(&id), &[]).await?;
    if remote.json {
        return print_json(&shown);
    }
    for key in [
        "id",
        "name",
        "persona",
        "project",
        "status",
        "last_heartbeat_at",
        "created_at",
        "updated_at",
    ] {
        println!("{key:<17} {}", cell(&shown[key]));
    }
    warn_if_agents_cannot_work(client).await;
    Ok(())
}
