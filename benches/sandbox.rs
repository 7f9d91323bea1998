//! Sandbox benchmark: what the sandbox adds to one `run` of an agent. The same `Workspace`
//! runs `true` unconfined (`LOOM_SANDBOX=off`) and in the bubblewrap sandbox, alternating
//! one of each per round so both see the same machine, and reports the medians and their
//! difference. Also a `git status` and a `python3 -c pass` each way, a command that does a
//! little real work. Writes its method and numbers into docs/PERFORMANCE.md.
//!
//!     cargo bench --bench sandbox
//!     LOOM_BENCH_ROUNDS=50 cargo bench --bench sandbox     # quicker
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark, not the service

mod common;

use std::path::Path;
use std::time::Instant;

use common::write_doc;
use loom::projects::Network;
use loom::workbench::sandbox::Cell;
use loom::workbench::{Sandbox, SandboxConfig, SandboxMode, Workspace};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("git").args(args).current_dir(dir).status().unwrap();
    assert!(ok.success(), "git {args:?}");
}

/// A real clone and worktree, as Loom lays them out, so the sandbox binds what it does in use.
fn layout(dir: &Path) -> Cell {
    let (clone, worktree) = (dir.join("repos/p"), dir.join("worktrees/p/b"));
    std::fs::create_dir_all(dir.join("up")).unwrap();
    git(&dir.join("up"), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("up/README.md"), "hello\n").unwrap();
    git(&dir.join("up"), &["add", "."]);
    git(&dir.join("up"), &["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]);
    git(dir, &["clone", "-q", "--bare", "up", "repos/p"]);
    std::fs::create_dir_all(dir.join("worktrees/p")).unwrap();
    git(&clone, &["worktree", "add", "-q", "-b", "loom/b", worktree.to_str().unwrap(), "main"]);
    let cache = dir.join("homes/p");
    std::fs::create_dir_all(&cache).unwrap();
    Cell { admin: clone.join("worktrees/b"), clone, worktree, cache, network: Network::None }
}

async fn workspace(cell: &Cell, mode: SandboxMode) -> Workspace {
    let sandbox = Sandbox::new(SandboxConfig { mode, ..SandboxConfig::default() });
    // As the executor sets it up: the toolchains' homes (pyenv's, rustup's) passed on.
    let ws = Workspace::new(&cell.worktree, sandbox, cell.clone())
        .unwrap()
        .with_env(loom::workbench::toolchain_env(&[]));
    ws.ready().await.unwrap();
    ws
}

#[tokio::main]
async fn main() {
    let rounds: usize =
        std::env::var("LOOM_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let cell = layout(dir.path());
    let off = workspace(&cell, SandboxMode::Off).await;
    let on = workspace(&cell, SandboxMode::Auto).await;
    let status = on.sandbox_status().await;
    assert!(status.available, "no sandbox here: {:?}", status.reason);
    let commands = ["true", "git status --short", "python3 -c pass"];
    let mut table = String::from(
        "| command | unconfined, median | sandboxed, median | added | ratio |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for command in commands {
        // Warm both (the probe, the page cache).
        off.run(command, None).await.unwrap();
        on.run(command, None).await.unwrap();
        let (mut plain, mut boxed) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (ws, times) in [(&off, &mut plain), (&on, &mut boxed)] {
                let t = Instant::now();
                let out = ws.run(command, None).await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                assert!(out.starts_with("[exit code 0]"), "{command}: {out}");
            }
        }
        let (p, b) = (median(plain), median(boxed));
        println!("{command}: unconfined {p:.2} ms, sandboxed {b:.2} ms (+{:.2} ms)", b - p);
        table.push_str(&format!(
            "| `{command}` | {p:.2} ms | {b:.2} ms | +{:.2} ms | {:.2}× |\n",
            b - p,
            b / p
        ));
    }
    let user = if nix::unistd::Uid::effective().is_root() {
        "as root (bwrap privileged, then `setpriv` to `nobody`)"
    } else {
        "as an ordinary user (bwrap in a user namespace)"
    };
    let method = format!(
        "Method: one worktree of a real bare clone laid out as Loom lays it out; `Workspace::run` \
         of each command {rounds} times unconfined and {rounds} times in the sandbox, alternating \
         one of each per round, wall time from spawn to the output read; medians. Loom ran {user}.\n\n"
    );
    write_doc("sandbox", &format!("{method}{table}\n"));
}
