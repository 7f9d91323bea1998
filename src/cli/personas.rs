//! `loom persona ...`: the personas the server has loaded, and reloading them from its disk.

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::Remote;
use super::client::{Client, segment};
use super::output::{cell, print_json, table};

#[derive(Debug, Subcommand)]
pub enum PersonaCommand {
    /// List personas.
    List,
    /// Show a persona: its front matter, then its instructions.
    Show { name: String },
    /// Re-read the server's personas directory (admin). Files that fail to load are listed
    /// by path and line, and make the command fail.
    Reload,
}

pub async fn run(remote: Remote, command: PersonaCommand) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    match command {
        PersonaCommand::List => {
            let list: Value = client.get("/api/v1/personas", &[]).await?;
            if remote.json {
                return print_json(&list);
            }
            table(
                &list["items"],
                &[
                    ("NAME", "name"),
                    ("DISPLAY NAME", "display_name"),
                    ("ROLE", "role"),
                    ("LABELS", "labels"),
                ],
            );
            Ok(())
        }
        PersonaCommand::Show { name } => {
            let persona: Value =
                client.get(&format!("/api/v1/personas/{}", segment(&name)?), &[]).await?;
            if remote.json {
                return print_json(&persona);
            }
            show(&persona);
            Ok(())
        }
        PersonaCommand::Reload => reload(&client, &remote).await,
    }
}

fn show(persona: &Value) {
    for key in ["name", "display_name", "role", "description", "labels", "updated_at"] {
        println!("{key:<12} {}", cell(&persona[key]));
    }
    if let Some(text) = persona["instructions"].as_str().filter(|t| !t.trim().is_empty()) {
        println!("\n{}", text.trim_end());
    }
}

async fn reload(client: &Client, remote: &Remote) -> anyhow::Result<()> {
    let report: Value =
        client.send::<(), Value>(Method::POST, "/api/v1/personas/reload", &[], None).await?;
    let empty = Vec::new();
    let errors = report["errors"].as_array().unwrap_or(&empty);
    if remote.json {
        print_json(&report)?;
    } else {
        let names = |key: &str| -> Vec<String> {
            report[key].as_array().unwrap_or(&empty).iter().map(cell).collect()
        };
        let (loaded, from_dir) = (names("loaded"), names("from_dir"));
        let own = match from_dir.len() {
            0 => "none from LOOM_PERSONAS_DIR".to_owned(),
            n => format!("{n} from LOOM_PERSONAS_DIR: {}", from_dir.join(", ")),
        };
        println!("loaded {} personas ({own})", loaded.len());
        for e in errors {
            let at = match e["line"].as_u64() {
                Some(line) => format!("{}:{line}", cell(&e["path"])),
                None => cell(&e["path"]),
            };
            eprintln!("{at}: {}", cell(&e["message"]));
        }
    }
    // A skipped file means the persona someone just edited is not what the server runs.
    match errors.len() {
        0 => Ok(()),
        1 => bail!("1 persona file could not be loaded"),
        n => bail!("{n} persona files could not be loaded"),
    }
}
