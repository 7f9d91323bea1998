//! Commands that run on the server's side: serving, migrating, creating users.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::app::{Application, open_database};
use crate::config::{Config, DatabaseSource, DbConfig, LogFormat, Secret};
use crate::executor::{ExecutorConfig, Limits};
use crate::gateway::GatewayConfig;
use crate::users::{Role, User, Username};
use crate::workbench::actions::ToolsSetting;

/// Boolean settings as environments write them: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
fn boolish() -> impl Fn(&str) -> Result<bool, String> + Clone {
    |value| match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "0" | "false" | "no" | "off" | "n" | "" => Ok(false),
        _ => Err("write 1 or 0, true or false, yes or no, on or off".to_owned()),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Postgres URL; unset: a private cluster under the data dir.
    #[arg(long, env = "LOOM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Repositories, worktrees and the private database live here.
    #[arg(long, env = "LOOM_DATA_DIR", default_value = "./.loom")]
    pub data_dir: PathBuf,
    /// HTTP address to listen on.
    #[arg(long, env = "LOOM_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Persona definitions (`<name>/PERSONA.md`) that add to or override the built-in team.
    #[arg(long, env = "LOOM_PERSONAS_DIR")]
    pub personas_dir: Option<PathBuf>,
    #[arg(long, env = "LOOM_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Most database connections the server holds.
    #[arg(long, env = "LOOM_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// Dispatcher loops to run (0 disables dispatch in this process).
    #[arg(long, env = "LOOM_DISPATCHERS", default_value_t = 1)]
    pub dispatchers: usize,
    /// Seconds a claim lives without renewal.
    #[arg(long, env = "LOOM_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,
    /// Seconds between dispatch sweeps when nothing nudges the dispatcher.
    #[arg(long, env = "LOOM_DISPATCH_INTERVAL_SECONDS", default_value_t = 2)]
    pub dispatch_interval_seconds: u64,
    /// When the ticker returns beads whose lease expired (six-field cron, seconds first).
    #[arg(long, env = "LOOM_TICKER_LEASES", default_value_t = crate::ticker::TickerConfig::default().expire_leases)]
    pub ticker_leases: String,
    /// When the ticker frees agents marked working without a live claim.
    #[arg(long, env = "LOOM_TICKER_ZOMBIES", default_value_t = crate::ticker::TickerConfig::default().free_zombies)]
    pub ticker_zombies: String,
    /// When the ticker reopens beads parked while the gateway was down.
    #[arg(long, env = "LOOM_TICKER_PARKED", default_value_t = crate::ticker::TickerConfig::default().resume_parked)]
    pub ticker_parked: String,
    /// When the ticker fires due schedules.
    #[arg(long, env = "LOOM_TICKER_SCHEDULES", default_value_t = crate::ticker::TickerConfig::default().schedules)]
    pub ticker_schedules: String,
    /// Run no ticker in this process (another replica runs it).
    #[arg(long, env = "LOOM_NO_TICKER", value_parser = boolish())]
    pub no_ticker: bool,
    /// Run no notifier in this process (another replica derives the notifications).
    #[arg(long, env = "LOOM_NO_NOTIFIER", value_parser = boolish())]
    pub no_notifier: bool,
    /// The LLM gateway's base URL, ending in /v1 (unset: executors stay idle).
    #[arg(long, env = "LOOM_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// The gateway's API key; never logged or shown.
    #[arg(long, env = "LOOM_GATEWAY_API_KEY", hide_env_values = true)]
    pub gateway_api_key: Option<String>,
    /// The model to ask for.
    #[arg(long, env = "LOOM_GATEWAY_MODEL")]
    pub gateway_model: Option<String>,
    /// Seconds between gateway probes while it is healthy.
    #[arg(long, env = "LOOM_GATEWAY_PROBE_SECONDS", default_value_t = 30)]
    pub gateway_probe_seconds: u64,
    /// Longest a whole reply may take, in seconds.
    #[arg(long, env = "LOOM_GATEWAY_TIMEOUT_SECONDS", default_value_t = 300)]
    pub gateway_timeout_seconds: u64,
    /// Seconds a bead parked for the gateway waits before it is tried again, doubled with
    /// each of its parks (at most 30 minutes).
    #[arg(long, env = "LOOM_PARK_BACKOFF_SECONDS", default_value_t = 30)]
    pub park_backoff_seconds: u64,
    /// Seconds the gateway must stay up after an outage before people are told it is back.
    #[arg(long, env = "LOOM_GATEWAY_STABLE_UP_SECONDS", default_value_t = 300)]
    pub gateway_stable_up_seconds: u64,
    /// Claim beads even of projects no process runs an executor for (something outside Loom
    /// completes the runs); by default such beads wait.
    #[arg(long, env = "LOOM_DISPATCH_WITHOUT_EXECUTORS", value_parser = boolish())]
    pub dispatch_without_executors: bool,
    /// Run no executors in this process (another replica runs the agents' work).
    #[arg(long, env = "LOOM_NO_EXECUTORS", value_parser = boolish())]
    pub no_executors: bool,
    /// Seconds a process owns a project's executor without renewing; a dead owner's projects
    /// are taken over after this.
    #[arg(long, env = "LOOM_EXECUTOR_LEASE_SECONDS", default_value_t = 30)]
    pub executor_lease_seconds: u64,
    /// Replies from the model a run may take.
    #[arg(long, env = "LOOM_MAX_TURNS", default_value_t = 40)]
    pub max_turns: u32,
    /// The model's context window, in tokens: a run's conversation and a chat reply's are
    /// kept inside it (old results are elided first, then a run's old turns summarised).
    #[arg(long, env = "LOOM_GATEWAY_CONTEXT_TOKENS", default_value_t = crate::executor::DEFAULT_CONTEXT_TOKENS)]
    pub gateway_context_tokens: u64,
    /// How the model's replies carry actions: `native` tool calls (the tools are sent with
    /// every request), `text`, JSON written in the reply, for gateways and models without
    /// tool calling, or `auto`: native until the gateway refuses tools, then text. Runs and
    /// chats alike.
    #[arg(long, env = "LOOM_GATEWAY_TOOLS", value_enum, default_value_t = ToolsSetting::Auto)]
    pub gateway_tools: ToolsSetting,
    /// Variables of this environment that agents' commands get too, comma-separated
    /// (rustup's and cargo's homes are passed on already; `LOOM_*` never is).
    #[arg(long, env = "LOOM_RUN_PASS_ENV", value_delimiter = ',')]
    pub run_pass_env: Vec<String>,
    /// Minutes a run may take before it is stopped as failed.
    #[arg(long, env = "LOOM_RUN_TIMEOUT_MINUTES", default_value_t = 120)]
    pub run_timeout_minutes: u64,
    /// NATS server for events between replicas (unset: the in-process bus, one replica).
    #[arg(long, env = "LOOM_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// Subjects are `<prefix>.<kind>`; the JetStream stream is the prefix in capitals.
    #[arg(long, env = "LOOM_NATS_PREFIX", default_value = "loom")]
    pub nats_prefix: String,
    /// Tokens (prompt plus completion) a run may spend.
    #[arg(long, env = "LOOM_RUN_TOKEN_BUDGET", default_value_t = 1_000_000)]
    pub run_token_budget: u64,
    /// Minutes a browser session lasts without a request.
    #[arg(long, env = "LOOM_SESSION_IDLE_MINUTES", default_value_t = 24 * 60)]
    pub session_idle_minutes: u64,
    /// Tokens (prompt plus completion) one pair-programming conversation may spend.
    #[arg(long, env = "LOOM_CHAT_TOKEN_BUDGET", default_value_t = 500_000)]
    pub chat_token_budget: u64,
    /// Gateway calls one chat reply may make (one per round of actions).
    #[arg(long, env = "LOOM_CHAT_MAX_TURNS", default_value_t = 20)]
    pub chat_max_turns: u32,
    /// Hours a browser session lasts after its login, however much it is used.
    #[arg(long, env = "LOOM_SESSION_MAX_HOURS", default_value_t = 7 * 24)]
    pub session_max_hours: u64,
    /// At shutdown, seconds running turns have to reach a checkpoint (the gateway call under
    /// way answered and its actions done) before they are stopped where they are and handed
    /// over.
    #[arg(long, env = "LOOM_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// Tokens (prompt plus completion) the whole fleet may spend per spend window; once
    /// spent, no new work is claimed until the window moves on (unset or 0: no limit).
    #[arg(long, env = "LOOM_FLEET_TOKEN_BUDGET")]
    pub fleet_token_budget: Option<u64>,
    /// The rolling window the fleet's and each project's token budget is counted over.
    #[arg(long, env = "LOOM_SPEND_WINDOW_HOURS", default_value_t = 24)]
    pub spend_window_hours: u64,
    /// Addresses of the proxies in front of Loom, comma-separated: their `X-Forwarded-For`
    /// names the client whose failed logins are counted (unset: the connection's peer).
    #[arg(long, env = "LOOM_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A bearer token `/metrics` then requires (unset: open, as Prometheus expects).
    #[arg(long, env = "LOOM_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// `auto`: agents' commands run in a bubblewrap sandbox, and are refused when none can
    /// be made; `off`: they run unconfined, as Loom's user (an explicit, logged choice).
    #[arg(long, env = "LOOM_SANDBOX", value_enum, default_value = "auto")]
    pub sandbox: crate::workbench::SandboxMode,
    /// When Loom runs as root, the unprivileged user agents' commands run as.
    #[arg(long, env = "LOOM_SANDBOX_USER", default_value = "nobody")]
    pub sandbox_user: String,
    /// More host directories agents' commands may read, comma-separated (toolchains
    /// outside /usr and off PATH).
    #[arg(long, env = "LOOM_SANDBOX_READ_ONLY", value_delimiter = ',')]
    pub sandbox_read_only: Vec<std::path::PathBuf>,
    /// Memory (data) one process of an agent's command may allocate, in MiB.
    #[arg(long, env = "LOOM_SANDBOX_MEMORY_MB", default_value_t = 4096)]
    pub sandbox_memory_mb: u64,
    /// Processes one agent's command may have at once.
    #[arg(long, env = "LOOM_SANDBOX_PROCESSES", default_value_t = 512)]
    pub sandbox_processes: u64,
    /// Largest file an agent's command may write, in MiB.
    #[arg(long, env = "LOOM_SANDBOX_FILE_SIZE_MB", default_value_t = 1024)]
    pub sandbox_file_size_mb: u64,
}

impl ServerArgs {
    pub fn config(&self) -> anyhow::Result<Config> {
        self.check_leases()?;
        let database = match self.database_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => DatabaseSource::Url(Secret::new(url)),
            None => DatabaseSource::Embedded,
        };
        Ok(Config {
            bind: self.bind.clone(),
            database,
            db: DbConfig { pool_size: self.db_pool_size.max(2), ..DbConfig::default() },
            data_dir: self.data_dir.clone(),
            personas_dir: self.personas_dir.clone(),
            dispatchers: self.dispatchers,
            dispatch: crate::dispatch::DispatchConfig {
                lease: Duration::from_secs(self.lease_seconds.max(5)),
                sweep_interval: Duration::from_secs(self.dispatch_interval_seconds.max(1)),
                require_executor: !self.dispatch_without_executors,
                spend: crate::dispatch::limits::SpendPolicy {
                    fleet_budget: self
                        .fleet_token_budget
                        .filter(|n| *n > 0)
                        .map(|n| n.min(i64::MAX as u64) as i64),
                    window: Duration::from_secs(self.spend_window_hours.max(1) * 3600),
                    ..Default::default()
                },
                ..Default::default()
            },
            ticker: (!self.no_ticker).then(|| crate::ticker::TickerConfig {
                expire_leases: self.ticker_leases.clone(),
                free_zombies: self.ticker_zombies.clone(),
                resume_parked: self.ticker_parked.clone(),
                schedules: self.ticker_schedules.clone(),
            }),
            retry: crate::beads::RetryPolicy {
                park_base: Duration::from_secs(self.park_backoff_seconds),
                ..Default::default()
            },
            gateway: self.gateway()?,
            executors: (!self.no_executors).then(|| ExecutorConfig {
                ownership_lease: Duration::from_secs(self.executor_lease_seconds.max(3)),
                bead_lease: Duration::from_secs(self.lease_seconds.max(5)),
                limits: Limits {
                    max_turns: self.max_turns.max(1),
                    token_budget: self.run_token_budget,
                    max_context_chars: Limits::context_chars(self.gateway_context_tokens),
                    max_duration: Duration::from_secs(self.run_timeout_minutes.max(1) * 60),
                    ..Limits::default()
                },
                run_pass_env: self.run_pass_env.clone(),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
                tools: self.gateway_tools,
                ..ExecutorConfig::default()
            }),
            events: self.events()?,
            sessions: crate::users::sessions::SessionConfig {
                idle: Duration::from_secs(self.session_idle_minutes.max(1) * 60),
                absolute: Duration::from_secs(self.session_max_hours.max(1) * 3600),
            },
            chat: crate::chat::ChatConfig {
                token_budget: self.chat_token_budget,
                max_turns: self.chat_max_turns.max(1),
                max_context_chars: Limits::context_chars(self.gateway_context_tokens),
                run_pass_env: self.run_pass_env.clone(),
                tools: self.gateway_tools,
                ..Default::default()
            },
            metrics_token: self.metrics_token.as_deref().filter(|t| !t.is_empty()).map(Secret::new),
            trusted_proxies: self.trusted_proxies.clone(),
            sandbox: crate::workbench::SandboxConfig {
                mode: self.sandbox,
                user: self.sandbox_user.clone(),
                read_only: self
                    .sandbox_read_only
                    .iter()
                    .filter(|p| p.is_absolute())
                    .cloned()
                    .collect(),
                memory_mb: self.sandbox_memory_mb.max(64),
                processes: self.sandbox_processes.max(8),
                file_size_mb: self.sandbox_file_size_mb.max(1),
            },
        })
    }

    fn events(&self) -> anyhow::Result<crate::config::EventsConfig> {
        let nats = match self.nats_url.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let prefix = self.nats_prefix.trim();
                if prefix.is_empty()
                    || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    bail!("LOOM_NATS_PREFIX must be letters, digits, '-' or '_', got {prefix:?}");
                }
                let mut nats = crate::events::NatsConfig::new(url);
                nats.prefix = prefix.to_owned();
                nats.stream = prefix.to_ascii_uppercase().replace('-', "_");
                Some(nats)
            }
        };
        Ok(crate::config::EventsConfig { nats, notifier: !self.no_notifier, ..Default::default() })
    }

    /// A dead owner's runs must be adopted before their beads' leases lapse, or each
    /// takeover would cost the beads an attempt.
    fn check_leases(&self) -> anyhow::Result<()> {
        if !self.no_executors && self.executor_lease_seconds.max(3) >= self.lease_seconds.max(5) {
            bail!(
                "LOOM_EXECUTOR_LEASE_SECONDS ({}) must be shorter than LOOM_LEASE_SECONDS ({}): \
                 a dead process's runs are taken over after the first, and fail after the second",
                self.executor_lease_seconds,
                self.lease_seconds
            );
        }
        Ok(())
    }

    fn gateway(&self) -> anyhow::Result<Option<GatewayConfig>> {
        let Some(url) = self.gateway_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let Some(model) = self.gateway_model.as_deref().filter(|m| !m.is_empty()) else {
            bail!(
                "LOOM_GATEWAY_URL is set but LOOM_GATEWAY_MODEL is not: name the model to ask for"
            );
        };
        let mut config = GatewayConfig::new(url, model);
        config.api_key = self.gateway_api_key.as_deref().filter(|k| !k.is_empty()).map(Secret::new);
        config.probe_interval = Duration::from_secs(self.gateway_probe_seconds.max(1));
        config.request_timeout = Duration::from_secs(self.gateway_timeout_seconds.max(1));
        config.stable_up = Duration::from_secs(self.gateway_stable_up_seconds);
        Ok(Some(config))
    }
}

pub async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_format);
    let app = Application::build(args.config()?).await?;
    app.run_until_stopped().await
}

pub async fn migrate(args: ServerArgs) -> anyhow::Result<()> {
    crate::telemetry::init(args.log_format);
    let config = args.config()?;
    let (url, local_pg) = open_database(&config).await?;
    let applied = crate::db::migrate(&url).await;
    if let Some(pg) = local_pg {
        pg.stop().await?;
    }
    let applied = applied?;
    if applied.is_empty() {
        println!("the database is up to date");
    } else {
        println!("applied: {}", applied.join(", "));
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (prompts for the password, or reads it from stdin).
    Create {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum, default_value = "member")]
        role: RoleArg,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    Member,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Member => Role::Member,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// Whether a password is being chosen (typed twice, so a typo is caught) or given (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    New,
    Existing,
}

/// The password from stdin's first line (asked for, or when stdin is not a terminal), else
/// typed at the terminal: twice for a new one.
pub fn read_password(from_stdin: bool, kind: Password) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password")?;
        let password = line.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            bail!("no password on standard input");
        }
        return Ok(password.to_owned());
    }
    let first = rpassword::prompt_password("password: ")?;
    if kind == Password::New && rpassword::prompt_password("again: ")? != first {
        bail!("the passwords differ");
    }
    Ok(first)
}

pub async fn user(command: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Create { username, role, password_stdin, server } = command;
    crate::telemetry::init(server.log_format);
    let username = Username::parse(&username)?;
    let password = read_password(password_stdin, Password::New)?;
    let config = server.config()?;
    let (url, local_pg) = open_database(&config).await?;
    let created = async {
        crate::db::migrate(&url).await?;
        let mut conn =
            <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url)
                .await?;
        anyhow::Ok(User::create(&mut conn, &username, &password, role.into()).await?)
    }
    .await;
    if let Some(pg) = local_pg {
        pg.stop().await?;
    }
    let user = created?;
    println!("created {} ({}) with id {}", user.username, user.role, user.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        let mut all = vec!["loom"];
        all.extend_from_slice(args);
        Cmd::try_parse_from(all)?.server.config()
    }

    #[test]
    fn a_gateway_needs_a_model_and_keeps_its_key_secret() {
        let err = config(&["--gateway-url", "http://gw:8080/v1"]).expect_err("refused");
        assert!(err.to_string().contains("LOOM_GATEWAY_MODEL"), "{err}");
        let c = config(&[
            "--gateway-url",
            "http://gw:8080/v1",
            "--gateway-model",
            "qwen",
            "--gateway-api-key",
            "sk-secret",
            "--gateway-probe-seconds",
            "7",
            "--gateway-stable-up-seconds",
            "60",
            "--park-backoff-seconds",
            "5",
        ])
        .expect("config");
        let gw = c.gateway.clone().expect("gateway");
        assert_eq!((gw.model.as_str(), gw.probe_interval), ("qwen", Duration::from_secs(7)));
        assert_eq!(
            (gw.stable_up, c.retry.park_base),
            (Duration::from_secs(60), Duration::from_secs(5))
        );
        assert_eq!(gw.api_key.as_ref().map(Secret::expose), Some("sk-secret"));
        assert!(!format!("{c:?}").contains("sk-secret"));
        assert!(config(&[]).expect("config").gateway.is_none());
        let err = config(&["--executor-lease-seconds", "60", "--lease-seconds", "60"])
            .expect_err("refused");
        assert!(err.to_string().contains("must be shorter"), "{err}");
        assert!(config(&["--executor-lease-seconds", "60", "--lease-seconds", "90"]).is_ok());
    }

    #[test]
    fn a_process_runs_a_notifier_unless_told_not_to() {
        assert!(config(&[]).expect("config").events.notifier);
        assert!(!config(&["--no-notifier"]).expect("config").events.notifier);
    }
}
