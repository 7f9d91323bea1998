//! The sandbox's escape matrix, driven through the real executor (and the chat): each probe
//! is a `run` (or a file action) a scripted model asks for, and each must fail, with the
//! failure in the text the model reads; where it matters, the host is checked afterwards.
//! `mode: off` is the control: the same probes succeed there, so none of these tests passes
//! for want of trying.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use loom::executor::Limits;
use loom::workbench::{Sandbox, SandboxConfig, SandboxMode};

use crate::support::chat::Pairing;
use crate::support::gateway::Reply;
use crate::support::sse::SseClient;
use crate::support::work::Work;

/// Performs `actions` on a new bead, then blocks it (so its worktree stays); the bead and
/// the results of its steps, setup included, in order.
async fn probe(w: &mut Work, title: &str, actions: Vec<Value>) -> (String, Vec<String>) {
    let bead = w.bead(title).await;
    for action in actions {
        w.script.push_for(&bead, Reply::action(action));
    }
    w.script.push_for(&bead, Reply::action(json!({"action": "block", "question": "Probed."})));
    w.settle().await;
    let steps = w.steps(&bead).await;
    let results = steps
        .iter()
        .filter(|s| s["action"]["action"] != "block")
        .map(|s| s["result"].as_str().unwrap_or_default().to_owned())
        .collect();
    (bead, results)
}

fn run(command: &str) -> Value {
    json!({"action": "run", "command": command, "timeout_s": 20})
}

/// The exit code a run's result starts with (`[exit code N]`).
fn exit_code(result: &str) -> Option<i32> {
    result.strip_prefix("[exit code ")?.split(']').next()?.parse().ok()
}

fn worktree(w: &Work, bead: &str) -> PathBuf {
    w.data.path().join("worktrees/web").join(bead)
}

/// A file of Loom's own, outside anything a command may see: removed when dropped.
struct HostFile(PathBuf);

impl HostFile {
    fn new(dir: &Path, content: &str) -> HostFile {
        let path = dir.join(format!("loom-sandbox-probe-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, content).unwrap();
        HostFile(path)
    }

    fn shown(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap())
}

/// Tries each `name=host:port` (TCP) or `name=/path` (Unix socket) and prints, per target,
/// `name CONNECTED` or `name FAILED <why>`.
const CONNECT_PY: &str = r#"import socket, sys
for arg in sys.argv[1:]:
    name, target = arg.split("=", 1)
    try:
        if target.startswith("/"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect(target)
        else:
            host, port = target.rsplit(":", 1)
            s = socket.create_connection((host, int(port)), 3)
        print(name, "CONNECTED")
    except Exception as e:
        print(name, "FAILED", type(e).__name__, e)
"#;

fn write_connect_py() -> Value {
    json!({"action": "write_file", "path": "connect.py", "content": CONNECT_PY})
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

/// A listener of the test's own on loopback, counting the connections it accepts.
async fn listener() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sees_neither_looms_data_nor_its_home_nor_its_process() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let data = w.data.path().to_owned();
    let in_data = HostFile::new(&data, "data secret\n");
    let in_home = HostFile::new(&home(), "home secret\n");
    let loom = std::process::id();
    let (_, results) = probe(
        &mut w,
        "Look around",
        vec![
            run(&format!("ls -a {}", data.display())),
            run(&format!("cat {}", in_data.shown())),
            run(&format!("cat {}", in_home.shown())),
            run(&format!("cat /proc/{loom}/environ")),
            run("cat /etc/shadow"),
            run(&format!("ls {}", data.join("repos/web/worktrees").display())),
        ],
    )
    .await;
    // The data dir is at most an empty skeleton of the mount points (worktrees, repos,
    // homes): Loom's own files there are not in it.
    let listed = &results[0];
    let name = in_data.0.file_name().unwrap().to_str().unwrap();
    assert!(!listed.contains(name), "{listed}");
    for (result, what) in [
        (&results[1], "a file in the data dir"),
        (&results[2], "a file in Loom's home"),
        (&results[3], "Loom's environment"),
    ] {
        assert_ne!(exit_code(result), Some(0), "{what} was read: {result}");
        assert!(result.contains("No such file or directory"), "{what}: {result}");
    }
    assert!(!results[1].contains("data secret") && !results[2].contains("home secret"));
    assert_ne!(exit_code(&results[4]), Some(0), "/etc/shadow was read: {}", results[4]);
    assert!(results[4].contains("Permission denied"), "{}", results[4]);
    // The clone's list of worktrees is empty but for this one's own entry.
    assert_eq!(exit_code(&results[5]), Some(0), "{}", results[5]);
    assert_eq!(results[5].lines().skip(1).count(), 1, "{}", results[5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_cannot_read_another_beads_worktree() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let (a, _) = probe(
        &mut w,
        "Keep a secret",
        vec![json!({"action": "write_file", "path": "secret.txt", "content": "bead A's\n"})],
    )
    .await;
    let theirs = worktree(&w, &a).join("secret.txt");
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "bead A's\n", "the file is there");
    let all = w.data.path().join("worktrees/web");
    let (b, results) = probe(
        &mut w,
        "Snoop",
        vec![run(&format!("cat {}", theirs.display())), run(&format!("ls {}", all.display()))],
    )
    .await;
    assert_ne!(exit_code(&results[0]), Some(0), "{}", results[0]);
    assert!(results[0].contains("No such file or directory"), "{}", results[0]);
    assert!(!results[0].contains("bead A's"), "{}", results[0]);
    // Only its own worktree is there.
    assert!(results[1].contains(&b) && !results[1].contains(&a), "{}", results[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_reaches_neither_postgres_nor_looms_port_nor_any_host_listener() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let (port, accepted) = listener().await;
    let loom_port = port_of(&w.app.base);
    let sockets = ["/run/postgresql/.s.PGSQL.5432", "/var/run/postgresql/.s.PGSQL.5432"];
    let command = format!(
        "python3 connect.py pg-tcp=127.0.0.1:5432 loom=127.0.0.1:{loom_port} \
         listener=127.0.0.1:{port} pg-run={} pg-var-run={}; \
         (echo > /dev/tcp/127.0.0.1/5432) 2>&1; bash -c 'echo > /dev/tcp/127.0.0.1/{port}'",
        sockets[0], sockets[1]
    );
    let (_, results) = probe(&mut w, "Phone home", vec![write_connect_py(), run(&command)]).await;
    let out = &results[1];
    assert!(!out.contains("CONNECTED"), "{out}");
    for name in ["pg-tcp", "loom", "listener", "pg-run", "pg-var-run"] {
        assert!(out.contains(&format!("{name} FAILED")), "{name}: {out}");
    }
    // Postgres's socket is not in the sandbox at all (when the host has one).
    if Path::new(sockets[0]).exists() {
        assert!(out.contains("pg-run FAILED FileNotFoundError"), "{out}");
    }
    assert!(out.contains("Connection refused"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the host's listener was reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_command_has_the_network_and_the_agents_own_commands_do_not() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let (port, accepted) = listener().await;
    let setup = format!(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 3); \
         print('ok')\" > setup.txt"
    );
    let admin = w.app.admin.clone();
    let res = w
        .app
        .call(
            Method::PATCH,
            "/api/v1/projects/web",
            Some(&admin),
            Some(json!({ "setup_command": setup })),
        )
        .await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);
    let (_, results) = probe(
        &mut w,
        "Use the network",
        vec![
            write_connect_py(),
            run(&format!("cat setup.txt; python3 connect.py listener=127.0.0.1:{port}")),
        ],
    )
    .await;
    assert!(results[0].starts_with("[exit code 0]"), "setup: {}", results[0]);
    let out = &results[2];
    assert!(out.contains("ok\n"), "the setup command reached the listener: {out}");
    assert!(out.contains("listener FAILED") && !out.contains("CONNECTED"), "{out}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "only the setup command connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_cannot_change_the_clones_config_or_hooks_but_git_reads_work() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let clone = w.data.path().join("repos/web");
    let (_, results) = probe(
        &mut w,
        "Plant a hook",
        vec![
            run("git config core.hooksPath /tmp/x"),
            run("echo '[core] hooksPath = /tmp/x' >> \"$(git rev-parse --git-common-dir)/config\""),
            run("touch \"$(git rev-parse --git-common-dir)/hooks/post-commit\""),
            run("echo 'gitdir: /tmp' > .git"),
            run("echo x >> \"$(git rev-parse --git-dir)/HEAD\""),
            run("git log --oneline"),
            run("git status"),
            run("echo b > a.txt && git diff"),
        ],
    )
    .await;
    let config_before = std::fs::read_to_string(clone.join("config")).unwrap();
    for (i, result) in results[..5].iter().enumerate() {
        assert_ne!(exit_code(result), Some(0), "write {i} went through: {result}");
        assert!(
            ["Read-only file system", "could not lock", "Permission denied"]
                .iter()
                .any(|why| result.contains(why)),
            "write {i}: {result}"
        );
    }
    assert!(!config_before.contains("hooksPath"), "{config_before}");
    assert!(!clone.join("hooks/post-commit").exists());
    assert!(results[5].starts_with("[exit code 0]") && results[5].contains("Initial commit"));
    assert!(results[6].starts_with("[exit code 0]"), "{}", results[6]);
    assert!(results[7].starts_with("[exit code 0]") && results[7].contains("+b"), "{}", results[7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_out_of_the_worktree_writes_nothing_outside_by_command_or_by_file_action() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    // A file of Loom's user outside the worktree (not /etc/passwd: were the sandbox gone,
    // the probe would damage the machine).
    let victim = HostFile::new(&home(), "untouched\n");
    let (_, results) = probe(
        &mut w,
        "Link out",
        vec![
            run(&format!("ln -s {} p && echo x >> p", victim.shown())),
            run("ln -s /etc/passwd pw && echo x >> pw"),
            json!({"action": "write_file", "path": "p", "content": "x\n"}),
        ],
    )
    .await;
    assert_ne!(exit_code(&results[0]), Some(0), "{}", results[0]);
    assert_ne!(exit_code(&results[1]), Some(0), "{}", results[1]);
    assert!(
        results[1].contains("Read-only file system") || results[1].contains("Permission denied"),
        "{}",
        results[1]
    );
    assert!(results[2].contains("points outside the worktree"), "{}", results[2]);
    assert_eq!(std::fs::read_to_string(&victim.0).unwrap(), "untouched\n");
}

// Found by this test before the file actions went through `workbench::beneath` (openat2
// with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): Loom, as root, wrote outside the worktree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_symlink_mid_action_lets_no_file_action_write_outside() {
    let limits = Limits { max_turns: 1000, token_budget: u64::MAX, ..Limits::default() };
    let mut w = Work::new(&[("a.txt", "a\n")], 1, limits).await;
    let outside = tempfile::tempdir().unwrap();
    let bead = w.bead("Race the checks").await;
    // The worktree exists once the run starts; a first step makes `sub` a directory.
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "write_file", "path": "sub/seed", "content": "s\n"})),
    );
    const WRITES: usize = 150;
    for i in 0..WRITES {
        let write = json!({"action": "write_file", "path": format!("sub/x{i}"), "content": "x\n"});
        w.script.push_for(&bead, Reply::action(write));
    }
    w.script.push_for(&bead, Reply::action(json!({"action": "block", "question": "Raced."})));
    // What a concurrent command would do (a chat on the same bead, say): swap `sub`, a
    // directory when the path is checked, for a symlink out, in a tight loop.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, tree, target) = (stop.clone(), worktree(&w, &bead), outside.path().to_owned());
        std::thread::spawn(move || {
            let (sub, held) = (tree.join("sub"), tree.join("sub.held"));
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                if std::fs::rename(&sub, &held).is_ok() {
                    let _ = std::os::unix::fs::symlink(&target, &sub);
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(&sub);
                    let _ = std::fs::rename(&held, &sub);
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    w.settle().await;
    stop.store(true, Ordering::SeqCst);
    swapper.join().unwrap();
    let escaped: Vec<_> = std::fs::read_dir(outside.path()).unwrap().flatten().collect();
    assert!(escaped.is_empty(), "file actions wrote outside the worktree: {escaped:?}");
    let steps = w.steps(&bead).await;
    assert!(steps.len() > WRITES, "the writes were performed: {}", steps.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_command_started_outlives_it_not_even_with_setsid() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let (bead, results) = probe(
        &mut w,
        "Linger",
        vec![run("setsid sh -c 'sleep 2; touch marker-setsid' >/dev/null 2>&1 < /dev/null & \
             (sh -c 'sleep 2; touch marker-fork' >/dev/null 2>&1 &) ; \
             nohup sh -c 'sleep 2; touch marker-nohup' >/dev/null 2>&1 & echo started")],
    )
    .await;
    assert!(results[0].starts_with("[exit code 0]") && results[0].contains("started"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tree = worktree(&w, &bead);
    assert!(tree.join("a.txt").exists(), "the worktree is there");
    for marker in ["marker-setsid", "marker-fork", "marker-nohup"] {
        assert!(!tree.join(marker).exists(), "{marker} was written after the run");
    }
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(!ps.contains("touch marker-"), "{ps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_and_a_file_size_bomb_are_stopped_by_the_limits_and_the_run_goes_on() {
    // A user of its own: the process limit counts every process of the user on the host,
    // so a bomb as `nobody` would starve the other tests' commands.
    let sandbox = Sandbox::new(SandboxConfig {
        user: "daemon".into(),
        processes: 40,
        file_size_mb: 1,
        ..SandboxConfig::default()
    });
    let mut w = Work::sandboxed(&[("a.txt", "a\n")], 1, Limits::default(), sandbox).await;
    let (bead, results) = probe(
        &mut w,
        "Bomb",
        vec![
            json!({"action": "run", "command": "f() { f | f & }; f; sleep 3; echo after", "timeout_s": 6}),
            run("head -c 2000000000 /dev/zero > big; echo status=$?"),
            run("echo alive"),
        ],
    )
    .await;
    let bomb = &results[0];
    assert!(
        bomb.contains("fork") || bomb.contains("Resource temporarily unavailable"),
        "the process limit stopped the bomb: {bomb}"
    );
    assert!(results[1].contains("status=153"), "killed by SIGXFSZ: {}", results[1]);
    let big = std::fs::metadata(worktree(&w, &bead).join("big")).unwrap().len();
    assert!(big <= 1024 * 1024, "the file grew to {big} bytes");
    assert!(results[2].starts_with("[exit code 0]") && results[2].contains("alive"));
    // Nothing of the bomb is left on the host.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ps = std::process::Command::new("ps").args(["-u", "daemon", "-o", "pid="]).output();
    let left = String::from_utf8_lossy(&ps.unwrap().stdout).lines().count();
    assert_eq!(left, 0, "processes of the bomb outlived it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_work_runs_python_git_and_an_offline_cargo_build() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let manifest = "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";
    let main = "fn main() {\n    println!(\"hello from the sandbox\");\n}\n";
    let (_, results) = probe(
        &mut w,
        "Build",
        vec![
            run("python3 -c 'print(6*7)'"),
            run("git log --oneline"),
            json!({"action": "write_file", "path": "hello/Cargo.toml", "content": manifest}),
            json!({"action": "write_file", "path": "hello/src/main.rs", "content": main}),
            json!({"action": "run", "command": "cd hello && cargo build --offline && ./target/debug/hello", "timeout_s": 300}),
        ],
    )
    .await;
    assert!(results[0].starts_with("[exit code 0]") && results[0].contains("42"), "{}", results[0]);
    assert!(results[1].starts_with("[exit code 0]"), "{}", results[1]);
    assert!(
        results[4].starts_with("[exit code 0]") && results[4].contains("hello from the sandbox"),
        "{}",
        results[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_sandbox_to_be_made_commands_are_refused_and_the_bead_waits_uncharged() {
    let sandbox =
        Sandbox::new(SandboxConfig { user: "no-such-user-xyz".into(), ..SandboxConfig::default() });
    let mut w = Work::sandboxed(&[("a.txt", "a\n")], 1, Limits::default(), sandbox).await;
    let bead = w.bead("Try").await;
    w.script.push_for(&bead, Reply::action(run("touch ran")));
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Ran."})));
    w.settle().await;
    let steps = w.steps(&bead).await;
    let result = steps[0]["result"].as_str().unwrap();
    assert!(result.contains("no sandbox can be made"), "{result}");
    assert!(result.contains("no-such-user-xyz"), "{result}");
    assert_eq!(steps[0]["ok"], false);
    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "blocked", "{shown}");
    assert_eq!(shown["blocked_reason"], "sandbox_unavailable", "{shown}");
    assert_eq!(shown["attempts"], 0, "{shown}");
    assert!(!worktree(&w, &bead).join("ran").exists());
}

/// The control: with the sandbox off, the probes above succeed, so their failing is the
/// sandbox's doing. Only reads, nothing that harms the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_sandbox_off_commands_run_unconfined_and_the_probes_succeed() {
    let sandbox =
        Sandbox::new(SandboxConfig { mode: SandboxMode::Off, ..SandboxConfig::default() });
    let mut w = Work::sandboxed(&[("a.txt", "a\n")], 1, Limits::default(), sandbox).await;
    let in_data = HostFile::new(w.data.path(), "data secret\n");
    let in_home = HostFile::new(&home(), "home secret\n");
    let (port, accepted) = listener().await;
    let (_, results) = probe(
        &mut w,
        "Unconfined",
        vec![
            run(&format!("cat {} {}", in_data.shown(), in_home.shown())),
            run(&format!("test -r /proc/{}/environ && echo readable", std::process::id())),
            write_connect_py(),
            run(&format!("python3 connect.py listener=127.0.0.1:{port}")),
        ],
    )
    .await;
    assert!(results[0].contains("data secret") && results[0].contains("home secret"));
    if nix::unistd::Uid::effective().is_root() {
        assert!(results[1].contains("readable"), "{}", results[1]);
    }
    assert!(results[3].contains("listener CONNECTED"), "{}", results[3]);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// The `action_result` events of a reply to `say`, which runs `commands`.
async fn chat_runs(p: &Pairing, commands: &[String]) -> Vec<Value> {
    let id = p.conversation(None).await;
    let calls: Vec<(&str, Value)> =
        commands.iter().map(|c| ("run", json!({ "command": c }))).collect();
    p.script.push(Reply::tool_calls(&calls)).push(Reply::text("Probed."));
    let mut stream: SseClient = p.stream(&id, None).await;
    p.say(&id, "Look around").await;
    let frames = stream.until("done").await;
    frames
        .iter()
        .filter(|f| f.event == "action_result")
        .map(|f| serde_json::from_str(&f.data).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_chat_a_command_sees_neither_looms_data_nor_its_process() {
    let p = Pairing::new(|_| {}).await;
    let in_data = HostFile::new(p.data.path(), "data secret\n");
    let results = chat_runs(
        &p,
        &[format!("cat {}", in_data.shown()), format!("cat /proc/{}/environ", std::process::id())],
    )
    .await;
    assert_eq!(results.len(), 2, "{results:?}");
    for result in &results {
        let out = result["output"].as_str().unwrap();
        assert_ne!(exit_code(out), Some(0), "{out}");
        assert!(out.contains("No such file or directory"), "{out}");
        assert!(!out.contains("data secret"), "{out}");
    }
}
