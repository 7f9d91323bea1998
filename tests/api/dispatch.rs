//! The dispatcher under contention: dispatchers in this process and in two `loom serve`
//! processes, many agents, thousands of beads with dependencies, completions racing claims.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use loom::activity::Actor;
use loom::beads::{AfterRun, Bead, Dependency, DependencyKind, RetryPolicy, RunOutcome};
use loom::config::DbConfig;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge, Step};
use loom::personas::{Persona, PersonaDef};

use crate::support::db::TestDb;
use crate::support::serve::Server;

/// `LOOM_DISPATCH_TEST_BEADS` overrides the size, for a quick run or a longer one.
fn beads() -> i64 {
    std::env::var("LOOM_DISPATCH_TEST_BEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}
const AGENTS: usize = 50;
/// Dispatchers in this process; each child process runs `CHILD_DISPATCHERS` more.
const DISPATCHERS: usize = 4;
const CHILDREN: usize = 2;
const CHILD_DISPATCHERS: usize = 2;

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

/// Connections listening for dispatch wake-ups: a process opens one after its first pass.
async fn listeners(conn: &mut AsyncPgConnection) -> i64 {
    count(
        conn,
        "SELECT count(*) AS n FROM pg_stat_activity \
          WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dispatchers_in_several_processes_give_every_bead_to_one_agent_once_and_respect_dependencies()
 {
    let db = TestDb::new().await;
    let beads = beads();
    load(&db.url, beads).await;
    let pool = loom::db::connect(&db.url, &DbConfig { pool_size: 24, ..DbConfig::default() })
        .await
        .unwrap();
    let mut conn = pool.get().await.unwrap();

    // The other processes start first, and are running once their listening dispatcher (one
    // per process) has made its first pass: it listens for wake-ups after that. That pass
    // had every agent idle and no competitor, so they claimed work before anything else ran.
    let env = [
        ("LOOM_DISPATCHERS", CHILD_DISPATCHERS.to_string()),
        ("LOOM_DISPATCH_INTERVAL_SECONDS", "1".to_owned()),
        ("LOOM_LEASE_SECONDS", "600".to_owned()),
        // This test completes the runs itself: no executor runs anywhere.
        ("LOOM_DISPATCH_WITHOUT_EXECUTORS", "true".to_owned()),
    ];
    let mut servers: Vec<Server> = (0..CHILDREN).map(|_| Server::start(&db.url, &env)).collect();
    let wanted = CHILDREN as i64;
    for _ in 0..600 {
        if listeners(&mut conn).await >= wanted {
            break;
        }
        servers.iter_mut().for_each(Server::assert_running);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listeners(&mut conn).await, wanted, "the other processes are dispatching");

    let done = Arc::new(AtomicBool::new(false));
    let claimed_here = Arc::new(AtomicUsize::new(0));
    let config = DispatchConfig { lease: Duration::from_secs(600), ..DispatchConfig::default() };
    let mut tasks = Vec::new();
    for _ in 0..DISPATCHERS {
        let dispatcher = Dispatcher::new(pool.clone(), config.clone(), Nudge::default());
        let (done, claimed_here) = (done.clone(), claimed_here.clone());
        tasks.push(tokio::spawn(async move {
            while !AtomicBool::load(&done, Ordering::Relaxed) {
                match dispatcher.step().await.unwrap() {
                    Step::Worked(n) => _ = claimed_here.fetch_add(n, Ordering::Relaxed),
                    Step::Idle => tokio::time::sleep(Duration::from_millis(2)).await,
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
            let mut conn = pool.get().await.unwrap();
            while !AtomicBool::load(&done, Ordering::Relaxed) {
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
                    Bead::release(&mut conn, run.id, RunOutcome::Success, None, RetryPolicy::default())
                        .await
                        .unwrap();
                }
            }
        }));
    }
    // Bounded: 10,000 beads take about a minute; a fleet that stops making progress fails.
    let mut last = (i64::MAX, 0);
    loop {
        let left =
            count(&mut conn, "SELECT count(*) AS n FROM beads WHERE status <> 'closed'").await;
        if left == 0 {
            break;
        }
        last = if left < last.0 { (left, 0) } else { (left, last.1 + 1) };
        assert!(last.1 < 300, "the fleet stalled with {left} beads not closed");
        servers.iter_mut().for_each(Server::assert_running);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    for mut s in servers {
        s.assert_running();
        s.child.kill().await.unwrap();
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
    // and both this process and the others claimed
    let here = AtomicUsize::load(&claimed_here, Ordering::Relaxed) as i64;
    assert!(here > 0 && here < beads, "claimed here: {here} of {beads}");
}

/// The race the lock-free close must win: a bead starts waiting on another while that one is
/// being closed. The edge commits after the close took its snapshot but before it got the
/// bead's row lock; the close must still count the new dependent as freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_added_while_its_blocker_closes_is_freed_by_the_close() {
    let db = TestDb::new().await;
    load(&db.url, 2).await;
    let pool = loom::db::connect(&db.url, &DbConfig::default()).await.unwrap();
    let mut conn = pool.get().await.unwrap();
    let (blocker, waiter) = ("d-00001", "d-00002");
    #[derive(QueryableByName)]
    struct Agent {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let agent: Agent =
        diesel::sql_query("SELECT id FROM agents LIMIT 1").get_result(&mut conn).await.unwrap();
    let claim =
        Bead::claim(&mut conn, blocker, agent.id, Duration::from_secs(600)).await.unwrap().unwrap();

    // A reader holds the blocker's row, so the release queues on it mid-way.
    let mut holder = AsyncPgConnection::establish(&db.url).await.unwrap();
    holder
        .batch_execute(&format!("BEGIN; SELECT 1 FROM beads WHERE id = '{blocker}' FOR SHARE"))
        .await
        .unwrap();
    let release = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            Bead::release(
                &mut conn,
                claim.run_id,
                RunOutcome::Success,
                None,
                RetryPolicy::default(),
            )
            .await
            .unwrap()
        })
    };
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    for _ in 0..300 {
        if count(&mut conn, waiting).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&mut conn, waiting).await, 1, "the release waits for the row");
    // A share lock does not queue behind the waiting release: the edge commits now.
    let dep = Dependency { depends_on: blocker.into(), kind: DependencyKind::Blocks };
    assert!(Bead::add_dependency(&mut conn, waiter, dep, Actor::System).await.unwrap());
    assert!(Bead::ready(&mut conn, None, None, 10).await.unwrap().items.is_empty());
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(release.await.unwrap(), Some(AfterRun::Closed));
    let ready: Vec<String> = Bead::ready(&mut conn, None, None, 10)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ready, [waiter], "the waiter is free once its blocker closed");
}

/// The longest-idle agents can take nothing (bound to a quiet project, or of a persona no
/// ready bead asks for). A step must still reach the agents behind them: before, it locked
/// a page of exactly those agents and claimed nothing, for ever.
#[tokio::test]
async fn agents_nothing_is_ready_for_do_not_stall_dispatch_for_the_agents_behind_them() {
    let app = crate::support::spawn().await;
    for p in ["quiet", "busy"] {
        app.project(p).await;
    }
    let agent = async |name: &str, persona: &str, project: Option<&str>| -> String {
        let body = serde_json::json!({"name": name, "persona": persona, "project": project});
        let res = app.post("/api/v1/agents", body).await;
        assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
        res.body["id"].as_str().unwrap().to_owned()
    };
    for i in 0..3 {
        agent(&format!("quiet-{i}"), "software-engineer", Some("quiet")).await;
    }
    let spare = agent("spare", "software-engineer", None).await;
    let reviewer = agent("reviewer", "code-reviewer", Some("busy")).await;
    let plain = app.bead("busy", "plain work", serde_json::json!({})).await;
    let review =
        app.bead("busy", "a review", serde_json::json!({"persona": "code-reviewer"})).await;

    let config = DispatchConfig { page: 2, ..DispatchConfig::default() };
    let dispatcher = Dispatcher::new(app.pool.clone(), config, Nudge::default());
    assert_eq!(dispatcher.run_until_idle().await.unwrap(), 2);
    assert_eq!(app.show(&plain).await["assignee"], spare.as_str());
    assert_eq!(app.show(&review).await["assignee"], reviewer.as_str());
    assert_eq!(dispatcher.step().await.unwrap(), Step::Idle);
}
