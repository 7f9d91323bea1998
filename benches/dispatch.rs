//! Dispatch benchmark: end-to-end throughput (a ready bead is claimed, its run completes,
//! which readies the next) and dispatch latency (a blocker closes, its dependent is claimed),
//! with 1 and with 4 dispatchers, at 100k beads and 1,000 agents, measured side by side with
//! pgbench running a single-row claim on a similar table, the physical limit of this
//! Postgres. Writes its method and numbers into docs/PERFORMANCE.md.
//!
//!     cargo bench --bench dispatch
//!     LOOM_BENCH_ROUNDS=1 LOOM_BENCH_WINDOW_SECS=5 cargo bench --bench dispatch   # quicker
//!
//! Uses LOOM_BENCH_DATABASE_URL (default: postgres://postgres@127.0.0.1:5432/postgres) to
//! create and drop its own databases.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark, not the service

mod common;

use common::{server_url, url_for, write_doc};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use loom::beads::{Bead, RetryPolicy, RunOutcome};
use loom::config::DbConfig;
use loom::db::Pool;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge};
use tokio_util::sync::CancellationToken;

const BEADS: i64 = 100_000;
const AGENTS: i64 = 1_000;
/// Blocker/dependent pairs timed per latency round.
const PAIRS: i64 = 300;
/// Fake executors completing runs.
const COMPLETERS: i64 = 8;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

async fn admin() -> AsyncPgConnection {
    AsyncPgConnection::establish(&server_url()).await.unwrap()
}

async fn drop_db(name: &str) {
    admin()
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// A fresh copy of a loaded template: every round starts from the same state.
async fn clone_db(template: &str, name: &str) -> String {
    drop_db(name).await;
    admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .await
        .unwrap();
    url_for(name)
}

/// Two personas with labels; 10 projects; 1,000 agents, half bound to a project; 100k open
/// beads spread over the projects with mixed priorities and labels, about a third waiting
/// (`blocks`) on an earlier bead of their project.
const LOAD: &str = "
INSERT INTO personas (name, display_name, role, labels, instructions) VALUES
  ('backend', 'Backend', 'engineer', '{backend,api}', 'work'),
  ('frontend', 'Frontend', 'engineer', '{ui,web}', 'work');
INSERT INTO projects (id, name, repo, prefix)
  SELECT 'p' || g, 'Project ' || g, '/tmp/p' || g, 'p' || g FROM generate_series(0, 9) g;
INSERT INTO agents (id, name, persona, project_id)
  SELECT gen_random_uuid(), 'agent-' || g, CASE WHEN g % 2 = 0 THEN 'backend' ELSE 'frontend' END,
         CASE WHEN g % 4 < 2 THEN 'p' || (g % 10) END
    FROM generate_series(1, {agents}) g;
INSERT INTO beads (id, project_id, title, priority, labels, created_at)
  SELECT 'p' || (i % 10) || '-' || lpad(to_hex(i), 6, '0'), 'p' || (i % 10), 'bead ' || i,
         (hashint4(i) & 2147483647) % 5,
         CASE i % 3 WHEN 0 THEN '{backend}'::text[] WHEN 1 THEN '{ui}'::text[] ELSE '{}'::text[] END,
         now() - make_interval(secs => {beads} - i)
    FROM generate_series(1, {beads}) i;
INSERT INTO bead_dependencies (bead_id, depends_on, kind)
  SELECT 'p' || (i % 10) || '-' || lpad(to_hex(i), 6, '0'),
         'p' || (i % 10) || '-' || lpad(to_hex(i - 10 * (1 + (hashint4(i + 1) & 2147483647) % 50)), 6, '0'),
         'blocks'
    FROM generate_series(501, {beads}) i WHERE (hashint4(i) & 2147483647) % 3 = 0;
UPDATE beads SET open_blockers = 1 WHERE id IN (SELECT bead_id FROM bead_dependencies);
";

/// For latency: the same table, but as a long-lived tracker would hold it, nothing ready:
/// 94% closed, 6% blocked; then `PAIRS` ready blockers, each with one dependent.
const QUIET: &str = "
UPDATE beads SET status = 'closed', closed_at = now(), open_blockers = 0;
UPDATE beads SET status = 'blocked', blocked_reason = 'needs_human', closed_at = NULL
 WHERE right(id, 1) = 'a';
INSERT INTO beads (id, project_id, title, created_at)
  SELECT 'p0-lat' || k || '-' || i, 'p0', 'timed ' || i, now() - make_interval(secs => 1000 - i)
    FROM generate_series(1, {pairs}) i, (VALUES ('b'), ('d')) AS x(k);
INSERT INTO bead_dependencies (bead_id, depends_on, kind)
  SELECT 'p0-latd-' || i, 'p0-latb-' || i, 'blocks' FROM generate_series(1, {pairs}) i;
UPDATE beads SET open_blockers = 1 WHERE id LIKE 'p0-latd-%';
";

async fn prepare_templates() -> (String, String) {
    let (busy, quiet) =
        ("loom_bench_dispatch_busy".to_owned(), "loom_bench_dispatch_quiet".to_owned());
    for name in [&busy, &quiet] {
        drop_db(name).await;
        admin().await.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        loom::db::migrate(&url_for(name)).await.unwrap();
        let mut conn = AsyncPgConnection::establish(&url_for(name)).await.unwrap();
        let load =
            LOAD.replace("{agents}", &AGENTS.to_string()).replace("{beads}", &BEADS.to_string());
        conn.batch_execute(&load).await.unwrap();
        if name == &quiet {
            conn.batch_execute(&QUIET.replace("{pairs}", &PAIRS.to_string())).await.unwrap();
        }
        conn.batch_execute("VACUUM ANALYZE").await.unwrap();
    }
    (busy, quiet)
}

/// `n` dispatchers sharing one nudge, as `loom serve --dispatchers n` runs them.
fn start_dispatchers(
    pool: &Pool,
    n: usize,
    cancel: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let nudge = Nudge::default();
    let config = DispatchConfig { lease: Duration::from_secs(3600), ..DispatchConfig::default() };
    (0..n)
        .map(|_| {
            let d = Dispatcher::new(pool.clone(), config.clone(), nudge.clone());
            tokio::spawn(d.run(cancel.clone()))
        })
        .collect()
}

#[derive(QueryableByName)]
struct RunId {
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
}

/// Fake executors: one watcher finds runs started since it last looked (a range of the
/// `runs_open` index, so looking costs little however many runs are open) and deals them to
/// `COMPLETERS` workers, which end each as a success at once.
fn start_completers(
    pool: &Pool,
    done: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (senders, mut tasks): (Vec<_>, Vec<_>) = (0..COMPLETERS)
        .map(|_| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<uuid::Uuid>();
            let (pool, done) = (pool.clone(), done.clone());
            let task = tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                while let Some(run) = rx.recv().await {
                    Bead::release(
                        &mut conn,
                        run,
                        RunOutcome::Success,
                        None,
                        RetryPolicy::default(),
                    )
                    .await
                    .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
            (tx, task)
        })
        .unzip();
    let (pool, stop) = (pool.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        use diesel::{ExpressionMethods, QueryDsl};
        use loom::db::schema::runs;
        let mut conn = pool.get().await.unwrap();
        // Claims commit out of their start order, so look back a little and skip what was
        // already dealt.
        let lookback = chrono::Duration::seconds(2);
        let mut seen: std::collections::HashMap<uuid::Uuid, DateTime<Utc>> = Default::default();
        let mut newest = DateTime::<Utc>::UNIX_EPOCH;
        let mut next = 0;
        while !AtomicBool::load(&stop, Ordering::Relaxed) {
            let since = newest - lookback;
            let open: Vec<(uuid::Uuid, DateTime<Utc>)> = runs::table
                .filter(runs::outcome.is_null())
                .filter(runs::started_at.ge(since))
                .select((runs::id, runs::started_at))
                .load(&mut conn)
                .await
                .unwrap();
            let mut dealt = 0;
            for (id, at) in open {
                newest = newest.max(at);
                if seen.insert(id, at).is_none() {
                    senders[next % senders.len()].send(id).unwrap();
                    next += 1;
                    dealt += 1;
                }
            }
            seen.retain(|_, at| *at >= since);
            if dealt == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(senders);
    }));
    tasks
}

struct Throughput {
    beads_per_s: f64,
    /// Ready → claimed for beads whose one blocker closed during the window, in ms.
    queue_ms: Vec<f64>,
}

/// Runs the fleet for a warm-up and then `window`, counting completed runs.
async fn throughput(template: &str, dispatchers: usize, window: Duration) -> Throughput {
    let name = "loom_bench_dispatch_run";
    let url = clone_db(template, name).await;
    let pool =
        loom::db::connect(&url, &DbConfig { pool_size: 32, ..DbConfig::default() }).await.unwrap();
    let (cancel, stop, done) =
        (CancellationToken::new(), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let mut tasks = start_dispatchers(&pool, dispatchers, &cancel);
    tasks.extend(start_completers(&pool, &done, &stop));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut conn = pool.get().await.unwrap();
    let from: DateTime<Utc> = now(&mut conn).await;
    let (before, t) = (AtomicU64::load(&done, Ordering::Relaxed), Instant::now());
    tokio::time::sleep(window).await;
    let n = AtomicU64::load(&done, Ordering::Relaxed) - before;
    let elapsed = t.elapsed().as_secs_f64();
    let to: DateTime<Utc> = now(&mut conn).await;
    cancel.cancel();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    #[derive(QueryableByName)]
    struct Ms {
        #[diesel(sql_type = Double)]
        ms: f64,
    }
    let queue: Vec<Ms> = diesel::sql_query(
        "SELECT (extract(epoch FROM r.started_at - x.closed_at) * 1000)::float8 AS ms \
           FROM bead_dependencies d JOIN beads x ON x.id = d.depends_on JOIN runs r ON r.bead_id = d.bead_id \
          WHERE x.closed_at BETWEEN $1 AND $2",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(&mut conn)
    .await
    .unwrap();
    drop(conn);
    pool.close();
    drop_db(name).await;
    Throughput {
        beads_per_s: n as f64 / elapsed,
        queue_ms: queue.into_iter().map(|m| m.ms).collect(),
    }
}

async fn now(conn: &mut AsyncPgConnection) -> DateTime<Utc> {
    #[derive(QueryableByName)]
    struct Now {
        #[diesel(sql_type = Timestamptz)]
        t: DateTime<Utc>,
    }
    diesel::sql_query("SELECT clock_timestamp() AS t").get_result::<Now>(conn).await.unwrap().t
}

/// With nothing else ready and every agent idle but the ones holding the timed blockers:
/// ends each blocker's run in turn and times until its dependent's claim starts.
async fn latency(template: &str, dispatchers: usize) -> Vec<f64> {
    let name = "loom_bench_dispatch_lat";
    let url = clone_db(template, name).await;
    let pool =
        loom::db::connect(&url, &DbConfig { pool_size: 16, ..DbConfig::default() }).await.unwrap();
    let cancel = CancellationToken::new();
    let tasks = start_dispatchers(&pool, dispatchers, &cancel);
    let mut conn = pool.get().await.unwrap();
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let held = "SELECT count(*) AS n FROM runs WHERE outcome IS NULL";
    for _ in 0..500 {
        if diesel::sql_query(held).get_result::<N>(&mut conn).await.unwrap().n == PAIRS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut sent = Vec::new();
    for i in 1..=PAIRS {
        let run: RunId =
            diesel::sql_query("SELECT r.id FROM runs r WHERE r.bead_id = $1 AND r.outcome IS NULL")
                .bind::<diesel::sql_types::Text, _>(format!("p0-latb-{i}"))
                .get_result(&mut conn)
                .await
                .unwrap();
        let at = Utc::now();
        Bead::release(&mut conn, run.id, RunOutcome::Success, None, RetryPolicy::default())
            .await
            .unwrap();
        sent.push((i, at));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the last claims land (bounded), then read when each dependent's claim started.
    for _ in 0..300 {
        let claimed = "SELECT count(*) AS n FROM runs WHERE bead_id LIKE 'p0-latd-%'";
        if diesel::sql_query(claimed).get_result::<N>(&mut conn).await.unwrap().n == PAIRS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    #[derive(QueryableByName)]
    struct Started {
        #[diesel(sql_type = Timestamptz)]
        started_at: DateTime<Utc>,
    }
    let mut ms = Vec::new();
    for (i, at) in sent {
        let s: Option<Started> =
            diesel::sql_query("SELECT started_at FROM runs WHERE bead_id = $1")
                .bind::<diesel::sql_types::Text, _>(format!("p0-latd-{i}"))
                .get_result(&mut conn)
                .await
                .ok();
        let s = s.expect("every dependent was claimed");
        ms.push((s.started_at - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    cancel.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    drop(conn);
    pool.close();
    drop_db(name).await;
    ms
}

/// The physical limit: pgbench claiming one row per transaction with the same shape of
/// query (the head of a partial index in priority order, FOR UPDATE SKIP LOCKED), on a
/// table of open rows: a partial index of the open rows in dispatch order, and an index on
/// the column the claim changes. It has 1M rows so that no run drains it.
const PGBENCH_SETUP: &str = "
CREATE TABLE claim_bench (id bigint PRIMARY KEY, status text NOT NULL, priority smallint NOT NULL,
  created_at timestamptz NOT NULL, claimed_at timestamptz);
INSERT INTO claim_bench SELECT i, 'open', (hashint4(i::int) & 2147483647) % 5, now() - make_interval(secs => 1000000 - i)
  FROM generate_series(1, 1000000) i;
CREATE INDEX claim_bench_ready ON claim_bench (priority, created_at, id) WHERE status = 'open';
CREATE INDEX claim_bench_status ON claim_bench (status, priority, created_at, id);
";
const PGBENCH_SCRIPT: &str = "UPDATE claim_bench SET status = 'claimed', claimed_at = now() \
  WHERE id = (SELECT id FROM claim_bench WHERE status = 'open' \
              ORDER BY priority, created_at, id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id;\n";

fn pgbench_binary() -> String {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| "pgbench".into())
}

const PGBENCH_TEMPLATE: &str = "loom_bench_pgbench_tmpl";

async fn prepare_pgbench() {
    drop_db(PGBENCH_TEMPLATE).await;
    admin().await.batch_execute(&format!("CREATE DATABASE {PGBENCH_TEMPLATE}")).await.unwrap();
    let mut conn = AsyncPgConnection::establish(&url_for(PGBENCH_TEMPLATE)).await.unwrap();
    conn.batch_execute(PGBENCH_SETUP).await.unwrap();
    conn.batch_execute("VACUUM ANALYZE claim_bench").await.unwrap();
}

async fn pgbench(clients: usize, window: Duration) -> f64 {
    let name = "loom_bench_pgbench";
    clone_db(PGBENCH_TEMPLATE, name).await;
    let script = std::env::temp_dir().join("loom-claim.sql");
    std::fs::write(&script, PGBENCH_SCRIPT).unwrap();
    let out = tokio::process::Command::new(pgbench_binary())
        .args(["-n", "-M", "prepared", "-c", &clients.to_string(), "-j", &clients.to_string()])
        .args(["-T", &window.as_secs().max(1).to_string(), "-f"])
        .arg(&script)
        .arg(url_for(name))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    drop_db(name).await;
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

struct Column {
    dispatchers: usize,
    throughput: Vec<f64>,
    pgbench: Vec<f64>,
    latency: Vec<f64>,
    queue: Vec<f64>,
}

fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

fn report(cols: &[Column], rounds: u64, window: Duration) -> String {
    let mut out = String::from("| measure | ");
    out += &cols
        .iter()
        .map(|c| format!("{} dispatcher(s)", c.dispatchers))
        .collect::<Vec<_>>()
        .join(" | ");
    out += " |\n|---|";
    out += &"---|".repeat(cols.len());
    out.push('\n');
    let line = |name: &str, f: &dyn Fn(&Column) -> String| {
        format!("| {name} | {} |\n", cols.iter().map(f).collect::<Vec<_>>().join(" | "))
    };
    out += &line(
        &format!(
            "end to end, ready → claimed → completed: median of {rounds} × {} s",
            window.as_secs()
        ),
        &|c| format!("{:.0} beads/s", median(c.throughput.clone())),
    );
    out += &line("pgbench single-row claim, as many clients: median", &|c| {
        format!("{:.0} claims/s", median(c.pgbench.clone()))
    });
    out += &line("pgbench claims per end-to-end bead (ratio of medians)", &|c| {
        format!("{:.1}×", median(c.pgbench.clone()) / median(c.throughput.clone()))
    });
    let pct = |v: &Vec<f64>| {
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        format!("{} ({}), n = {}", ms(percentile(&s, 50)), ms(percentile(&s, 99)), s.len())
    };
    out +=
        &line("dispatch latency, blocker's release sent → dependent's claim: p50 (p99)", &|c| {
            pct(&c.latency)
        });
    out += &line("under full load, blocker closed → dependent claimed: p50 (p99)", &|c| {
        pct(&c.queue)
    });
    out += &line("throughput rounds (beads/s)", &|c| {
        c.throughput.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ")
    });
    out += &line("pgbench rounds (claims/s)", &|c| {
        c.pgbench.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ")
    });
    out
}

fn main() {
    let rounds = env_or("LOOM_BENCH_ROUNDS", 3);
    let window = Duration::from_secs(env_or("LOOM_BENCH_WINDOW_SECS", 10));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let (busy, quiet) = prepare_templates().await;
        prepare_pgbench().await;
        println!("loaded {BEADS} beads and {AGENTS} agents (twice) and the pgbench table in {:.1} s", t.elapsed().as_secs_f64());
        let mut cols: Vec<Column> = [1, 4]
            .into_iter()
            .map(|d| Column { dispatchers: d, throughput: vec![], pgbench: vec![], latency: vec![], queue: vec![] })
            .collect();
        // Interleaved, so that the machine's drift hits every measure alike.
        for round in 0..rounds {
            for c in cols.iter_mut() {
                let tp = throughput(&busy, c.dispatchers, window).await;
                let pg = pgbench(c.dispatchers, window).await;
                let lat = latency(&quiet, c.dispatchers).await;
                println!(
                    "round {round}, {} dispatcher(s): {:.0} beads/s, pgbench {:.0} claims/s, latency median {:.1} ms",
                    c.dispatchers,
                    tp.beads_per_s,
                    pg,
                    median(lat.clone())
                );
                c.throughput.push(tp.beads_per_s);
                c.queue.extend(tp.queue_ms);
                c.pgbench.push(pg);
                c.latency.extend(lat);
            }
        }
        for name in [&busy, &quiet, &PGBENCH_TEMPLATE.to_owned()] {
            drop_db(name).await;
        }
        let table = report(&cols, rounds, window);
        println!("{table}");
        write_doc("dispatch", &table);
    });
}
