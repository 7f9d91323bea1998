//! The dispatcher: hands every ready bead to an idle agent. Each step locks a page of idle
//! agents and of the ready queue that no other dispatcher holds (`queue`, `FOR UPDATE SKIP
//! LOCKED`), pairs them (`matching`) and claims every pair in the same transaction
//! (`Bead::claim_many`), so any number of dispatchers, in one process or many, can run
//! against one database: each takes its own slice, and none waits for another.
//! The loop wakes on a nudge from this process, on a run ending in any process (`listen`),
//! on another replica's events (`bus_wakes`), and also sweeps on an interval, so a lost wake-up only delays work.

pub mod bus_wakes;
pub mod limits;
mod listen;
pub mod matching;
mod queue;
pub mod review;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use diesel_async::AsyncConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::beads::Bead;
use crate::db::{Conn, Pool};
use crate::error::{Error, Result};
use matching::{Candidate, assign};

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How long a claim lives without renewal.
    pub lease: Duration,
    /// How often the dispatcher looks for work without being nudged.
    pub sweep_interval: Duration,
    /// Most ready beads read per page while looking for matches.
    pub page: i64,
    /// Claim only beads of projects some process runs an executor for (`executor_leases`),
    /// so that with no gateway or no executor anywhere, beads wait instead of being claimed,
    /// left unworked and failed when their lease lapses. `loom serve` sets it; tests that
    /// complete runs themselves do not.
    pub require_executor: bool,
    /// Token budgets that stop new claims when spent.
    pub spend: limits::SpendPolicy,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            lease: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(2),
            page: 200,
            require_executor: false,
            spend: limits::SpendPolicy::default(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This many beads were claimed.
    Worked(usize),
    Idle,
}

/// Wakes dispatchers in this process; cheap to clone and to call when nothing waits.
#[derive(Debug, Clone, Default)]
pub struct Nudge(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    notify: Notify,
    /// Taken by the one dispatcher sharing this nudge that listens for wake-ups from other
    /// processes: a run ending anywhere then wakes one listener per process, not every
    /// dispatcher.
    listening: AtomicBool,
    /// Dispatchers running with this nudge; the listener passes a wake-up on when it has
    /// company, so a burst of work is shared.
    running: AtomicUsize,
}

impl Nudge {
    pub fn wake(&self) {
        self.0.notify.notify_one();
    }

    async fn wait(&self) {
        self.0.notify.notified().await;
    }
}

pub struct Dispatcher {
    pool: Pool,
    config: DispatchConfig,
    nudge: Nudge,
    /// Told after every round that claimed something: this process's executors wait on it.
    claimed: Option<Arc<Notify>>,
    /// Told after every claim, so the feed publishes the claims at once.
    bus: Option<crate::events::Bus>,
    /// When the spend was last summed (`limits::refresh_holds`).
    spend_checked: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Pages of the ready queue read per step before giving up on matching the idle agents.
const MAX_PAGES: usize = 10;

impl Dispatcher {
    pub fn new(pool: Pool, config: DispatchConfig, nudge: Nudge) -> Self {
        Dispatcher {
            pool,
            config,
            nudge,
            claimed: None,
            bus: None,
            spend_checked: Default::default(),
        }
    }

    /// Notifies `claimed` whenever a round claims beads, so the work starts at once.
    pub fn on_claim(mut self, claimed: Arc<Notify>) -> Self {
        self.claimed = Some(claimed);
        self
    }

    /// Wakes the feed after every round that claimed something.
    pub fn with_bus(mut self, bus: crate::events::Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// One pass: claims ready beads for up to a page of idle agents that no other dispatcher
    /// holds, in one transaction.
    pub async fn step(&self) -> Result<Step> {
        let mut conn = self.pool.get().await?;
        if !queue::any_idle_agent(&mut conn).await? {
            return Ok(Step::Idle);
        }
        self.check_spend(&mut conn).await?;
        let started = std::time::Instant::now();
        let claimed =
            conn.transaction::<_, Error, _>(async |conn| self.claim_round(conn).await).await?;
        if claimed == 0 {
            return Ok(Step::Idle);
        }
        crate::metrics::get().dispatch_round(started.elapsed());
        if let Some(n) = &self.claimed {
            n.notify_one();
        }
        if let Some(bus) = &self.bus {
            bus.committed();
        }
        Ok(Step::Worked(claimed))
    }

    /// Sums the spend again when it was last summed `refresh` ago or more.
    async fn check_spend(&self, conn: &mut Conn) -> Result<()> {
        let due = {
            let mut at =
                self.spend_checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = at.is_none_or(|t| t.elapsed() >= self.config.spend.refresh);
            if due {
                *at = Some(std::time::Instant::now());
            }
            due
        };
        if due
            && limits::refresh_holds(conn, &self.config.spend).await?
            && let Some(bus) = &self.bus
        {
            bus.committed();
        }
        Ok(())
    }

    async fn claim_round(&self, conn: &mut Conn) -> Result<usize> {
        let mut gate = limits::Gate::load(conn).await?;
        if gate.fleet_held {
            crate::metrics::get().spend_refused();
            return Ok(0);
        }
        // Reviews first: they move finished work on towards landing.
        let until = crate::beads::lease_end(self.config.lease);
        let require = self.config.require_executor;
        let reviews = match gate.reviews_waiting {
            true => review::claim(conn, gate.held(), require, until, self.config.page).await?,
            false => 0,
        };
        let mut free = queue::lock_idle_agents(conn, self.config.page).await?;
        let mut pairs = Vec::new();
        let mut after = None;
        for _ in 0..MAX_PAGES {
            if free.is_empty() {
                break;
            }
            // As many beads as agents: when every agent can take every bead that is
            // enough, and locking more would only hide them from the other dispatchers.
            let limit = free.len() as i64;
            let page =
                queue::lock_ready(conn, &free, after.as_ref(), limit, require, gate.closed())
                    .await?;
            let candidates: Vec<Candidate> = page.iter().map(|r| r.candidate.clone()).collect();
            let project_of: std::collections::HashMap<&str, &str> =
                candidates.iter().map(|c| (c.id.as_str(), c.project.as_str())).collect();
            for (bead, agent) in assign(&candidates, &free) {
                // A WIP limit's room is used up in the order beads are matched.
                if !gate.take(project_of.get(bead.as_str()).copied().unwrap_or_default()) {
                    continue;
                }
                free.retain(|a| a.id != agent);
                pairs.push((bead, agent));
            }
            if (page.len() as i64) < limit {
                break;
            }
            after = page.last().map(|r| r.at.clone());
        }
        // Every row is locked by this transaction, so each pair is taken.
        Ok(reviews + Bead::claim_many(conn, &pairs, self.config.lease).await?.len())
    }

    /// Steps until a pass claims nothing.
    pub async fn run_until_idle(&self) -> Result<usize> {
        let mut total = 0;
        while let Step::Worked(n) = self.step().await? {
            total += n;
        }
        Ok(total)
    }

    /// The loop: drain, then wait for a nudge, a run ending anywhere (Postgres `NOTIFY`, for
    /// one dispatcher per nudge), the sweep interval or cancellation.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!("dispatcher started");
        let shared = &self.nudge.0;
        let member = Member::join(shared);
        let mut wakes = member.listens.then(|| listen::Wakes::new(self.pool.clone()));
        loop {
            if let Err(e) = self.run_until_idle().await {
                tracing::warn!(error = %e, "dispatch pass failed; retrying after the sweep interval");
            }
            let woken = async {
                match wakes.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.nudge.wait() => {}
                _ = woken => {
                    if shared.running.load(Ordering::Acquire) > 1 {
                        self.nudge.wake();
                    }
                }
                _ = tokio::time::sleep(self.config.sweep_interval) => {}
            }
        }
        drop(member);
        tracing::info!("dispatcher stopped");
    }
}

/// A running dispatcher's place among those sharing a nudge; given up when the loop ends,
/// however it ends (an aborted task drops it too).
struct Member<'a> {
    shared: &'a Shared,
    listens: bool,
}

impl<'a> Member<'a> {
    fn join(shared: &'a Shared) -> Member<'a> {
        shared.running.fetch_add(1, Ordering::AcqRel);
        let listens = !shared.listening.swap(true, Ordering::AcqRel);
        Member { shared, listens }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if self.listens {
            self.shared.listening.store(false, Ordering::Release);
        }
        self.shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}
