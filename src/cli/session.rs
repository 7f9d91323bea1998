//! `loom login` and API tokens; the saved URL and token live in the user's config dir.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Remote;
use super::client::{Client, default_url};
use super::output::{print_json, table};
use super::server::{Password, read_password};

/// What `loom login` remembers.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub url: Option<String>,
    pub token: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("loom").join("credentials.json"))
}

impl Saved {
    pub fn load() -> Option<Saved> {
        let text = std::fs::read_to_string(config_path()?).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the file readable by its owner only: it holds a secret.
    pub fn store(&self) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = config_path().context("no HOME or XDG_CONFIG_HOME to save the login in")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Loom's URL (default: http://<LOOM_BIND>, else http://127.0.0.1:8080).
    #[arg(long, env = "LOOM_URL")]
    pub url: Option<String>,
    #[arg(long)]
    pub username: String,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => {
            let (url, from) = default_url();
            eprintln!("logging in to {url} ({from}; --url or LOOM_URL to choose)");
            url
        }
    };
    let password = read_password(args.password_stdin, Password::Existing)?;
    let client = Client::new(&url, None)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".into());
    let answer: Value = client
        .post(
            "/api/v1/auth/login",
            &json!({ "username": args.username, "password": password, "token": true,
                     "token_name": format!("cli@{host}") }),
        )
        .await?;
    let token = answer["token"].as_str().context("the server sent no token")?.to_owned();
    let path = Saved { url: Some(client.base().to_owned()), token: Some(token) }.store()?;
    println!("logged in to {} as {}; saved to {}", client.base(), args.username, path.display());
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List your tokens.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

pub async fn token(remote: Remote, command: TokenCommand) -> anyhow::Result<()> {
    let client = Client::from_remote(&remote)?;
    match command {
        TokenCommand::Create { name } => {
            let created: Value = client.post("/api/v1/tokens", &json!({ "name": name })).await?;
            if remote.json {
                return print_json(&created);
            }
            println!("{}", created["secret"].as_str().unwrap_or_default());
            eprintln!("(this secret is shown once; store it now)");
        }
        TokenCommand::List => {
            let list: Value = client.get("/api/v1/tokens", &[]).await?;
            if remote.json {
                return print_json(&list);
            }
            table(
                &list["items"],
                &[
                    ("ID", "id"),
                    ("NAME", "name"),
                    ("PREFIX", "prefix"),
                    ("LAST USED", "last_used_at"),
                ],
            );
        }
        TokenCommand::Revoke { id } => {
            client.delete::<()>(&format!("/api/v1/tokens/{id}"), None).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
