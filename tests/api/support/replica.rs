//! More replicas of the service on a test's database, and a NATS for them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use loom::config::Config;
use loom::events::{Bus, NatsConfig};

/// Another `Application` on the same database, in this process.
pub struct Replica {
    pub base: String,
    pub bus: Bus,
    pub data_dir: std::path::PathBuf,
    _handle: actix_web::dev::ServerHandle,
}

pub async fn start(database_url: &str, adjust: impl FnOnce(&mut Config)) -> Replica {
    let data_dir = std::env::temp_dir().join(format!("loom-replica-{}", uuid::Uuid::new_v4()));
    let mut config = Config::for_database(database_url, data_dir.clone());
    super::only_the_bus_wakes_notification_streams(&mut config);
    adjust(&mut config);
    let app = loom::app::Application::build(config).await.expect("start a replica");
    let bus = app.bus().clone();
    let (port, _pool, handle) = app.spawn();
    Replica { base: format!("http://127.0.0.1:{port}"), bus, data_dir, _handle: handle }
}

/// Two replicas sharing a test database and a NATS of their own; the second reads Postgres
/// only every `poll` and runs no notifier (which would raise the first's rows itself), so
/// what reaches it sooner came through NATS.
pub async fn pair(url: &str, poll: Duration) -> (super::TestApp, Replica, NatsConfig) {
    let nats = nats_config(url);
    let a_nats = nats.clone();
    let a = super::spawn_with(move |c| c.events.nats = Some(a_nats)).await;
    let b_nats = nats.clone();
    let b = start(a.database_url(), move |c| {
        c.events.nats = Some(b_nats);
        c.events.feed_poll = poll;
        c.events.notifier = false;
    })
    .await;
    (a, b, nats)
}

/// The NATS server tests use: `LOOM_TEST_NATS_URL` (`.ci/run` starts one), else the
/// machine's own.
pub fn nats_url() -> String {
    std::env::var("LOOM_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A configuration of its own on `url`: subjects and stream no other test uses.
pub fn nats_config(url: &str) -> NatsConfig {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let mut c = NatsConfig::new(url);
    c.prefix = format!("t{tag}");
    c.stream = format!("T{tag}").to_uppercase();
    c.max_age = Duration::from_secs(600);
    c
}

/// Removes a test's stream (best effort: it also expires on its own).
pub async fn drop_stream(config: &NatsConfig) {
    if let Ok(client) = async_nats::connect(&config.url).await {
        let _ = async_nats::jetstream::new(client).delete_stream(&config.stream).await;
    }
}

/// Messages the stream holds on `subject`.
pub async fn stream_count(config: &NatsConfig, subject: &str) -> u64 {
    let client = async_nats::connect(&config.url).await.expect("connect to NATS");
    let stream =
        async_nats::jetstream::new(client).get_stream(&config.stream).await.expect("the stream");
    let mut consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    consumer.info().await.expect("consumer info").num_pending
}

/// A private nats-server that a test may stop and start again on the same port.
pub struct PrivateNats {
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    pub async fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut n = PrivateNats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.resume().await;
        n
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub async fn resume(&mut self) {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server) must be installed");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// Kills the server at once.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}
