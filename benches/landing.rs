//! Landing benchmark: 16 beads finish at once and wait in the merge queue of a project whose
//! check takes a second; how long until every one has landed or been sent back, and how many
//! checks that took, for a train (`max_train` 16) against a queue that checks one bead at a
//! time (`max_train` 1), all green and with one red bead. Writes its method and numbers into
//! docs/PERFORMANCE.md.
//!
//!     cargo bench --bench landing
//!     LOOM_BENCH_ROUNDS=1 cargo bench --bench landing     # quicker
//!
//! Uses LOOM_BENCH_DATABASE_URL (default: postgres://postgres@127.0.0.1:5432/postgres) to
//! create and drop its own database, the `git` command line to make the upstreams, and the
//! default sandbox (bubblewrap) for the checks, as a deployment does.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark, not the service

mod common;

use common::{drop_database, fresh_pool, write_doc};

#[path = "../tests/api/support/gateway.rs"]
mod scripted;

use std::path::Path;
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use loom::activity::Actor;
use loom::beads::{Bead, Decision, NewBead, RetryPolicy};
use loom::db::Pool;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge};
use loom::executor::{ExecutorConfig, Executors};
use loom::gateway::{Gateway, GatewayConfig, HealthState};
use scripted::{Reply, ScriptedGateway};
use serde_json::json;

const DB: &str = "loom_bench_landing";
/// Beads that finish at once.
const BEADS: usize = 16;
/// The red bead, in queue order (the 6th).
const RED: usize = 5;
/// A check of about a second that fails when any bead's file says BAD.
const CHECK: &str = "sleep 1; if grep -l BAD b*.txt; then exit 1; fi";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare upstream `<root>/<name>.git` with one README.
fn upstream(root: &Path, name: &str) -> String {
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README"), "landing bench\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "start"]);
    let bare = format!("{name}.git");
    git(root, &["clone", "-q", "--bare", &format!("{name}-work"), &bare]);
    root.join(bare).to_string_lossy().into_owned()
}

/// One of the four configurations measured.
#[derive(Clone, Copy)]
struct Config {
    name: &'static str,
    max_train: i32,
    red: bool,
}

/// Train and one-at-a-time alternate, so the machine's drift hits both alike.
const CONFIGS: [Config; 4] = [
    Config { name: "train, all green", max_train: 16, red: false },
    Config { name: "one at a time, all green", max_train: 1, red: false },
    Config { name: "train, one red", max_train: 16, red: true },
    Config { name: "one at a time, one red", max_train: 1, red: true },
];

struct Env {
    pool: Pool,
    script: ScriptedGateway,
    dispatcher: Dispatcher,
    executors: Executors,
    dir: tempfile::TempDir,
}

async fn setup() -> Env {
    let pool = fresh_pool(DB).await;
    let dir = tempfile::tempdir().unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO personas (name, display_name, role, labels, instructions)
               VALUES ('engineer', 'Engineer', 'engineer', '{{}}', 'Do the work.');
             INSERT INTO agents (id, name, persona)
               SELECT gen_random_uuid(), 'agent-' || g, 'engineer' FROM generate_series(1, {BEADS}) g;"
        ))
        .await
        .unwrap();
    let script = ScriptedGateway::start().await;
    let gateway = Gateway::new(
        GatewayConfig::new(script.url(), "bench"),
        HealthState::default(),
        Some(pool.clone()),
    )
    .unwrap();
    let data = dir.path().join("data");
    let config = ExecutorConfig::default();
    let executors = Executors::start(pool.clone(), gateway, &data, RetryPolicy::default(), config);
    let dispatcher = Dispatcher::new(pool.clone(), DispatchConfig::default(), Nudge::default());
    Env { pool, script, dispatcher, executors, dir }
}

impl Env {
    /// A fresh project `id` with its own upstream, human review, the check and `max_train`.
    async fn project(&self, id: &str, max_train: i32) -> String {
        let origin = upstream(self.dir.path(), id);
        let check = CHECK.replace('\'', "''");
        self.sql(&format!(
            "INSERT INTO projects (id, name, repo, branch, prefix, max_parallel, check_command, \
                                   review, max_train)
               VALUES ('{id}', 'Landing {id}', '{origin}', 'main', '{id}', {BEADS}, '{check}', \
                       'human', {max_train})"
        ))
        .await;
        origin
    }

    /// Files `BEADS` beads in `project` whose agents each write `b<i>.txt` (BAD for the red
    /// one, when there is one) and are done; in filing order.
    async fn beads(&self, project: &str, red: bool) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..BEADS {
            let new = NewBead {
                project: project.into(),
                title: format!("write b{i}.txt"),
                description: None,
                bead_type: None,
                priority: None,
                labels: None,
                persona: None,
                parent: None,
                depends_on: None,
            };
            let mut conn = self.pool.get().await.unwrap();
            let bead = Bead::create(&mut conn, new, Actor::System).await.unwrap();
            let content = if red && i == RED { "BAD\n" } else { "good\n" };
            let write =
                json!({"action": "write_file", "path": format!("b{i}.txt"), "content": content});
            self.script.push_for(&bead.id, Reply::action(write));
            let done = json!({"action": "done", "summary": format!("Wrote b{i}.txt.")});
            self.script.push_for(&bead.id, Reply::action(done));
            ids.push(bead.id);
        }
        ids
    }

    async fn work(&mut self) {
        loop {
            let claimed = self.dispatcher.run_until_idle().await.unwrap();
            self.executors.run_until_idle().await.unwrap();
            if claimed == 0 {
                return;
            }
        }
    }

    async fn sql(&self, sql: &str) {
        self.pool.get().await.unwrap().batch_execute(sql).await.unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        diesel::sql_query(sql).get_result::<N>(&mut self.pool.get().await.unwrap()).await.unwrap().n
    }

    async fn in_status(&self, project: &str, status: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) AS n FROM beads WHERE project_id = '{project}' AND status = '{status}'"
        ))
        .await
    }
}

/// One measurement of `config` on a fresh project: (seconds from all 16 approved to none
/// left in `landing`, checks run).
async fn measure(env: &mut Env, round: usize, n: usize, config: Config) -> (f64, i64) {
    let id = format!("r{round}c{n}");
    let origin = env.project(&id, config.max_train).await;
    let beads = env.beads(&id, config.red).await;
    // The agents work until every bead waits in review; a run that left one behind (it
    // should not) gets another round.
    for _ in 0..5 {
        env.work().await;
        if env.in_status(&id, "review").await == BEADS as i64 {
            break;
        }
    }
    assert_eq!(env.in_status(&id, "review").await, BEADS as i64, "{id}: all {BEADS} in review");
    let mut conn = env.pool.get().await.unwrap();
    for bead in &beads {
        let approve = Decision::Approve { comment: None };
        Bead::review(&mut conn, bead, approve, Actor::System).await.unwrap();
    }
    drop(conn);

    // Timed: the queue alone (no dispatcher, so the red bead, sent back, stays open).
    let t = Instant::now();
    loop {
        env.executors.run_until_idle().await.unwrap();
        if env.in_status(&id, "landing").await == 0 {
            break;
        }
        // A queue step that could not progress waits out its retry; poll meanwhile.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();

    let checks =
        env.count(&format!("SELECT count(*) AS n FROM checks WHERE project_id = '{id}'")).await;
    let closed = env.in_status(&id, "closed").await;
    let red = usize::from(config.red);
    assert_eq!(closed, (BEADS - red) as i64, "{id}: every green bead landed");
    assert_eq!(env.in_status(&id, "open").await, red as i64, "{id}: the red bead sent back");
    let tree = git(Path::new(&origin), &["ls-tree", "--name-only", "main"]);
    let landed = tree.lines().filter(|f| f.starts_with('b')).count();
    assert_eq!(landed, BEADS - red, "{id}: upstream has every green bead's file");
    // Out of the way of the next configurations' dispatching once its back-off is over.
    env.sql(&format!(
        "UPDATE beads SET status = 'deferred' WHERE project_id = '{id}' AND status = 'open'"
    ))
    .await;
    (secs, checks)
}

fn table(times: &[Vec<f64>], checks: &[Vec<i64>], rounds: usize) -> String {
    let runs = |c: &[i64]| {
        let (min, max) =
            (c.iter().min().copied().unwrap_or(0), c.iter().max().copied().unwrap_or(0));
        if min == max { format!("{min}") } else { format!("{min}–{max}") }
    };
    let med_checks = |c: &[i64]| median(c.iter().map(|&n| n as f64).collect());
    let mut out = String::from(
        "| configuration (16 beads, 1 s check) | landed-all, median | check runs |\n|---|---|---|\n",
    );
    for (case, (train, one)) in [("all green", (0, 1)), ("one red", (2, 3))] {
        for i in [train, one] {
            out += &format!(
                "| {} (`max_train` {}) | {:.2} s | {} |\n",
                CONFIGS[i].name,
                CONFIGS[i].max_train,
                median(times[i].clone()),
                runs(&checks[i])
            );
        }
        out += &format!(
            "| **{case}: one at a time / train** | **{:.1}×** | **{:.1}×** |\n",
            median(times[one].clone()) / median(times[train].clone()),
            med_checks(&checks[one]) / med_checks(&checks[train])
        );
    }
    out += &format!("| rounds (each configuration) | {rounds} | |\n");
    out
}

fn main() {
    let rounds: usize =
        std::env::var("LOOM_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut env = setup().await;
        let mut times = vec![Vec::new(); CONFIGS.len()];
        let mut checks = vec![Vec::new(); CONFIGS.len()];
        for round in 0..rounds {
            for (n, config) in CONFIGS.iter().enumerate() {
                let (secs, runs) = measure(&mut env, round, n, *config).await;
                println!("round {round}: {}: {secs:.2} s, {runs} checks", config.name);
                times[n].push(secs);
                checks[n].push(runs);
            }
        }
        let t = table(&times, &checks, rounds);
        println!("{t}");
        write_doc("landing", &t);
        drop(env);
        drop_database(DB).await;
    });
}
