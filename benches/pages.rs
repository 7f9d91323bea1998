//! Dashboard benchmark: how long the server takes to answer each page for a project of
//! 10,000 beads (a realistic mix of statuses, epics and dependencies, 5,000 activity rows, a
//! bead with a 40-step run), through real HTTP with a logged-in session. Writes its method
//! and numbers into docs/PERFORMANCE.md.
//!
//!     cargo bench --bench pages
//!     LOOM_BENCH_BEADS=100000 cargo bench --bench pages
//!
//! Uses LOOM_BENCH_DATABASE_URL (default: postgres://postgres@127.0.0.1:5432/postgres) to
//! create and drop its own database.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark, not the service

mod common;

use common::{load, server_url, url_for, write_doc};

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use loom::users::{Role, User, Username};

const RUNS: usize = 40;

fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(samples[samples.len() / 2]), ms(samples[(samples.len() * 95 / 100).min(samples.len() - 1)]))
}

async fn seed(conn: &mut AsyncPgConnection, beads: i64) -> String {
    load(conn, beads, 1).await;
    // History: activity rows for the project, and one bead with a long run.
    conn.batch_execute(
        "INSERT INTO activity (kind, project_id, bead_id, data)
           SELECT 'bead.updated', 'p0', id, jsonb_build_object('title', title)
             FROM beads ORDER BY id LIMIT 5000;
         WITH r AS (INSERT INTO runs (id, bead_id, attempt, outcome, ended_at, turns)
                    SELECT gen_random_uuid(), min(id), 1, 'success', now(), 40 FROM beads
                    RETURNING id)
         INSERT INTO run_steps (run_id, turn, action, ok, result, started_at, duration_ms)
           SELECT r.id, t, jsonb_build_object('action', 'read_file', 'path', 'src/f' || t || '.rs'),
                  true, repeat('line of output ', 200), now(), 10
             FROM r, generate_series(1, 40) t",
    )
    .await
    .unwrap();
    conn.batch_execute("VACUUM ANALYZE").await.unwrap();
    use diesel_async::RunQueryDsl;
    let first: IdRow =
        diesel::sql_query("SELECT min(id) AS id FROM beads").get_result(conn).await.unwrap();
    first.id
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// A logged-in browser's cookie.
async fn log_in(http: &reqwest::Client, base: &str) -> String {
    let res = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "bench", "password": "bench-password"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

async fn measure(beads: i64) -> String {
    let db = "loom_bench_pages";
    let mut admin = AsyncPgConnection::establish(&server_url()).await.unwrap();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let url = url_for(db);
    loom::db::migrate(&url).await.unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let t = Instant::now();
    let bead = seed(&mut conn, beads).await;
    println!("loaded {beads} beads in {:.1} s", t.elapsed().as_secs_f64());
    let name = Username::parse("bench").unwrap();
    User::create(&mut conn, &name, "bench-password", Role::Admin).await.unwrap();

    let dir = std::env::temp_dir().join("loom-bench-pages");
    let app =
        loom::app::Application::build(loom::config::Config::for_database(&url, dir)).await.unwrap();
    let (port, _pool, handle) = app.spawn();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let cookie = log_in(&http, &base).await;
    let pages = [
        ("overview", "/".to_owned()),
        ("projects", "/projects".to_owned()),
        ("board", "/projects/p0".to_owned()),
        ("board, filtered by text", "/projects/p0?q=number%2042".to_owned()),
        ("board alone (live refresh)", "/projects/p0/board".to_owned()),
        ("dependency graph", "/projects/p0/graph".to_owned()),
        ("bead with a 40-step run", format!("/beads/{bead}")),
        ("activity", "/activity".to_owned()),
        ("analytics, 30 days", "/analytics".to_owned()),
        ("agents", "/agents".to_owned()),
    ];
    let mut table = format!(
        "A project of {beads} beads (one project: ~55% closed, 25% open, 8% blocked, 5% deferred, \
         7% in progress, epics with children, ~55% with dependencies), 5,000 activity rows. \
         Each page fetched {RUNS} times in a row (after 3 warm-ups) over HTTP on localhost with a \
         session cookie, release build, Postgres on the same machine; time to the whole body.\n\n\
         | page | median | p95 | bytes |\n| --- | --- | --- | --- |\n"
    );
    for (label, path) in pages {
        let mut samples = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for i in 0..RUNS + 3 {
            let t = Instant::now();
            let res =
                http.get(format!("{base}{path}")).header("cookie", &cookie).send().await.unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            bytes = res.bytes().await.unwrap().len();
            if i >= 3 {
                samples.push(t.elapsed());
            }
        }
        let (median, p95) = stats(samples);
        println!("{label}: median {median:.1} ms, p95 {p95:.1} ms, {bytes} bytes");
        table.push_str(&format!("| {label} | {median:.1} ms | {p95:.1} ms | {bytes} |\n"));
    }
    handle.stop(true).await;
    drop(conn);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
    table
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let beads =
        std::env::var("LOOM_BENCH_BEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let table = rt.block_on(measure(beads));
    println!("{table}");
    write_doc("pages", &table);
}
