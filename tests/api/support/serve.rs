//! A `loom serve` child process against a test database: killed when dropped, so a failing
//! test leaves no process behind, and its log shown when it exits early.
#![allow(dead_code)] // each test uses a different part

use std::path::{Path, PathBuf};

pub struct Server {
    pub child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `loom serve` on an ephemeral port with no ticker, an empty personas directory,
    /// its own data dir unless `env` names one, and `env` on top.
    pub fn start(url: &str, env: &[(&str, String)]) -> Server {
        Server::spawn(url, env, &["--no-ticker"])
    }

    /// The same with the ticker on (its schedules from `env`), for a test that relies on
    /// the healing jobs as a deployment does.
    pub fn start_with_ticker(url: &str, env: &[(&str, String)]) -> Server {
        Server::spawn(url, env, &[])
    }

    fn spawn(url: &str, env: &[(&str, String)], flags: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let personas = dir.path().join("personas");
        std::fs::create_dir(&personas).unwrap();
        let log = dir.path().join("serve.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_loom"));
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .args(flags)
            .env("LOOM_DATABASE_URL", url)
            .env("LOOM_DATA_DIR", dir.path().join("data"))
            .env("LOOM_PERSONAS_DIR", &personas)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server { child: cmd.spawn().unwrap(), log, _dir: dir }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test with the server's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("loom serve exited ({status}):\n{}", self.log());
        }
    }

    /// The port it listens on, from its log (waits for it to start).
    pub async fn port(&mut self) -> u16 {
        for _ in 0..600 {
            let log = strip_colours(&self.log());
            if let Some(line) = log.lines().find(|l| l.contains("Loom is listening")) {
                // `port=N` (pretty) or `"port":N` (json), after the message.
                let after = &line[line.find("Loom is listening").unwrap_or(0)..];
                let tail = after.split("port").nth(1).unwrap_or_default();
                let digits: String = tail
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                return digits.parse().unwrap_or_else(|_| panic!("no port in {line:?}"));
            }
            self.assert_running();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("loom serve never listened:\n{}", self.log());
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running").to_string();
        assert!(
            std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success()
        );
    }

    /// `kill -9`: no shutdown code runs.
    pub async fn kill_hard(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// The log without terminal colour sequences (`ESC [ ... m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
