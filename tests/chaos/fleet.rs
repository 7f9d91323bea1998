//! The replicas: `loom serve` processes on one database, one NATS and one gateway, each in a
//! slot with a data directory of its own that outlives the process, as a deployment's
//! persistent volume does: a killed replica's replacement finds its clones and worktrees.

use std::path::{Path, PathBuf};

use crate::support::serve::Server;

pub struct Fleet {
    slots: Vec<Slot>,
    database_url: String,
    env: Vec<(&'static str, String)>,
    logs: PathBuf,
    /// Replicas that exited without being killed, with the end of their logs.
    pub unexpected_exits: Vec<String>,
}

struct Slot {
    data: PathBuf,
    server: Server,
    base: String,
    /// Processes this slot has had, for the names of their saved logs.
    generation: u32,
}

/// The settings every replica gets: short leases and a fast ticker, so work a dead replica
/// held is taken over, and lapsed work healed, within seconds.
pub fn environment(nats_url: &str, gateway_url: &str, key: &str) -> Vec<(&'static str, String)> {
    let personas = Path::new(env!("CARGO_MANIFEST_DIR")).join("personas");
    vec![
        ("LOOM_PERSONAS_DIR", personas.display().to_string()),
        ("LOOM_NATS_URL", nats_url.to_owned()),
        ("LOOM_GATEWAY_URL", gateway_url.to_owned()),
        ("LOOM_GATEWAY_MODEL", "scripted-model".to_owned()),
        ("LOOM_GATEWAY_API_KEY", key.to_owned()),
        ("LOOM_GATEWAY_PROBE_SECONDS", "2".to_owned()),
        ("LOOM_GATEWAY_TIMEOUT_SECONDS", "30".to_owned()),
        ("LOOM_LEASE_SECONDS", "10".to_owned()),
        ("LOOM_EXECUTOR_LEASE_SECONDS", "3".to_owned()),
        ("LOOM_DISPATCH_INTERVAL_SECONDS", "1".to_owned()),
        ("LOOM_TICKER_LEASES", "* * * * * *".to_owned()),
        ("LOOM_TICKER_ZOMBIES", "*/2 * * * * *".to_owned()),
        ("LOOM_TICKER_PARKED", "*/2 * * * * *".to_owned()),
        // Short outages over a few minutes: parks back off from a second, not thirty.
        ("LOOM_PARK_BACKOFF_SECONDS", "1".to_owned()),
        ("LOOM_DB_POOL_SIZE", "12".to_owned()),
    ]
}

impl Fleet {
    /// Starts `replicas` processes, each in its own slot under `root`, and waits until each
    /// listens.
    pub async fn start(
        root: &Path,
        database_url: &str,
        env: Vec<(&'static str, String)>,
        replicas: usize,
    ) -> Fleet {
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).expect("a directory for the logs");
        let mut fleet = Fleet {
            slots: Vec::new(),
            database_url: database_url.to_owned(),
            env,
            logs,
            unexpected_exits: Vec::new(),
        };
        for i in 0..replicas {
            let data = root.join(format!("replica-{i}"));
            let (server, base) = fleet.launch(&data).await;
            fleet.slots.push(Slot { data, server, base, generation: 0 });
        }
        fleet
    }

    async fn launch(&self, data: &Path) -> (Server, String) {
        let mut env = self.env.clone();
        env.push(("LOOM_DATA_DIR", data.display().to_string()));
        let mut server = Server::start_with_ticker(&self.database_url, &env);
        let base = format!("http://127.0.0.1:{}", server.port().await);
        (server, base)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The URL of a replica that was listening when last looked at.
    pub fn base(&self, i: usize) -> &str {
        &self.slots[i].base
    }

    /// `kill -9` of replica `i`, then a new process in its slot.
    pub async fn kill_and_replace(&mut self, i: usize) {
        self.slots[i].server.kill_hard().await;
        self.replace(i).await;
    }

    async fn replace(&mut self, i: usize) {
        self.save_log(i);
        let (server, base) = self.launch(&self.slots[i].data.clone()).await;
        let slot = &mut self.slots[i];
        (slot.server, slot.base, slot.generation) = (server, base, slot.generation + 1);
    }

    /// Replaces every replica that exited on its own, and records that it did: a replica
    /// must survive its database, bus or gateway going away.
    pub async fn revive_the_fallen(&mut self) {
        for i in 0..self.slots.len() {
            let Ok(Some(status)) = self.slots[i].server.child.try_wait() else { continue };
            let log = self.slots[i].server.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            self.unexpected_exits.push(format!(
                "replica {i} (process {}) exited by itself ({status}); its log ends:\n{}",
                self.slots[i].generation,
                tail.join("\n")
            ));
            self.replace(i).await;
        }
    }

    /// Keeps a process's log beside the others, since its `Server` is about to go.
    fn save_log(&self, i: usize) {
        let slot = &self.slots[i];
        let to = self.logs.join(format!("replica-{i}.{}.log", slot.generation));
        let _ = std::fs::copy(slot.server.log_path(), to);
    }

    /// Every log line of every process so far that says `ERROR` or `panicked`.
    pub fn errors(&self) -> Vec<String> {
        for i in 0..self.slots.len() {
            self.save_log(i);
        }
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(&self.logs).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            lines.extend(
                text.lines()
                    .filter(|l| l.contains("ERROR") || l.contains("panicked"))
                    .map(|l| format!("{name}: {l}")),
            );
        }
        lines
    }

    /// Stops every replica gracefully (SIGTERM) and waits for them to exit.
    pub async fn stop(mut self) {
        for slot in &self.slots {
            slot.server.terminate();
        }
        for slot in &mut self.slots {
            let _ = slot.server.child.wait().await;
        }
    }
}
