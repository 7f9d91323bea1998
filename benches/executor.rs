//! Executor benchmark: the action loop's own cost per turn (the scripted gateway answers at
//! once, so the model's time is zero), the cost of a commit, a merge and a push, and how
//! many runs one process works at once. Writes its method and numbers into
//! docs/PERFORMANCE.md.
//!
//!     cargo bench --bench executor
//!     LOOM_BENCH_ROUNDS=5 cargo bench --bench executor     # quicker
//!
//! Uses LOOM_BENCH_DATABASE_URL (default: postgres://postgres@127.0.0.1:5432/postgres) to
//! create and drop its own database, and the `git` command line to make the upstream.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark, not the service

mod common;

use common::{drop_database, fresh_pool, write_doc};

#[path = "../tests/api/support/gateway.rs"]
mod scripted;

use std::path::Path;
use std::time::Instant;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use loom::activity::Actor;
use loom::beads::{Bead, NewBead, RetryPolicy};
use loom::db::Pool;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge};
use loom::executor::{ExecutorConfig, Executors, Limits};
use loom::gateway::{Gateway, GatewayConfig, HealthState};
use loom::git::{ProjectRepo, Repos, Signature};
use scripted::{Reply, ScriptedGateway};
use serde_json::json;

const DB: &str = "loom_bench_executor";
const FILES: usize = 60;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// A bare upstream with `FILES` small files.
fn upstream(root: &Path) -> String {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..FILES {
        std::fs::write(work.join(format!("f{i}.txt")), format!("file {i}\n").repeat(40)).unwrap();
    }
    // The same 1,000 lines of Rust twice: edits of the .rs are syntax-checked, of the .txt not.
    let code: String =
        (0..250).map(|i| format!("fn f{i}() -> u32 {{\n    // slot {i}:\n    {i}\n}}\n")).collect();
    std::fs::write(work.join("big.rs"), &code).unwrap();
    std::fs::write(work.join("big.txt"), &code).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "start"]);
    git(root, &["clone", "-q", "--bare", "work", "origin.git"]);
    root.join("origin.git").to_string_lossy().into_owned()
}

struct Env {
    pool: Pool,
    script: ScriptedGateway,
    dispatcher: Dispatcher,
    executors: Executors,
    repos: Repos,
    repo: ProjectRepo,
    _dir: tempfile::TempDir,
}

async fn setup() -> Env {
    let pool = fresh_pool(DB).await;
    let dir = tempfile::tempdir().unwrap();
    let origin = upstream(dir.path());
    pool.get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "INSERT INTO personas (name, display_name, role, labels, instructions)
               VALUES ('engineer', 'Engineer', 'engineer', '{{}}', 'Do the work.');
             INSERT INTO projects (id, name, repo, branch, prefix, max_parallel)
               VALUES ('b', 'Bench', '{origin}', 'main', 'b', 64);
             INSERT INTO agents (id, name, persona)
               SELECT gen_random_uuid(), 'agent-' || g, 'engineer' FROM generate_series(1, 128) g;"
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
    let limits = Limits { max_turns: 200, ..Limits::default() };
    let config = ExecutorConfig { limits, ..ExecutorConfig::default() };
    let data = dir.path().join("data");
    let executors = Executors::start(pool.clone(), gateway, &data, RetryPolicy::default(), config);
    let dispatcher = Dispatcher::new(pool.clone(), DispatchConfig::default(), Nudge::default());
    let repo = ProjectRepo { id: "b".into(), repo: origin, branch: "main".into() };
    Env { pool, script, dispatcher, executors, repos: Repos::new(data), repo, _dir: dir }
}

/// What a bench bead's agent does before `done`.
#[derive(Clone, Copy)]
enum Turns {
    /// Reads this many different files.
    Reads(usize),
    /// Edits this many different lines of the file.
    Edits(usize, &'static str),
}

impl Env {
    /// Files a bead whose scripted agent reads `reads` different files, then finishes.
    async fn bead(&self, reads: usize) -> String {
        self.bead_doing(Turns::Reads(reads)).await
    }

    /// Files a bead whose scripted agent does `turns`, then finishes.
    async fn bead_doing(&self, turns: Turns) -> String {
        let new = NewBead {
            project: "b".into(),
            title: format!("bench {}", uuid::Uuid::now_v7()),
            description: None,
            bead_type: None,
            priority: None,
            labels: None,
            persona: None,
            parent: None,
            depends_on: None,
        };
        let bead =
            Bead::create(&mut self.pool.get().await.unwrap(), new, Actor::System).await.unwrap();
        let actions: Vec<_> = match turns {
            Turns::Reads(n) => (0..n)
                .map(|i| json!({"action": "read_file", "path": format!("f{}.txt", i % FILES)}))
                .collect(),
            // Each bead appends to the slots (its work is merged), so `old` always matches once.
            Turns::Edits(n, path) => (0..n)
                .map(|i| {
                    let (old, new) = (format!("// slot {i}:"), format!("// slot {i}: x"));
                    json!({"action": "edit_file", "path": path, "old": old, "new": new})
                })
                .collect(),
        };
        for action in actions {
            self.script.push_for(&bead.id, Reply::action(action));
        }
        self.script
            .push_for(&bead.id, Reply::action(json!({"action": "done", "summary": "Read."})));
        bead.id
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

    async fn open_beads(&self) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let q = "SELECT count(*) AS n FROM beads WHERE status <> 'closed'";
        diesel::sql_query(q).get_result::<N>(&mut self.pool.get().await.unwrap()).await.unwrap().n
    }
}

/// Seconds for one bead of `reads` reads, from filing to closed.
async fn one(env: &mut Env, reads: usize) -> f64 {
    one_doing(env, Turns::Reads(reads)).await
}

/// Seconds for one bead doing `turns`, from filing to closed.
async fn one_doing(env: &mut Env, turns: Turns) -> f64 {
    env.bead_doing(turns).await;
    let t = Instant::now();
    env.work().await;
    assert_eq!(env.open_beads().await, 0, "every bead closed");
    t.elapsed().as_secs_f64()
}

struct Report {
    short: Vec<f64>,
    long: Vec<f64>,
    edits_rs: Vec<f64>,
    edits_txt: Vec<f64>,
    commit: Vec<f64>,
    merge: Vec<f64>,
    push: Vec<f64>,
    fan: Vec<(usize, f64)>,
}

const TURNS: usize = 50;

async fn git_ops(env: &Env, rounds: usize, r: &mut Report) {
    env.repos.ensure(&env.repo).await.unwrap();
    let author = Signature::new("bench", "bench@example.com");
    for i in 0..rounds {
        let bead = format!("b-gitops{i}");
        let wt = env.repos.worktree(&env.repo, &bead).await.unwrap();
        std::fs::write(wt.path.join(format!("new{i}.txt")), "new\n").unwrap();
        let t = Instant::now();
        env.repos.commit(&wt, &author, "bench", &[("Bead", &bead)]).await.unwrap().unwrap();
        r.commit.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        env.repos.merge(&env.repo, &bead).await.unwrap();
        r.merge.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        env.repos.push(&env.repo).await.unwrap();
        r.push.push(t.elapsed().as_secs_f64());
        env.repos.remove_worktree(&env.repo, &bead).await.unwrap();
    }
}

/// `n` runs of 10 turns each at once (the project's max_parallel is `n`): seconds for all.
async fn fan_out(env: &mut Env, n: usize) -> f64 {
    diesel::sql_query(format!("UPDATE projects SET max_parallel = {n}"))
        .execute(&mut env.pool.get().await.unwrap())
        .await
        .unwrap();
    for _ in 0..n {
        env.bead(9).await;
    }
    let t = Instant::now();
    env.work().await;
    assert_eq!(env.open_beads().await, 0, "every bead closed");
    t.elapsed().as_secs_f64()
}

fn table(r: &Report, rounds: usize) -> String {
    let ms = |s: f64| format!("{:.2} ms", s * 1000.0);
    let (short, long) = (median(r.short.clone()), median(r.long.clone()));
    let mut out = String::from("| measure | median |\n|---|---|\n");
    out += &format!("| a bead of 1 turn (done), filed → closed | {} |\n", ms(short));
    out += &format!(
        "| a bead of {} turns ({TURNS} reads, done), filed → closed | {} |\n",
        TURNS + 1,
        ms(long)
    );
    out += &format!(
        "| the loop's cost per turn: the difference / {TURNS} | {} |\n",
        ms((long - short) / TURNS as f64)
    );
    let (rs, txt) = (median(r.edits_rs.clone()), median(r.edits_txt.clone()));
    out += &format!(
        "| a bead of {} turns ({TURNS} edits of a 1,000-line .rs file, syntax-checked) | {} |\n",
        TURNS + 1,
        ms(rs)
    );
    out +=
        &format!("| the same edits of the same lines in a .txt file (no parser) | {} |\n", ms(txt));
    out += &format!(
        "| the syntax guard's cost per edit: the difference / {TURNS} | {} |\n",
        ms((rs - txt) / TURNS as f64)
    );
    out +=
        &format!("| commit of one new file in a worktree | {} |\n", ms(median(r.commit.clone())));
    out += &format!(
        "| merge into the project branch (bare clone) | {} |\n",
        ms(median(r.merge.clone()))
    );
    out += &format!("| push to a local bare upstream | {} |\n", ms(median(r.push.clone())));
    for (n, secs) in &r.fan {
        let turns = (*n * 10) as f64;
        out += &format!(
            "| {n} runs of 10 turns at once: all done in | {} ({:.0} turns/s, {:.1} runs/s) |\n",
            ms(*secs),
            turns / secs,
            *n as f64 / secs
        );
    }
    out += &format!(
        "| rounds (1-turn and {}-turn beads; edit beads; git operations) | {rounds}; {rounds}; {rounds} |\n",
        TURNS + 1
    );
    out
}

fn main() {
    let rounds: usize =
        std::env::var("LOOM_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut env = setup().await;
        let mut r = Report {
            short: vec![],
            long: vec![],
            edits_rs: vec![],
            edits_txt: vec![],
            commit: vec![],
            merge: vec![],
            push: vec![],
            fan: vec![],
        };
        // Warm-up: the clone, the first worktree, prepared statements.
        one(&mut env, 1).await;
        // Interleaved, so the machine's drift hits both alike.
        for i in 0..rounds {
            r.short.push(one(&mut env, 0).await);
            r.long.push(one(&mut env, TURNS).await);
            println!(
                "round {i}: 1 turn {:.1} ms, {} turns {:.1} ms",
                r.short[i] * 1e3,
                TURNS + 1,
                r.long[i] * 1e3
            );
        }
        for i in 0..rounds {
            r.edits_rs.push(one_doing(&mut env, Turns::Edits(TURNS, "big.rs")).await);
            r.edits_txt.push(one_doing(&mut env, Turns::Edits(TURNS, "big.txt")).await);
            println!(
                "round {i}: {TURNS} edits .rs {:.1} ms, .txt {:.1} ms",
                r.edits_rs[i] * 1e3,
                r.edits_txt[i] * 1e3
            );
        }
        git_ops(&env, rounds, &mut r).await;
        for n in [1, 4, 16, 64] {
            let secs = fan_out(&mut env, n).await;
            println!("{n} at once: {:.2} s", secs);
            r.fan.push((n, secs));
        }
        let t = table(&r, rounds);
        println!("{t}");
        write_doc("executor", &t);
        drop(env);
        drop_database(DB).await;
    });
}
