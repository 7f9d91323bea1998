//! The faults, injected one after another while the replicas work: each round kills a
//! replica outright, cuts NATS, crashes Postgres and takes the gateway down, each for a
//! random while, with random pauses of normal work in between. Every fault is undone
//! before the next one starts, so at the end everything is up again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::fleet::Fleet;
use crate::postgres::PrivatePostgres;
use crate::support::gateway::ScriptedGateway;
use crate::support::replica::PrivateNats;
use crate::world::Rng;

/// What the faults act on.
pub struct Targets<'a> {
    pub fleet: &'a mut Fleet,
    pub nats: &'a mut PrivateNats,
    pub postgres: &'a PrivatePostgres,
    pub gateway: &'a ScriptedGateway,
    /// The projects' upstream repositories (bare, reached as local paths).
    pub upstreams: Vec<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillReplica,
    DropNats,
    RestartPostgres,
    GatewayDown,
}

const ROUND: [Fault; 4] =
    [Fault::KillReplica, Fault::DropNats, Fault::RestartPostgres, Fault::GatewayDown];

/// Injects faults for `length`, or until `finished` says the work is done; returns how many
/// of each it injected.
pub async fn inject(
    targets: &mut Targets<'_>,
    length: Duration,
    rng: &mut Rng,
    mut finished: impl AsyncFnMut() -> bool,
) -> BTreeMap<Fault, u32> {
    let end = Instant::now() + length;
    let mut injected = BTreeMap::new();
    'rounds: while Instant::now() < end {
        for fault in ROUND {
            pause(rng, 1_000, 3_000).await;
            targets.fleet.revive_the_fallen().await;
            targets.upstreams.iter().for_each(|u| clear_dead_pushers_locks(u));
            if Instant::now() >= end || finished().await {
                break 'rounds;
            }
            one(targets, fault, rng).await;
            *injected.entry(fault).or_insert(0) += 1;
        }
    }
    // The last fault's lock, if it left one, before the work settles.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    targets.upstreams.iter().for_each(|u| clear_dead_pushers_locks(u));
    injected
}

async fn one(t: &mut Targets<'_>, fault: Fault, rng: &mut Rng) {
    match fault {
        Fault::KillReplica => {
            let i = rng.below(t.fleet.len());
            t.fleet.kill_and_replace(i).await;
        }
        Fault::DropNats => {
            t.nats.stop();
            pause(rng, 1_000, 5_000).await;
            t.nats.resume().await;
        }
        Fault::RestartPostgres => {
            t.postgres.crash().await;
            pause(rng, 500, 3_000).await;
            t.postgres.start_server().await;
        }
        Fault::GatewayDown => {
            t.gateway.set_down(true);
            pause(rng, 2_000, 8_000).await;
            t.gateway.set_down(false);
        }
    }
}

/// The schedule's own clock: how long a fault lasts or work goes on undisturbed.
async fn pause(rng: &mut Rng, min_ms: u64, max_ms: u64) {
    let ms = min_ms + rng.below((max_ms - min_ms) as usize) as u64;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// A replica killed while pushing to a local-path upstream leaves the ref lock its push took
/// (`refs/heads/main.lock`) behind, and every later push is refused. A git server cleans up
/// after its own receive-pack when the client goes away; with the upstream on disk the test
/// stands in for that server, between faults. A live push holds its lock for milliseconds:
/// one older than `STALE` was left by a process that died.
fn clear_dead_pushers_locks(upstream: &std::path::Path) {
    const STALE: Duration = Duration::from_secs(2);
    let heads = upstream.join("refs").join("heads");
    let Ok(entries) = std::fs::read_dir(&heads) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if path.extension().is_some_and(|e| e == "lock") && age.is_some_and(|a| a > STALE) {
            eprintln!("chaos: removing {} left by the killed replica", path.display());
            let _ = std::fs::remove_file(path);
        }
    }
}
