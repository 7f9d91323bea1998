//! Events benchmark: stored events fanned out to 1,000 concurrent SSE clients of a real
//! `loom serve` child (commit → client latency, deliveries/s, memory per client), and events
//! per second through each backend: the in-process bus, NATS JetStream between two buses, and
//! the feed reading stored rows. Writes its method and numbers into docs/PERFORMANCE.md.
//!
//!     ulimit -n 4096; cargo bench --bench events
//!     LOOM_BENCH_CLIENTS=200 LOOM_BENCH_ROUNDS=1 cargo bench --bench events   # quicker
//!
//! The bench and its server each hold one socket per client, so the open-files limit must
//! be above the client count (it says so and stops when it is not). Uses
//! LOOM_BENCH_DATABASE_URL (default: postgres://postgres@127.0.0.1:5432/postgres) to create
//! and drop its own databases, and LOOM_BENCH_NATS_URL (default: nats://127.0.0.1:4222),
//! where it creates streams of its own and deletes them at the end.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark, not the service

mod common;

use common::{server_url, url_for, write_doc};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt;
use loom::activity::{Activity, Actor, Feed, FeedStep, Record};
use loom::cli::sse::Parser;
use loom::config::DbConfig;
use loom::db::Pool;
use loom::events::{Bus, Event, Kind, NatsBackend, NatsConfig, Received};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Settings {
    clients: usize,
    /// Events per paced phase, one every `pace`.
    events: u32,
    pace: Duration,
    /// Stored events committed in one transaction, at once.
    burst: u32,
    rounds: usize,
    nats: String,
    /// Events published at once through NATS (the sender's queue holds 16,384).
    nats_events: u64,
    /// `fanout`, `backends` or both (the default); only a whole run writes the doc.
    parts: String,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            clients: env_or("LOOM_BENCH_CLIENTS", 1000) as usize,
            events: env_or("LOOM_BENCH_EVENTS", 200) as u32,
            pace: Duration::from_millis(env_or("LOOM_BENCH_PACE_MS", 20)),
            burst: env_or("LOOM_BENCH_BURST", 500) as u32,
            rounds: env_or("LOOM_BENCH_ROUNDS", 3).max(1) as usize,
            nats: std::env::var("LOOM_BENCH_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            nats_events: env_or("LOOM_BENCH_NATS_EVENTS", 10_000),
            parts: std::env::var("LOOM_BENCH_PARTS").unwrap_or_else(|_| "fanout,backends".into()),
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `sorted[p‰]`, so that p99 of 200,000 samples is the 198,000th.
fn permille(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(sorted.len() * p / 1000).min(sorted.len() - 1)]
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&server_url()).await.unwrap()
}

async fn drop_db(name: &str) {
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    admin().await.batch_execute(&sql).await.unwrap();
}

async fn fresh_db(name: &str) -> String {
    drop_db(name).await;
    admin().await.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    loom::db::migrate(&url_for(name)).await.unwrap();
    url_for(name)
}

async fn pool(url: &str, application_name: &str) -> Pool {
    let config = DbConfig { application_name: application_name.into(), ..DbConfig::default() };
    loom::db::connect(url, &config).await.unwrap()
}

/// Subjects and a stream no other run uses, named as `loom serve` names them from a prefix.
fn nats_config(url: &str, what: &str) -> NatsConfig {
    let mut c = NatsConfig::new(url);
    c.prefix = format!("lbench{what}{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    c.stream = c.prefix.to_ascii_uppercase();
    c.max_age = Duration::from_secs(600);
    c
}

async fn drop_stream(config: &NatsConfig) {
    if let Ok(client) = async_nats::connect(&config.url).await {
        let _ = async_nats::jetstream::new(client).delete_stream(&config.stream).await;
    }
}

async fn nats_bus(config: &NatsConfig, origin: &str, cancel: &CancellationToken) -> Bus {
    let hub = Bus::new_hub();
    let committed = Arc::new(tokio::sync::Notify::new());
    let (backend, _tasks) =
        NatsBackend::start(config.clone(), origin, hub.clone(), committed.clone(), cancel.clone())
            .await
            .unwrap();
    let bus = Bus::with_backend(origin, hub, committed, backend);
    for _ in 0..500 {
        if bus.state().connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(bus.state().connected, "connected to NATS at {}", config.url);
    bus
}

/// A process's `/proc/<pid>/<file>`, or nothing once it has gone.
fn proc_file(pid: u32, file: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default()
}

fn rss_kib(pid: u32) -> f64 {
    let status = proc_file(pid, "status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// User plus system CPU time a process has used, in seconds (`ticks` a second).
fn cpu_s(pid: u32, ticks: f64) -> f64 {
    let stat = proc_file(pid, "stat");
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> =
        after_name.split_whitespace().map(|f| f.parse().unwrap_or(0.0)).collect();
    // utime and stime are fields 14 and 15; the first after the name is field 3.
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / ticks
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}

fn open_files_limit() -> Option<usize> {
    let limits = proc_file(std::process::id(), "limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---- SSE fan-out ------------------------------------------------------------------------

/// `loom serve` on a free port with NATS and no dispatchers, executors or ticker; killed
/// when dropped.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(url: &str, nats: &NatsConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let personas = dir.path().join("personas");
        std::fs::create_dir(&personas).unwrap();
        let log = dir.path().join("serve.log");
        let out = std::fs::File::create(&log).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loom"))
            .arg("serve")
            .env("LOOM_DATABASE_URL", url)
            .env("LOOM_BIND", format!("127.0.0.1:{port}"))
            .env("LOOM_DATA_DIR", dir.path().join("data"))
            .env("LOOM_PERSONAS_DIR", &personas)
            .env("LOOM_NO_EXECUTORS", "true")
            .env("LOOM_DISPATCHERS", "0")
            .env("LOOM_NO_TICKER", "true")
            .env("LOOM_NATS_URL", &nats.url)
            .env("LOOM_NATS_PREFIX", &nats.prefix)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut server = Server { child, pid, base, log, _dir: dir };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            let health = http.get(format!("{}/healthz", server.base)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            server.assert_running();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("loom serve did not answer:\n{}", server.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("loom serve exited ({status}):\n{}", self.log());
        }
    }
}

/// One client's reads: each bench event's index (from its title) and when the chunk that
/// completed it arrived.
type Reads = Arc<Mutex<Vec<(u32, Instant)>>>;

#[derive(serde::Deserialize)]
struct Wire {
    data: WireData,
}

#[derive(serde::Deserialize)]
struct WireData {
    title: Option<String>,
}

fn bench_index(data: &str) -> Option<u32> {
    let wire: Wire = serde_json::from_str(data).ok()?;
    wire.data.title?.strip_prefix("bench ")?.parse().ok()
}

/// A stream read in a task of its own until the server goes or the client is dropped.
struct Client {
    reads: Reads,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn open_stream(http: &reqwest::Client, url: &str, token: &str) -> Result<Client, String> {
    let res = http.get(url).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("{} {}", res.status(), res.text().await.unwrap_or_default()));
    }
    let reads = Reads::default();
    let sink = reads.clone();
    let mut body = res.bytes_stream();
    let task = tokio::spawn(async move {
        let mut parser = Parser::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            let frames = parser.push(&chunk);
            let mut sink = sink.lock().unwrap();
            sink.extend(frames.iter().filter_map(|f| bench_index(&f.data)).map(|i| (i, at)));
        }
    });
    Ok(Client { reads, task })
}

/// `n` streams opened all at once, as after a restart; refusals are retried.
async fn open_clients(base: &str, token: &str, n: usize) -> (Vec<Client>, usize) {
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/activity/stream");
    let (mut clients, mut refused) = (Vec::with_capacity(n), 0);
    for _ in 0..5 {
        let wanted = n - clients.len();
        if wanted == 0 {
            break;
        }
        let opened: Vec<_> = futures_util::stream::iter(0..wanted)
            .map(|_| open_stream(&http, &url, token))
            .buffer_unordered(wanted)
            .collect()
            .await;
        for o in opened {
            match o {
                Ok(c) => clients.push(c),
                Err(e) => {
                    if refused == 0 {
                        println!("a stream was refused: {e}");
                    }
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(clients.len(), n, "every stream opened");
    (clients, refused)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Path {
    /// `POST /api/v1/beads` to the server: it wakes its own feed.
    Api,
    /// A row another replica (this process) committed and published over NATS.
    Replica,
    /// A row another replica committed without telling anyone: the feed's poll finds it.
    Poll,
    /// Many rows in one transaction, published over NATS.
    Burst,
}

const PATHS: [Path; 4] = [Path::Api, Path::Replica, Path::Poll, Path::Burst];

/// When a bench event was sent: as its write began, and once it had committed (through the
/// API: once the response had arrived).
struct Sent {
    index: u32,
    began: Instant,
    committed: Instant,
}

/// What writes the events.
struct Writer {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Its connections' name is the writer bus's origin, so its feed publishes their rows.
    replica: Pool,
    replica_bus: Bus,
    /// Another name: the writer's feed reads its rows but publishes none of them.
    silent: Pool,
    next: u32,
}

async fn write_rows(pool: &Pool, first: u32, n: u32) {
    let mut conn = pool.get().await.unwrap();
    conn.transaction::<_, loom::Error, _>(async |c| {
        for index in first..first + n {
            let bead = format!("bench-{index}");
            let record = Record {
                kind: Kind::BeadUpdated,
                project_id: Some("bench"),
                bead_id: Some(&bead),
                actor: Actor::System,
                data: json!({ "title": format!("bench {index}") }),
            };
            Activity::record(c, record).await?;
        }
        Ok(())
    })
    .await
    .unwrap();
}

impl Writer {
    async fn post(&self, index: u32) {
        let body = json!({ "project": "bench", "title": format!("bench {index}") });
        let url = format!("{}/api/v1/beads", self.base);
        let res = self.http.post(url).bearer_auth(&self.token).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201);
        res.bytes().await.unwrap();
    }

    async fn send(&mut self, path: Path, count: u32, pace: Duration) -> Vec<Sent> {
        let first = self.next;
        self.next += count;
        if path == Path::Burst {
            let began = Instant::now();
            write_rows(&self.replica, first, count).await;
            let committed = Instant::now();
            self.replica_bus.committed();
            return (first..first + count).map(|index| Sent { index, began, committed }).collect();
        }
        let mut tick = tokio::time::interval(pace);
        let mut sent = Vec::with_capacity(count as usize);
        for index in first..first + count {
            tick.tick().await;
            let began = Instant::now();
            match path {
                Path::Api => self.post(index).await,
                Path::Replica => write_rows(&self.replica, index, 1).await,
                _ => write_rows(&self.silent, index, 1).await,
            }
            let committed = Instant::now();
            if path == Path::Replica {
                self.replica_bus.committed();
            }
            sent.push(Sent { index, began, committed });
        }
        sent
    }

    async fn status(&self) -> serde_json::Value {
        let url = format!("{}/api/v1/status", self.base);
        let res = self.http.get(url).bearer_auth(&self.token).send().await.unwrap();
        res.json().await.unwrap()
    }
}

/// Waits until every client has read every event of `sent`, or nothing arrived for
/// `patience`; takes what they read.
async fn collect(
    clients: &[Client],
    sent: &[Sent],
    patience: Duration,
) -> Vec<Vec<(u32, Instant)>> {
    let expected = clients.len() * sent.len();
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let n: usize = clients.iter().map(|c| c.reads.lock().unwrap().len()).sum();
        if n >= expected {
            break;
        }
        if n != seen {
            (seen, since) = (n, Instant::now());
        } else if since.elapsed() > patience {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clients.iter().map(|c| std::mem::take(&mut *c.reads.lock().unwrap())).collect()
}

/// Milliseconds from `from` to `at`; negative when `at` came first.
fn ms_between(at: Instant, from: Instant) -> f64 {
    match at.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(from - at).as_secs_f64() * 1000.0,
    }
}

#[derive(Default)]
struct Measured {
    /// Every delivery, from the commit (API: the response) and from the write's start, ms.
    from_commit: Vec<f64>,
    from_began: Vec<f64>,
    /// Per event, the write itself (API: the request until its response), ms.
    write: Vec<f64>,
    /// Per event, the commit to the last client's read, ms.
    last_client: Vec<f64>,
    /// Per phase, deliveries over the time from the first commit to the last read.
    rates: Vec<f64>,
    delivered: usize,
    missing: usize,
    repeated: usize,
    server_cpu_s: f64,
    bench_cpu_s: f64,
}

impl Measured {
    fn tally(&mut self, reads: &[Vec<(u32, Instant)>], sent: &[Sent]) {
        let by_index: HashMap<u32, &Sent> = sent.iter().map(|s| (s.index, s)).collect();
        let mut last: HashMap<u32, Instant> = HashMap::new();
        let (mut delivered, mut end) = (0, None);
        for client in reads {
            let mut got = HashSet::new();
            for &(i, at) in client {
                let Some(s) = by_index.get(&i) else { continue };
                if !got.insert(i) {
                    self.repeated += 1;
                    continue;
                }
                delivered += 1;
                self.from_commit.push(ms_between(at, s.committed));
                self.from_began.push(ms_between(at, s.began));
                let l = last.entry(i).or_insert(at);
                *l = (*l).max(at);
                end = end.max(Some(at));
            }
        }
        self.write.extend(sent.iter().map(|s| ms_between(s.committed, s.began)));
        self.last_client.extend(
            sent.iter().filter_map(|s| last.get(&s.index).map(|l| ms_between(*l, s.committed))),
        );
        if let (Some(end), Some(first)) = (end, sent.first()) {
            self.rates.push(delivered as f64 / (end - first.committed).as_secs_f64());
        }
        self.missing += reads.len() * sent.len() - delivered;
        self.delivered += delivered;
    }
}

fn spread(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let max = s.last().copied().unwrap_or(f64::NAN);
    format!("{:.1} / {:.1} / {:.1} ms", permille(&s, 500), permille(&s, 990), max)
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

struct Memory {
    before: f64,
    connected: f64,
    after: f64,
    open_s: f64,
    refused: usize,
}

fn fanout_report(
    s: &Settings,
    m: &HashMap<Path, Measured>,
    mem: &Memory,
    status: &serde_json::Value,
) -> String {
    let col = |p: Path| &m[&p];
    let mut out = format!(
        "| SSE fan-out: {} clients; {} events {} ms apart, {} events at once; {} round(s) | API write (`POST /beads`) | another replica's write, woken through NATS | another replica's write, no wake (feed poll) | {} rows in one transaction, another replica, NATS |\n|---|---|---|---|---|\n",
        s.clients,
        s.events,
        s.pace.as_millis(),
        s.burst,
        s.rounds,
        s.burst
    );
    let line = |name: &str, f: &dyn Fn(&Measured) -> String| {
        let cells: Vec<String> = PATHS.iter().map(|p| f(col(*p))).collect();
        format!("| {name} | {} |\n", cells.join(" | "))
    };
    out += &line("commit (API: response arrived) → client: p50 / p99 / max", &|c| {
        spread(&c.from_commit)
    });
    out += &line("write sent → client: p50 / p99 / max", &|c| spread(&c.from_began));
    out += &line("the write itself, sent → committed (API: response): p50 / p99 / max", &|c| {
        spread(&c.write)
    });
    out += &line("commit → the last client, per event: p50 / p99 / max", &|c| {
        spread(&c.last_client)
    });
    out += &line("deliveries/s, first commit → last read: median of rounds", &|c| {
        format!("{:.0}", median(&c.rates))
    });
    out += &line("deliveries (missing, repeated)", &|c| {
        format!("{} ({}, {})", c.delivered, c.missing, c.repeated)
    });
    out += &line("CPU per delivery: server / bench process (clients, writer)", &|c| {
        let per = |cpu: f64| cpu * 1e6 / c.delivered.max(1) as f64;
        format!("{:.1} / {:.1} µs", per(c.server_cpu_s), per(c.bench_cpu_s))
    });
    out += "\n| SSE clients | |\n|---|---|\n";
    out += &format!(
        "| {} streams opened at once: all open after | {:.2} s ({} refused and retried) |\n",
        s.clients, mem.open_s, mem.refused
    );
    out += &format!(
        "| server RSS: before / all connected / after the rounds | {} / {} / {} |\n",
        mib(mem.before),
        mib(mem.connected),
        mib(mem.after)
    );
    out += &format!(
        "| memory per client: (connected − before) / clients; (after − before) / clients | {:.1} KiB; {:.1} KiB |\n",
        (mem.connected - mem.before) / s.clients as f64,
        (mem.after - mem.before) / s.clients as f64
    );
    let bus = &status["bus"];
    out += &format!(
        "| server bus at the end: subscribers lagged; NATS published / received / failed | {}; {} / {} / {} |\n",
        bus["lagged"], bus["published"], bus["received"], bus["failed"]
    );
    out
}

/// The server, its database and NATS stream, and the writer with its feed.
struct Rig {
    db: &'static str,
    nats: NatsConfig,
    server: Server,
    writer: Writer,
    setup: Pool,
    cancel: CancellationToken,
    feed: JoinHandle<()>,
}

impl Rig {
    async fn start(s: &Settings) -> Rig {
        let db = "loom_bench_events_fanout";
        let url = fresh_db(db).await;
        let nats = nats_config(&s.nats, "sse");
        let setup = pool(&url, "loom-bench-setup").await;
        let token = {
            let mut c = setup.get().await.unwrap();
            c.batch_execute(
                "INSERT INTO projects (id, name, repo, prefix) \
                 VALUES ('bench', 'Bench', '/tmp/bench', 'bench')",
            )
            .await
            .unwrap();
            let name = loom::users::Username::parse("bench").unwrap();
            let admin = loom::users::Role::Admin;
            let user = loom::users::User::create(&mut c, &name, "bench-password", admin);
            let user = user.await.unwrap();
            let token = loom::users::tokens::ApiToken::create(&mut c, user.id, "bench", None);
            token.await.unwrap().secret
        };
        let server = Server::start(&url, &nats).await;
        let cancel = CancellationToken::new();
        let origin = "loom-bench-replica";
        let replica_bus = nats_bus(&nats, origin, &cancel).await;
        let replica = pool(&url, origin).await;
        let poll = Duration::from_millis(500);
        let feed = Feed::start(replica.clone(), replica_bus.clone(), poll).await.unwrap();
        let feed = tokio::spawn(feed.run(cancel.clone()));
        let writer = Writer {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            token,
            replica,
            replica_bus,
            silent: pool(&url, "loom-bench-silent").await,
            next: 0,
        };
        Rig { db, nats, server, writer, setup, cancel, feed }
    }

    /// What the server allocates once (its pool's connections, buffers) goes into the
    /// baseline: streams opened and closed, and a few writes each way.
    async fn warm_up(&mut self, s: &Settings) {
        let w = &mut self.writer;
        let (warm, _) = open_clients(&w.base, &w.token, 50.min(s.clients)).await;
        for path in PATHS {
            w.send(path, 5, s.pace).await;
        }
        drop(warm);
        // The closed streams' next writes find them gone.
        w.send(Path::Api, 5, s.pace).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    async fn rounds(&mut self, s: &Settings, clients: &[Client]) -> HashMap<Path, Measured> {
        let (ticks, me, pid) = (clock_ticks(), std::process::id(), self.server.pid);
        let mut measured: HashMap<Path, Measured> =
            PATHS.iter().map(|p| (*p, Measured::default())).collect();
        for round in 0..s.rounds {
            for path in PATHS {
                let (server0, bench0) = (cpu_s(pid, ticks), cpu_s(me, ticks));
                let n = if path == Path::Burst { s.burst } else { s.events };
                let sent = self.writer.send(path, n, s.pace).await;
                let reads = collect(clients, &sent, Duration::from_secs(3)).await;
                let m = measured.get_mut(&path).unwrap();
                m.server_cpu_s += cpu_s(pid, ticks) - server0;
                m.bench_cpu_s += cpu_s(me, ticks) - bench0;
                m.tally(&reads, &sent);
                let mut one = Measured::default();
                one.tally(&reads, &sent);
                println!(
                    "round {round}, {path:?}: commit → client {}, last client {}, {:.0} deliveries/s, {} missing, server RSS {}",
                    spread(&one.from_commit),
                    spread(&one.last_client),
                    median(&one.rates),
                    one.missing,
                    mib(rss_kib(pid)),
                );
            }
            self.server.assert_running();
        }
        measured
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        self.feed.await.unwrap();
        self.server.child.kill().await.unwrap();
        drop_stream(&self.nats).await;
        for p in [&self.setup, &self.writer.replica, &self.writer.silent] {
            p.close();
        }
        drop_db(self.db).await;
    }
}

async fn fanout(s: &Settings) -> String {
    let mut rig = Rig::start(s).await;
    rig.warm_up(s).await;
    let pid = rig.server.pid;
    let before = rss_kib(pid);
    let t = Instant::now();
    let (clients, refused) = open_clients(&rig.writer.base, &rig.writer.token, s.clients).await;
    let open_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected = rss_kib(pid);
    let open = rig.writer.status().await["sse_clients"].clone();
    println!(
        "{open} streams open in {open_s:.2} s ({refused} refused); server RSS {} → {}",
        mib(before),
        mib(connected)
    );
    let measured = rig.rounds(s, &clients).await;
    let after = rss_kib(pid);
    let status = rig.writer.status().await;
    drop(clients);
    rig.stop().await;
    let mem = Memory { before, connected, after, open_s, refused };
    fanout_report(s, &measured, &mem, &status)
}

// ---- Events per second through each backend ---------------------------------------------

struct BusRun {
    published_per_s: f64,
    delivered_per_s: f64,
    delivered: u64,
    missed: u64,
}

/// `n` ephemeral events into an in-process bus with `subscribers` tasks, each counting what
/// it got and what it missed (lagged). The publisher is a thread of its own (a task's wakes
/// would wait in its worker's LIFO slot); with `ahead`, it stays at most that many events
/// ahead of the slowest subscriber, else it never waits.
async fn in_process(n: u64, subscribers: usize, ahead: Option<u64>) -> BusRun {
    let bus = Bus::in_process("loom-bench-bus");
    let counts: Vec<Arc<AtomicU64>> = (0..subscribers).map(|_| Arc::default()).collect();
    let tasks: Vec<JoinHandle<(u64, u64, Instant)>> = counts
        .iter()
        .map(|count| {
            let (mut sub, count) = (bus.subscribe(), count.clone());
            tokio::spawn(async move {
                let (mut got, mut missed) = (0, 0);
                while got + missed < n {
                    match sub.recv().await {
                        Some(Received::Event(_)) => got += 1,
                        Some(Received::Lagged(k)) => missed += k,
                        None => break,
                    }
                    count.store(got + missed, Ordering::Relaxed);
                }
                (got, missed, Instant::now())
            })
        })
        .collect();
    let start = Instant::now();
    let publisher = std::thread::spawn(move || {
        let slowest = || counts.iter().map(|c| c.load(Ordering::Relaxed)).min().unwrap_or(n);
        for i in 0..n {
            if let Some(ahead) = ahead
                && i % 64 == 0
            {
                while i - slowest().min(i) >= ahead {
                    std::thread::yield_now();
                }
            }
            bus.publish(Event::live(Kind::RunStep, Some("p"), Some("p-1"), json!({ "i": i })));
        }
        Instant::now()
    });
    let (mut delivered, mut missed, mut end) = (0, 0, start);
    for t in tasks {
        let (g, m, e) = t.await.unwrap();
        (delivered, missed, end) = (delivered + g, missed + m, end.max(e));
    }
    let published = publisher.join().unwrap() - start;
    BusRun {
        published_per_s: n as f64 / published.as_secs_f64(),
        delivered_per_s: delivered as f64 / (end - start).as_secs_f64(),
        delivered,
        missed,
    }
}

struct NatsRun {
    per_s: f64,
    published_per_s: f64,
    received: u64,
    failed: u64,
}

/// `n` ephemeral events published at once on bus A, counted on bus B's subscription: two
/// replicas' buses on one stream.
async fn nats_run(url: &str, n: u64) -> NatsRun {
    use futures_util::FutureExt;
    let config = nats_config(url, "bus");
    let cancel = CancellationToken::new();
    let a = nats_bus(&config, "loom-bench-a", &cancel).await;
    let b = nats_bus(&config, "loom-bench-b", &cancel).await;
    let mut sub = b.subscribe();
    // B's consumer brings only what arrives once it exists: probe until one gets through.
    let mut through = false;
    for _ in 0..200 {
        a.publish(Event::live(Kind::RunStep, None, None, json!({ "probe": true })));
        let got = tokio::time::timeout(Duration::from_millis(50), sub.recv()).await;
        if let Ok(Some(Received::Event(_))) = got {
            through = true;
            break;
        }
    }
    assert!(through, "bus B receives bus A's events");
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Some(Some(_)) = sub.recv().now_or_never() {}
    let counter = tokio::spawn(async move {
        let (mut got, mut end) = (0, Instant::now());
        while got < n {
            match tokio::time::timeout(Duration::from_secs(3), sub.recv()).await {
                Ok(Some(Received::Event(e))) if e.data.get("i").is_some() => {
                    got += 1;
                    end = Instant::now();
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        (got, end)
    });
    let failed = a.state().failed;
    let start = Instant::now();
    for i in 0..n {
        a.publish(Event::live(Kind::RunStep, Some("p"), Some("p-1"), json!({ "i": i })));
    }
    let published = start.elapsed();
    let (received, end) = counter.await.unwrap();
    let failed = a.state().failed - failed;
    cancel.cancel();
    drop_stream(&config).await;
    NatsRun {
        per_s: received as f64 / (end - start).as_secs_f64(),
        published_per_s: n as f64 / published.as_secs_f64(),
        received,
        failed,
    }
}

struct FeedRun {
    rows_per_s: f64,
    insert_rows_per_s: f64,
    steps: u32,
    missed: u64,
}

/// `n` activity rows committed `per_tx` to a transaction, then a feed stepped until idle;
/// a subscriber counts what it delivers.
async fn feed_run(pool: &Pool, n: u64, per_tx: u64) -> FeedRun {
    let bus = Bus::in_process("loom-bench-feed");
    let mut feed = Feed::start(pool.clone(), bus.clone(), Duration::from_secs(60)).await.unwrap();
    let total = n / per_tx * per_tx;
    let insert = format!(
        "INSERT INTO activity (kind, project_id, bead_id, data) \
         SELECT 'bead.updated', 'bench', 'bench-' || g, \
                jsonb_build_object('title', 'bench ' || g, 'priority', 2) \
           FROM generate_series(1, {per_tx}) g"
    );
    let t = Instant::now();
    let mut conn = pool.get().await.unwrap();
    for _ in 0..n / per_tx {
        conn.batch_execute(&insert).await.unwrap();
    }
    drop(conn);
    let insert_s = t.elapsed().as_secs_f64();
    let mut sub = bus.subscribe();
    let counter = tokio::spawn(async move {
        let (mut got, mut missed) = (0, 0);
        while got + missed < total {
            match sub.recv().await {
                Some(Received::Event(_)) => got += 1,
                Some(Received::Lagged(k)) => missed += k,
                None => break,
            }
        }
        (got, missed, Instant::now())
    });
    let (start, mut steps) = (Instant::now(), 0);
    loop {
        match feed.step().await.unwrap() {
            FeedStep::Read(_) => steps += 1,
            FeedStep::HeldBack => tokio::time::sleep(Duration::from_millis(1)).await,
            FeedStep::Idle => break,
        }
    }
    let (got, missed, end) = counter.await.unwrap();
    FeedRun {
        rows_per_s: got as f64 / (end - start).as_secs_f64(),
        insert_rows_per_s: total as f64 / insert_s,
        steps,
        missed,
    }
}

fn list<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    v.iter().map(f).collect::<Vec<_>>().join(", ")
}

async fn backends(s: &Settings) -> String {
    let (reps, big, fan_n, nats_n, feed_n, per_tx) =
        (5, 1_000_000, 10_000, s.nats_events, 100_000, 1_000);
    let mut out =
        String::from("| backend, median of rounds | events/s | detail |\n|---|---|---|\n");
    for (subscribers, n, ahead) in
        [(1, big, None), (1, big, Some(2048)), (s.clients, fan_n, Some(2048))]
    {
        let mut runs = Vec::new();
        for _ in 0..reps {
            runs.push(in_process(n, subscribers, ahead).await);
        }
        let med = |f: fn(&BusRun) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let (delivered, published) = (med(|r| r.delivered_per_s), med(|r| r.published_per_s));
        println!(
            "in-process, {subscribers} subscriber(s), ahead {ahead:?}: {delivered:.0} deliveries/s"
        );
        let how = match ahead {
            None => "never waits".to_owned(),
            Some(a) => format!("at most {a} ahead of the slowest subscriber"),
        };
        out += &format!(
            "| in-process bus, {subscribers} subscriber(s), publisher thread {how}; {n} `run.step` events × {reps} | {delivered:.0} deliveries/s ({:.0} events/s a subscriber) | published {published:.0} events/s; received / missed (lagged) per round: {} |\n",
            delivered / subscribers as f64,
            list(&runs, |r| format!("{} / {}", r.delivered, r.missed)),
        );
    }
    let mut runs = Vec::new();
    for _ in 0..reps {
        runs.push(nats_run(&s.nats, nats_n).await);
    }
    let per_s = median(&runs.iter().map(|r| r.per_s).collect::<Vec<_>>());
    println!("NATS: {per_s:.0} events/s");
    out += &format!(
        "| NATS JetStream, bus A → bus B (two replicas, one stream); {nats_n} `run.step` events at once × {reps} | {per_s:.0} events/s end to end | A published {:.0} events/s into its queue; received per round: {}; failed: {} |\n",
        median(&runs.iter().map(|r| r.published_per_s).collect::<Vec<_>>()),
        list(&runs, |r| r.received.to_string()),
        list(&runs, |r| r.failed.to_string()),
    );
    let db = "loom_bench_events_feed";
    let url = fresh_db(db).await;
    let pool = pool(&url, "loom-bench-feed").await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(feed_run(&pool, feed_n, per_tx).await);
    }
    pool.close();
    drop_db(db).await;
    let per_s = median(&runs.iter().map(|r| r.rows_per_s).collect::<Vec<_>>());
    println!("feed: {per_s:.0} rows/s");
    out += &format!(
        "| feed: {feed_n} committed rows ({per_tx} to a transaction), stepped until idle, to one subscriber × {} | {per_s:.0} rows/s | steps per round: {}; missed: {}; committing them ran at {:.0} rows/s |\n",
        runs.len(),
        list(&runs, |r| r.steps.to_string()),
        list(&runs, |r| r.missed.to_string()),
        median(&runs.iter().map(|r| r.insert_rows_per_s).collect::<Vec<_>>()),
    );
    out
}

fn main() {
    let settings = Settings::from_env();
    let needed = settings.clients + 200;
    if open_files_limit().is_some_and(|n| n < needed) {
        eprintln!(
            "the open-files limit is below {needed}: run `ulimit -n 4096` first (or set LOOM_BENCH_CLIENTS lower)"
        );
        std::process::exit(2);
    }
    // reqwest is built without a crypto provider of its own, as in the service.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut tables = Vec::new();
        for part in ["fanout", "backends"] {
            if !settings.parts.split(',').any(|p| p.trim() == part) {
                continue;
            }
            let t = Instant::now();
            tables.push(if part == "fanout" {
                fanout(&settings).await
            } else {
                backends(&settings).await
            });
            println!("{part} done in {:.1} s", t.elapsed().as_secs_f64());
        }
        let table = tables.join("\n");
        println!("{table}");
        if tables.len() == 2 {
            write_doc("events", &table);
        }
    });
}
