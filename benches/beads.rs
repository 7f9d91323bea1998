//! Bead tracker benchmark: loads 100k and 1M beads with a realistic dependency graph and
//! measures the ready queue, creates through the API, a cycle check on a 5,000-bead chain and
//! list throughput. Writes its method and numbers into docs/PERFORMANCE.md.
//!
//!     cargo bench --bench beads                  # both sizes
//!     LOOM_BENCH_SIZES=100000 cargo bench --bench beads
//!
//! Uses LOOM_BENCH_DATABASE_URL (default: postgres://postgres@127.0.0.1:5432/postgres) to
//! create and drop its own databases.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark, not the service

mod common;

use common::{load, server_url, url_for, write_doc};

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use loom::activity::Actor;
use loom::beads::{Bead, Dependency, DependencyKind};
use serde_json::json;

struct Stats {
    median: Duration,
    p95: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats { median: samples[n / 2], p95: samples[(n * 95 / 100).min(n - 1)], n }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn time(runs: usize, mut f: impl AsyncFnMut()) -> Stats {
    for _ in 0..3 {
        f().await;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

/// A separate project holding a chain of `len` beads, each waiting on the one before.
async fn load_chain(conn: &mut AsyncPgConnection, len: i64) -> (String, String) {
    conn.batch_execute(&format!(
        "INSERT INTO projects (id, name, repo, prefix) VALUES ('chain', 'Chain', '/tmp/c', 'chain');
         INSERT INTO beads (id, project_id, title) SELECT 'chain-' || lpad(to_hex(i), 6, '0'), 'chain', 'link ' || i
           FROM generate_series(1, {len}) i;
         INSERT INTO bead_dependencies (bead_id, depends_on, kind)
           SELECT 'chain-' || lpad(to_hex(i), 6, '0'), 'chain-' || lpad(to_hex(i - 1), 6, '0'), 'blocks'
           FROM generate_series(2, {len}) i;
         UPDATE beads SET open_blockers = 1 WHERE project_id = 'chain' AND id <> 'chain-000001';
         ANALYZE;"
    ))
    .await
    .unwrap();
    ("chain-000001".into(), format!("chain-{:06x}", len))
}

struct Row {
    size: i64,
    load_s: f64,
    ready_all: Stats,
    ready_project: Stats,
    cycle: Stats,
    create: Stats,
    create_dep: Stats,
    list_rps: f64,
    list_latency: Stats,
}

async fn measure(size: i64) -> Row {
    let db = format!("loom_bench_{size}");
    let mut admin = AsyncPgConnection::establish(&server_url()).await.unwrap();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let url = url_for(&db);
    loom::db::migrate(&url).await.unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let t = Instant::now();
    load(&mut conn, size, 10).await;
    let (first, last) = load_chain(&mut conn, 5000).await;
    let load_s = t.elapsed().as_secs_f64();
    println!("loaded {size} beads (+ a 5,000 chain) in {load_s:.1} s");

    let ready_all = time(200, async || {
        let page = Bead::ready(&mut conn, None, None, 100).await.unwrap();
        assert_eq!(page.items.len(), 100);
    })
    .await;
    let ready_project = time(200, async || {
        let page = Bead::ready(&mut conn, Some("p3"), None, 100).await.unwrap();
        assert_eq!(page.items.len(), 100);
    })
    .await;
    let cycle = time(30, async || {
        let dep = Dependency { depends_on: last.clone(), kind: DependencyKind::Blocks };
        let err = Bead::add_dependency(&mut conn, &first, dep, Actor::System).await.unwrap_err();
        assert_eq!(err.code(), "dependency_cycle");
    })
    .await;

    let (create, create_dep, list_rps, list_latency) = api_numbers(&url).await;
    drop(conn);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
    Row {
        size,
        load_s,
        ready_all,
        ready_project,
        cycle,
        create,
        create_dep,
        list_rps,
        list_latency,
    }
}

/// Creates through the real HTTP server, and list throughput with 8 concurrent clients.
async fn api_numbers(url: &str) -> (Stats, Stats, f64, Stats) {
    let config = loom::config::Config::for_database(url, std::env::temp_dir().join("loom-bench"));
    let app = loom::app::Application::build(config).await.unwrap();
    let (port, pool, handle) = app.spawn();
    let token = {
        let mut c = pool.get().await.unwrap();
        let name = loom::users::Username::parse("bench").unwrap();
        let user =
            loom::users::User::create(&mut c, &name, "bench-password", loom::users::Role::Admin)
                .await
                .unwrap();
        loom::users::tokens::ApiToken::create(&mut c, user.id, "bench", None).await.unwrap().secret
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let req = http.post(format!("{base}/api/v1/beads")).bearer_auth(&token).json(&body);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 201);
        }
    };
    let create = time(300, async || {
        post(json!({"project": "p4", "title": "a new bead", "labels": ["ui"]})).await
    })
    .await;
    let create_dep = time(300, async || {
        post(json!({"project": "p4", "title": "waits", "depends_on": ["p4-000004", "p4-00000e"]}))
            .await
    })
    .await;

    let list_url = format!("{base}/api/v1/beads?status=open&limit=100");
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, token) = (http.clone(), list_url.clone(), token.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let res = http.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.bytes().await.unwrap();
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let rps = all.len() as f64 / started.elapsed().as_secs_f64();
    handle.stop(true).await;
    (create, create_dep, rps, stats(all))
}

fn report(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| measure | ");
    out.push_str(&rows.iter().map(|r| format!("{} beads", r.size)).collect::<Vec<_>>().join(" | "));
    out.push_str(" |\n|---|");
    out.push_str(&"---|".repeat(rows.len()));
    out.push('\n');
    let line = |name: &str, f: &dyn Fn(&Row) -> String| {
        format!("| {name} | {} |\n", rows.iter().map(f).collect::<Vec<_>>().join(" | "))
    };
    out += &line("bulk load (SQL) + 5,000 chain", &|r| format!("{:.1} s", r.load_s));
    out += &line("ready top-100, all projects: median (p95)", &|r| {
        format!("{} ({})", ms(r.ready_all.median), ms(r.ready_all.p95))
    });
    out += &line("ready top-100, one project: median (p95)", &|r| {
        format!("{} ({})", ms(r.ready_project.median), ms(r.ready_project.p95))
    });
    out += &line("cycle check refusing an edge on a 5,000-bead chain: median (p95)", &|r| {
        format!("{} ({})", ms(r.cycle.median), ms(r.cycle.p95))
    });
    out += &line("create through the API: median (p95)", &|r| {
        format!("{} ({})", ms(r.create.median), ms(r.create.p95))
    });
    out += &line("create with 2 depends_on through the API: median (p95)", &|r| {
        format!("{} ({})", ms(r.create_dep.median), ms(r.create_dep.p95))
    });
    out += &line("`GET /beads?status=open&limit=100`, 8 clients: throughput", &|r| {
        format!("{:.0} req/s", r.list_rps)
    });
    out += &line("  … latency median (p95)", &|r| {
        format!("{} ({})", ms(r.list_latency.median), ms(r.list_latency.p95))
    });
    out += &line("samples (ready / cycle / create / list)", &|r| {
        format!("{} / {} / {} / {}", r.ready_all.n, r.cycle.n, r.create.n, r.list_latency.n)
    });
    out
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes: Vec<i64> = std::env::var("LOOM_BENCH_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let rows: Vec<Row> = sizes.into_iter().map(|s| rt.block_on(measure(s))).collect();
    let table = report(&rows);
    println!("{table}");
    write_doc("beads", &table);
}
