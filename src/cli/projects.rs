//! `loom project ...`

use clap::Subcommand;
use serde_json::{Value, json};

use super::Remote;
use super::client::Client;
use super::output::{print_json, table};

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project (admin).
    Create {
        /// A slug, e.g. `web`.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A local path or a git URL.
        #[arg(long)]
        repo: String,
        #[arg(long)]
        branch: Option<String>,
        /// Bead id prefix (default: the id).
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        max_parallel: Option<i32>,
        /// Whether agents' commands may reach the network: none (default) or open.
        #[arg(long)]
        network: Option<String>,
        /// Run with the network open in a bead's worktree before each run (`npm ci`).
        #[arg(long)]
        setup_command: Option<String>,
    },
    /// List projects.
    List,
    /// Show one project.
    Show { id: String },
}

pub async fn run(remote: Remote, command: ProjectCommand) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    let shown: Value = match command {
        ProjectCommand::Create {
            id,
            name,
            repo,
            branch,
            prefix,
            max_parallel,
            network,
            setup_command,
        } => {
            let mut body = json!({ "id": id, "name": name, "repo": repo });
            for (key, value) in [
                ("branch", branch.map(Value::from)),
                ("prefix", prefix.map(Value::from)),
                ("max_parallel", max_parallel.map(Value::from)),
                ("network", network.map(Value::from)),
                ("setup_command", setup_command.map(Value::from)),
            ] {
                if let Some(v) = value {
                    body[key] = v;
                }
            }
            client.post("/api/v1/projects", &body).await?
        }
        ProjectCommand::List => {
            let list: Value = client.get("/api/v1/projects", &[("limit", "500".into())]).await?;
            if remote.json {
                return print_json(&list);
            }
            table(
                &list["items"],
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("PREFIX", "prefix"),
                    ("BRANCH", "branch"),
                    ("REPO", "repo"),
                ],
            );
            return Ok(());
        }
        ProjectCommand::Show { id } => client.get(&format!("/api/v1/projects/{id}"), &[]).await?,
    };
    if remote.json {
        return print_json(&shown);
    }
    let keys = [
        "id",
        "name",
        "repo",
        "branch",
        "prefix",
        "max_parallel",
        "max_attempts",
        "network",
        "setup_command",
        "repo_state",
        "repo_error",
        "repo_checked_at",
        "created_at",
    ];
    for key in keys {
        println!("{key:<15} {}", super::output::cell(&shown[key]));
    }
    Ok(())
}
