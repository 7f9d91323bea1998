//! `loom schedule ...`: recurring work over the REST API, a cron expression and the bead it files.

use anyhow::anyhow;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Remote;
use super::beads::priority_value;
use super::client::Client;
use super::output::{cell, print_json, table};

const LIST_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("PROJECT", "project"),
    ("CRON", "cron"),
    ("TITLE", "title"),
    ("ENABLED", "enabled"),
    ("NEXT RUN", "next_run"),
    ("LAST BEAD", "last_bead"),
];

/// The fields of a schedule's bead template, as the API both shows and accepts them.
const TEMPLATE_KEYS: &[&str] = &["title", "description", "type", "priority", "labels", "persona"];

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List schedules, oldest first.
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a schedule and the bead it files.
    Show { id: String },
    /// Create a schedule: when it fires, it files a bead unless the one it filed last is open.
    Create {
        #[arg(long)]
        project: String,
        /// Five fields in UTC (minute hour day-of-month month day-of-week), or @hourly, @daily,
        /// @weekly, @monthly.
        #[arg(long)]
        cron: String,
        /// The title of the bead it files.
        #[arg(long)]
        title: String,
        #[command(flatten)]
        template: TemplateArgs,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a schedule's expression, switch it on or off, or change the bead it files
    /// (fields not given are kept).
    #[command(group(ArgGroup::new("change").required(true).multiple(true).args([
        "cron", "enable", "disable", "title", "description", "bead_type", "priority", "labels",
        "persona",
    ])))]
    Update {
        id: String,
        /// A new expression; the next run counts from now.
        #[arg(long)]
        cron: Option<String>,
        /// Switch it on; the next run counts from now (missed runs are not made up).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Switch it off; the beads it filed stay.
        #[arg(long)]
        disable: bool,
        #[arg(long)]
        title: Option<String>,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Delete a schedule; the beads it filed stay.
    Delete { id: String },
    /// Fire a schedule now, due or not (its regular time is kept); nothing is filed while a
    /// bead it filed is still open.
    Run { id: String },
}

/// The bead template's fields other than the title (required to create, optional to update).
#[derive(Debug, Args)]
pub struct TemplateArgs {
    #[arg(long)]
    description: Option<String>,
    /// task, bug, feature, chore or decision.
    #[arg(long = "type")]
    bead_type: Option<String>,
    /// 0-4 or P0-P4.
    #[arg(long)]
    priority: Option<String>,
    /// A label for the bead it files (repeatable; on update, replaces the labels).
    #[arg(long = "label")]
    labels: Option<Vec<String>>,
    #[arg(long)]
    persona: Option<String>,
}

impl TemplateArgs {
    fn is_empty(&self) -> bool {
        let TemplateArgs { description, bead_type, priority, labels, persona } = self;
        description.is_none()
            && bead_type.is_none()
            && priority.is_none()
            && labels.is_none()
            && persona.is_none()
    }

    /// Writes the given fields over `template`, leaving the others as they are.
    fn apply(self, template: &mut Value) {
        let TemplateArgs { description, bead_type, priority, labels, persona } = self;
        for (key, value) in [
            ("description", description.map(Value::from)),
            ("type", bead_type.map(Value::from)),
            ("priority", priority.map(priority_value)),
            ("labels", labels.map(|l| json!(l))),
            ("persona", persona.map(Value::from)),
        ] {
            if let Some(v) = value {
                template[key] = v;
            }
        }
    }
}

pub async fn run(remote: Remote, command: ScheduleCommand) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    let schedule: Value = match command {
        ScheduleCommand::List { project, limit } => {
            return list(&client, &remote, project, limit).await;
        }
        ScheduleCommand::Show { id } => {
            let shown: Value = client.get(&schedule_path(&id)?, &[]).await?;
            if remote.json {
                return print_json(&shown);
            }
            show(&shown);
            return Ok(());
        }
        ScheduleCommand::Run { id } => {
            let fired: Value =
                client.post(&format!("{}/run", schedule_path(&id)?), &json!({})).await?;
            if remote.json {
                return print_json(&fired);
            }
            match fired["outcome"].as_str() {
                Some("filed") => println!("filed {}", cell(&fired["bead"])),
                Some("still_open") => {
                    println!(
                        "nothing filed: {} from this schedule is still open",
                        cell(&fired["bead"])
                    )
                }
                _ => println!("the bead could not be filed; see the activity feed"),
            }
            return Ok(());
        }
        ScheduleCommand::Delete { id } => {
            client.delete::<()>(&schedule_path(&id)?, None).await?;
            println!("deleted schedule {id}");
            return Ok(());
        }
        ScheduleCommand::Create { project, cron, title, template, disabled } => {
            let mut bead = json!({ "title": title });
            template.apply(&mut bead);
            let body =
                json!({ "project": project, "cron": cron, "bead": bead, "enabled": !disabled });
            client.post("/api/v1/schedules", &body).await?
        }
        ScheduleCommand::Update { id, cron, enable, disable, title, template } => {
            let path = schedule_path(&id)?;
            let mut body = json!({});
            if let Some(c) = cron {
                body["cron"] = Value::from(c);
            }
            if enable || disable {
                body["enabled"] = Value::from(enable);
            }
            if title.is_some() || !template.is_empty() {
                let (bead, version) = merged_template(&client, &path, title, template).await?;
                body["bead"] = bead;
                body["version"] = version;
            }
            client.patch(&path, &body).await?
        }
    };
    if remote.json {
        return print_json(&schedule);
    }
    println!(
        "{} ({}): {} \"{}\" files {:?}, {}",
        cell(&schedule["id"]),
        cell(&schedule["project"]),
        if schedule["enabled"] == true { "enabled" } else { "disabled" },
        cell(&schedule["cron"]),
        cell(&schedule["bead"]["title"]),
        next_run(&schedule),
    );
    Ok(())
}

/// Schedule ids are UUIDs, so anything else is refused here rather than put in a URL path.
fn schedule_path(id: &str) -> anyhow::Result<String> {
    let id = Uuid::parse_str(id)
        .map_err(|_| anyhow!("{id:?} is not a schedule id (`loom schedule list` shows them)"))?;
    Ok(format!("/api/v1/schedules/{id}"))
}

/// The schedule's current template with the given flags written over it (PATCH replaces the
/// whole template, and `--title X` should change only the title), and the version it was
/// read at, so a change someone makes between this read and the write is refused, not lost.
async fn merged_template(
    client: &Client,
    path: &str,
    title: Option<String>,
    template: TemplateArgs,
) -> anyhow::Result<(Value, Value)> {
    let current: Value = client.get(path, &[]).await?;
    // Only the known keys: the server refuses unknown fields in a template.
    let mut bead = json!({});
    for key in TEMPLATE_KEYS {
        bead[*key] = current["bead"][*key].clone();
    }
    if let Some(t) = title {
        bead["title"] = Value::from(t);
    }
    template.apply(&mut bead);
    Ok((bead, current["version"].clone()))
}

/// A disabled schedule keeps a `next_run_at`, but it will not fire then.
fn next_run(schedule: &Value) -> String {
    if schedule["enabled"] == true {
        format!("next run {}", cell(&schedule["next_run_at"]))
    } else {
        "not running".to_owned()
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
    let mut page: Value = client.get("/api/v1/schedules", &query).await?;
    if remote.json {
        return print_json(&page);
    }
    for item in page["items"].as_array_mut().into_iter().flatten() {
        let enabled = item["enabled"] == true;
        item["title"] = item["bead"]["title"].clone();
        item["next_run"] = if enabled { item["next_run_at"].clone() } else { Value::Null };
        item["enabled"] = Value::from(if enabled { "yes" } else { "no" });
    }
    table(&page["items"], LIST_COLUMNS);
    if !page["next_cursor"].is_null() {
        eprintln!("(more schedules: raise --limit)");
    }
    Ok(())
}

fn show(s: &Value) {
    for key in ["id", "project", "cron", "enabled", "next_run_at", "last_run_at", "last_bead"] {
        let text = match key {
            "next_run_at" if s["enabled"] != true => "- (disabled)".to_owned(),
            _ => cell(&s[key]),
        };
        println!("{key:<12} {text}");
    }
    for key in ["created_by", "created_at", "updated_at"] {
        println!("{key:<12} {}", cell(&s[key]));
    }
    let bead = &s["bead"];
    println!("\nfiles the bead:");
    for key in ["title", "type", "priority", "labels", "persona"] {
        let text = match (key, &bead[key]) {
            ("priority", Value::Number(n)) => format!("P{n}"),
            (_, v) => cell(v),
        };
        println!("  {key:<10} {text}");
    }
    if let Some(text) = bead["description"].as_str().filter(|t| !t.is_empty()) {
        println!("\n{text}");
    }
}
