//! The dispatcher under contention: several dispatchers, many agents, thousands of beads
//! with dependencies, completions racing claims.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use loom::beads::{Bead, RetryPolicy, RunOutcome};
use loom::config::DbConfig;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge, Step};
use loom::personas::{Persona, PersonaDef};

use crate::support::db::TestDb;

/// The short form CI runs; `LOOM_DISPATCH_TEST_BEADS=10000` is the long form.
fn beads() -> i64 {
    std::env::var("LOOM_DISPATCH_TEST_BEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}
const AGENTS: usize = 50;
const DISPATCHERS: usize = 4;

/// Beads `d-<hex>`; about a third wait on one of the ten beads before them.
async fn load(url: &str, beads: i64) {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    Persona::store(
        &mut conn,
        &[PersonaDef {
            name: "worker".into(),
            display_name: "Worker".into(),
            role: "engineer".into(),
            description: String::new(),
            labels: vec![],
            instructions: "work".into(),
        }],
    )
    .await
    .unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO projects (id, name, repo, prefix) VALUES ('d', 'D', '/tmp/d', 'd');
         INSERT INTO beads (id, project_id, title, priority, created_at)
           SELECT 'd-' || lpad(to_hex(i), 5, '0'), 'd', 'bead ' || i, (hashint4(i) & 2147483647) % 5,
                  now() - make_interval(secs => {beads} - i)
             FROM generate_series(1, {beads}) i;
         INSERT INTO bead_dependencies (bead_id, depends_on, kind)
           SELECT 'd-' || lpad(to_hex(i), 5, '0'),
                  'd-' || lpad(to_hex(i - 1 - (hashint4(i + 1) & 2147483647) % 10), 5, '0'), 'blocks'
             FROM generate_series(11, {beads}) i WHERE (hashint4(i) & 2147483647) % 3 = 0;
         UPDATE beads SET open_blockers = 1 WHERE id IN (SELECT bead_id FROM bead_dependencies);
         INSERT INTO agents (id, name, persona, project_id)
           SELECT gen_random_uuid(), 'agent-' || g, 'worker', CASE WHEN g % 2 = 0 THEN 'd' END
             FROM generate_series(1, {AGENTS}) g;
         ANALYZE;"
    ))
    .await
    .unwrap();
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).await.unwrap().n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_dispatchers_give_every_bead_to_one_agent_once_and_respect_dependencies() {
    let db = TestDb::new().await;
    let beads = beads();
    load(&db.url, beads).await;
    let pool = loom::db::connect(&db.url, &DbConfig { pool_size: 24, ..DbConfig::default() })
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let config = DispatchConfig { lease: Duration::from_secs(600), ..DispatchConfig::default() };

    let mut tasks = Vec::new();
    for _ in 0..DISPATCHERS {
        let dispatcher = Dispatcher::new(pool.clone(), config.clone(), Nudge::default());
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while !AtomicBool::load(&done, Ordering::Relaxed) {
                if dispatcher.step().await.unwrap() == Step::Idle {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }
    // Fake completions: whatever is claimed succeeds, which closes the bead.
    for w in 0..4i64 {
        let (pool, done) = (pool.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            #[derive(QueryableByName)]
            struct Open {
                #[diesel(sql_type = diesel::sql_types::Uuid)]
                id: uuid::Uuid,
            }
            while !AtomicBool::load(&done, Ordering::Relaxed) {
                let mut conn = pool.get().await.unwrap();
                let open: Vec<Open> = diesel::sql_query(format!(
                    "SELECT id FROM runs WHERE outcome IS NULL AND (hashtext(id::text) & 3) = {w} LIMIT 25"
                ))
                .load(&mut conn)
                .await
                .unwrap();
                if open.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                for run in open {
                    Bead::release(&mut conn, run.id, RunOutcome::Success, None, RetryPolicy::default()).await.unwrap();
                }
            }
        }));
    }
    let mut conn = pool.get().await.unwrap();
    let started = Instant::now();
    while count(&mut conn, "SELECT count(*) AS n FROM beads WHERE status <> 'closed'").await > 0 {
        assert!(started.elapsed() < Duration::from_secs(600), "the fleet stalled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let checks = [
        // every bead was claimed exactly once, on its first attempt, and succeeded
        ("SELECT count(*) AS n FROM runs", beads),
        (
            "SELECT count(DISTINCT bead_id) AS n FROM runs WHERE outcome = 'success' AND attempt = 1",
            beads,
        ),
        ("SELECT count(*) AS n FROM activity WHERE kind = 'bead.claimed'", beads),
        ("SELECT count(*) AS n FROM beads WHERE status = 'closed'", beads),
        // no agent ever held two beads at once
        (
            "SELECT count(*) AS n FROM runs a JOIN runs b ON a.agent_id = b.agent_id AND a.id < b.id \
          AND a.started_at < b.ended_at AND b.started_at < a.ended_at",
            0,
        ),
        // no bead was claimed before its blockers closed
        (
            "SELECT count(*) AS n FROM bead_dependencies d JOIN runs r ON r.bead_id = d.bead_id \
          JOIN beads x ON x.id = d.depends_on WHERE d.kind = 'blocks' AND r.started_at < x.closed_at",
            0,
        ),
        // nobody was left working
        ("SELECT count(*) AS n FROM agents WHERE status <> 'idle'", 0),
    ];
    for (sql, expected) in checks {
        assert_eq!(count(&mut conn, sql).await, expected, "{sql}");
    }
    // agents bound to the project and unbound ones both worked
    let workers = count(&mut conn, "SELECT count(DISTINCT agent_id) AS n FROM runs").await;
    assert!(workers > (AGENTS / 2) as i64, "{workers}");
}
