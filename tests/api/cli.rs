use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{PASSWORD, spawn};

struct Cli {
    url: String,
    home: tempfile::TempDir,
}

impl Cli {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loom"))
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("LOOM_TOKEN")
            .env("LOOM_URL", &self.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_logs_in_and_drives_projects_and_beads() {
    let app = spawn().await;
    let cli = Cli { url: app.base.clone(), home: tempfile::tempdir().unwrap() };
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let cli = &cli;
        async move { tokio::task::block_in_place(|| cli.run(args, stdin)) }
    };
    let (ok, _, err) = run(&["bead", "list"], None).await;
    assert!(!ok && err.contains("not logged in"), "{err}");
    let login: &'static str = Box::leak(format!("{PASSWORD}\n").into_boxed_str());
    let (ok, out, err) =
        run(&["login", "--username", "admin", "--password-stdin"], Some(login)).await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) =
        run(&["project", "create", "--id", "cli", "--name", "CLI", "--repo", "/tmp/r"], None).await;
    assert!(ok, "{err}");
    let (ok, out, _) = run(
        &["bead", "create", "--project", "cli", "--title", "first", "--priority", "P1", "--json"],
        None,
    )
    .await;
    assert!(ok);
    let bead: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bead["priority"], 1);
    let (ok, out, _) = run(&["bead", "ready", "--project", "cli"], None).await;
    assert!(ok && out.contains("first") && out.contains("P1"), "{out}");
    let (ok, _, err) = run(&["bead", "create", "--project", "nope", "--title", "x"], None).await;
    assert!(!ok && err.contains("unknown_project"), "{err}");
    let (ok, out, _) = run(&["bead", "list", "--json"], None).await;
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (ok, _, err) = run(&["bead", "show", "cli-zzzz"], None).await;
    assert!(!ok && err.contains("not found"), "{err}");
}
