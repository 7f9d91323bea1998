//! The command line: `serve` and the other server-side commands, and client commands that
//! talk to a running Loom over its REST API.

mod agents;
mod beads;
mod chat;
mod client;
mod feed;
mod output;
mod personas;
mod projects;
mod runs;
mod schedules;
mod server;
mod session;
pub mod sse;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use client::{Client, ClientError};

#[derive(Debug, Parser)]
#[command(name = "loom", version, about = "Run a team of AI agents on software projects")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the client commands send their requests.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// Loom's URL (default: the one saved by `loom login`, else http://127.0.0.1:8080).
    #[arg(long, env = "LOOM_URL", global = true)]
    pub url: Option<String>,
    /// An API token (default: the one saved by `loom login`).
    #[arg(long, env = "LOOM_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(server::ServerArgs),
    /// Apply pending database migrations and exit.
    Migrate(server::ServerArgs),
    /// Manage users directly in the database (the first admin is created this way).
    User {
        #[command(subcommand)]
        command: server::UserCommand,
    },
    /// Log in and save the URL and an API token for later commands.
    Login(session::LoginArgs),
    /// Manage your API tokens.
    Token {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: session::TokenCommand,
    },
    /// Projects.
    Project {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: projects::ProjectCommand,
    },
    /// Beads: work items with dependencies.
    Bead {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: beads::BeadCommand,
    },
    /// Agents: named workers, each with a persona and optionally one project.
    Agent {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: agents::AgentCommand,
    },
    /// Personas: who an agent is, loaded from the server's personas directory.
    Persona {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: personas::PersonaCommand,
    },
    /// Runs: agents' work on beads, with their transcripts.
    Run {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: runs::RunCommand,
    },
    /// The activity feed: what happened, newest last; `--follow` streams it live.
    Feed {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        args: feed::FeedArgs,
    },
    /// Pair with an agent: a conversation in the terminal, its replies streamed as written.
    Chat {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        args: chat::ChatArgs,
    },
    /// Schedules: recurring work, a cron expression and the bead it files.
    Schedule {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: schedules::ScheduleCommand,
    },
}

/// Runs a command; errors are printed once, here, and become a non-zero exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => server::serve(args).await,
        Command::Migrate(args) => server::migrate(args).await,
        Command::User { command } => server::user(command).await,
        Command::Login(args) => session::login(args).await,
        Command::Token { remote, command } => session::token(remote, command).await,
        Command::Project { remote, command } => projects::run(remote, command).await,
        Command::Bead { remote, command } => beads::run(remote, command).await,
        Command::Agent { remote, command } => agents::run(remote, command).await,
        Command::Persona { remote, command } => personas::run(remote, command).await,
        Command::Run { remote, command } => runs::run(remote, command).await,
        Command::Schedule { remote, command } => schedules::run(remote, command).await,
        Command::Feed { remote, args } => feed::run(remote, args).await,
        Command::Chat { remote, args } => chat::run(remote, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ClientError>() {
                Some(client_error) => eprintln!("error: {client_error}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
