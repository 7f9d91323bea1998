//! Typed configuration, read once from `LOOM_*` variables (or flags) by the binary and passed
//! explicitly to whatever needs it. There is no global settings singleton.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A value that must never be logged or echoed back.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Where the database comes from.
#[derive(Debug, Clone)]
pub enum DatabaseSource {
    /// A server someone else runs (`LOOM_DATABASE_URL`).
    Url(Secret),
    /// A private cluster Loom runs under `<data dir>/postgres`.
    Embedded,
}

#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Connections the API may hold at once.
    pub pool_size: usize,
    /// How long a request waits for a free connection before it gets a 503.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run.
    pub statement_timeout: Duration,
    /// The connections' `application_name`: it names the replica that wrote an activity
    /// row. `Application::build` sets one per process.
    pub application_name: String,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            application_name: "loom".into(),
            pool_size: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything `loom serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub database: DatabaseSource,
    pub db: DbConfig,
    pub data_dir: PathBuf,
    /// Personas that add to or override the built-in team.
    pub personas_dir: Option<PathBuf>,
    /// Dispatcher loops this process runs (0: none, for a replica that only serves HTTP).
    pub dispatchers: usize,
    pub dispatch: crate::dispatch::DispatchConfig,
    /// When the healing jobs and schedules run; `None` runs no ticker in this process.
    pub ticker: Option<crate::ticker::TickerConfig>,
    /// The back-off of a bead whose run failed.
    pub retry: crate::beads::RetryPolicy,
    /// The LLM gateway; `None` leaves executors idle and says so in `/api/v1/status`.
    pub gateway: Option<crate::gateway::GatewayConfig>,
    /// Whether this process runs executors, and how; `None` runs none (tests drive them).
    pub executors: Option<crate::executor::ExecutorConfig>,
    pub events: EventsConfig,
    /// How long browser sessions last.
    pub sessions: crate::users::sessions::SessionConfig,
    /// Pair-programming conversations: their budget and limits.
    pub chat: crate::chat::ChatConfig,
    /// When set, `/metrics` answers only this bearer token.
    pub metrics_token: Option<Secret>,
    /// Proxies in front of Loom whose `X-Forwarded-For` is believed (login limits).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Where agents' commands run.
    pub sandbox: crate::workbench::SandboxConfig,
}

/// The event bus and the live streams.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// NATS JetStream for events between replicas; `None`: the in-process bus.
    pub nats: Option<crate::events::NatsConfig>,
    /// How often the feed reads Postgres when nothing woke it.
    pub feed_poll: Duration,
    /// How often the notification wakers ask Postgres which followed users were raised
    /// something, for raises whose bus event was lost (NATS away, a replica that died
    /// after its commit).
    pub notification_poll: Duration,
    /// Whether this process runs a notifier (`LOOM_NO_NOTIFIER` turns it off: another
    /// replica derives the notifications; with none running, nobody is notified).
    pub notifier: bool,
    /// A comment on every idle SSE stream this often, so proxies keep it open and a
    /// client that left is noticed.
    pub keep_alive: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            nats: None,
            feed_poll: Duration::from_millis(500),
            notification_poll: Duration::from_secs(10),
            notifier: true,
            keep_alive: Duration::from_secs(15),
        }
    }
}

impl Config {
    /// A configuration for tests and tools: the given database, an ephemeral port.
    pub fn for_database(url: &str, data_dir: PathBuf) -> Self {
        Config {
            bind: "127.0.0.1:0".into(),
            database: DatabaseSource::Url(Secret::new(url)),
            db: DbConfig::default(),
            personas_dir: None,
            data_dir,
            // Tests drive dispatch themselves, step by step.
            dispatchers: 0,
            dispatch: crate::dispatch::DispatchConfig::default(),
            // ... and the ticker's jobs too.
            ticker: None,
            retry: crate::beads::RetryPolicy::default(),
            gateway: None,
            executors: None,
            events: EventsConfig::default(),
            sessions: Default::default(),
            chat: Default::default(),
            metrics_token: None,
            trusted_proxies: Vec::new(),
            sandbox: Default::default(),
        }
    }
}
