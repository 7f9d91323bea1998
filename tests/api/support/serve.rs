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
        let dir = tempfile::tempdir().unwrap();
        let personas = dir.path().join("personas");
        std::fs::create_dir(&personas).unwrap();
        let log = dir.path().join("serve.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_loom"));
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--no-ticker"])
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

    /// `kill -9`: no shutdown code runs.
    pub async fn kill_hard(&mut self) {
        self.child.kill().await.unwrap();
    }
}
