//! The real `loom` binary run against a test server, each `Cli` with its own HOME so saved
//! logins never leak between tests.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

pub struct Cli {
    url: String,
    token: Option<String>,
    home: tempfile::TempDir,
}

impl Cli {
    /// A CLI that is not logged in.
    pub fn new(url: &str) -> Cli {
        Cli { url: url.to_owned(), token: None, home: tempfile::tempdir().unwrap() }
    }

    /// A CLI that sends `token` (as LOOM_TOKEN).
    pub fn with_token(url: &str, token: &str) -> Cli {
        Cli { token: Some(token.to_owned()), ..Cli::new(url) }
    }

    /// Runs `loom <args>`: (success, stdout, stderr). Blocks in place, so the server on the
    /// same (multi-thread) runtime keeps answering.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        tokio::task::block_in_place(|| self.run_blocking(args, stdin))
    }

    /// Runs `loom <args> --json`, asserts it succeeded and returns what it printed.
    pub fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let (ok, out, err) = self.run(&args, None);
        assert!(ok, "loom {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Starts `loom <args>` without waiting for it, stdout piped (for `--follow`).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.start(args, Stdio::null())
    }

    /// Starts `loom <args>` with stdin, stdout and stderr piped (for `chat`, line by line).
    pub fn spawn_piped(&self, args: &[&str]) -> tokio::process::Child {
        self.start(args, Stdio::piped())
    }

    fn start(&self, args: &[&str], stdin: Stdio) -> tokio::process::Child {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loom"));
        command
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("LOOM_URL", &self.url)
            .env("LOOM_TOKEN", self.token.as_deref().unwrap_or_default())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.spawn().unwrap()
    }

    fn run_blocking(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_loom"));
        command
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("LOOM_TOKEN")
            .env("LOOM_URL", &self.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = &self.token {
            command.env("LOOM_TOKEN", token);
        }
        let mut child = command.spawn().unwrap();
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
