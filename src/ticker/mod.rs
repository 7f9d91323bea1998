//! The ticker: scheduled jobs that heal stuck work and fire recurring schedules. Each job is
//! a steppable method (one pass, reporting what it healed) that tests call directly; `start`
//! puts them on tokio-cron-scheduler with the configured schedules. Every healed item is its
//! own transaction with a `ticker.healed` (or `schedule.*`) activity row.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::beads::{self, Bead, BlockedReason, RetryPolicy};
use crate::db::Pool;
use crate::dispatch::Nudge;
use crate::error::Result;
use crate::gateway::{Health, HealthState};
use crate::projects::{RepoState, repo_state};
use crate::schedules::{Fired, Schedule};

/// When each job runs: six-field cron expressions (seconds first), in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickerConfig {
    pub expire_leases: String,
    pub free_zombies: String,
    pub resume_parked: String,
    pub schedules: String,
}

impl Default for TickerConfig {
    fn default() -> Self {
        TickerConfig {
            expire_leases: "*/5 * * * * *".into(),
            free_zombies: "*/30 * * * * *".into(),
            resume_parked: "*/15 * * * * *".into(),
            schedules: "*/10 * * * * *".into(),
        }
    }
}

/// What one pass of a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pass {
    /// Items looked at.
    pub seen: usize,
    /// Items changed.
    pub healed: usize,
}

impl std::ops::AddAssign for Pass {
    fn add_assign(&mut self, other: Pass) {
        self.seen += other.seen;
        self.healed += other.healed;
    }
}

/// Most items one pass takes on; the next pass continues.
const BATCH: i64 = 200;

pub struct Ticker {
    pool: Pool,
    retry: RetryPolicy,
    gateway: HealthState,
    nudge: Nudge,
    /// Woken after a job changed something, so the feed publishes it at once.
    bus: Option<crate::events::Bus>,
    /// This process's sandbox: beads parked for want of one resume once it can be made.
    sandbox: Option<crate::workbench::Sandbox>,
    /// For trying again the repositories of projects marked unreachable.
    repos: Option<crate::git::Repos>,
}

impl Ticker {
    pub fn new(pool: Pool, retry: RetryPolicy, gateway: HealthState, nudge: Nudge) -> Self {
        Ticker { pool, retry, gateway, nudge, bus: None, sandbox: None, repos: None }
    }

    pub fn with_repos(mut self, repos: crate::git::Repos) -> Self {
        self.repos = Some(repos);
        self
    }

    pub fn with_sandbox(mut self, sandbox: crate::workbench::Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    pub fn with_bus(mut self, bus: crate::events::Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    fn changed(&self) {
        self.nudge.wake();
        if let Some(bus) = &self.bus {
            bus.committed();
        }
    }

    /// Returns beads whose lease ran out to `open` (an attempt counted) and frees their
    /// agents.
    pub async fn expire_leases(&self) -> Result<Pass> {
        let mut conn = self.pool.get().await?;
        let ids = Bead::expired_leases(&mut conn, BATCH).await?;
        let mut pass = Pass { seen: ids.len(), healed: 0 };
        for id in ids {
            match Bead::expire_lease(&mut conn, &id, self.retry).await {
                Ok(Some(e)) => {
                    tracing::warn!(bead.id = %e.bead, run.id = ?e.run, agent.id = ?e.agent, after = ?e.after, "a lease expired; the claim was ended");
                    pass.healed += 1;
                }
                Ok(None) => {}
                Err(e) => item_failed("expire_leases", &id, &e),
            }
        }
        Ok(self.woke(pass))
    }

    /// Fails chat replies whose writer stopped renewing them (its process died), so their
    /// streams end with a reason instead of hanging.
    pub async fn fail_lost_replies(&self) -> Result<Pass> {
        let mut conn = self.pool.get().await?;
        let lapsed = crate::chat::heal::lapsed(&mut conn, BATCH).await?;
        let mut pass = Pass { seen: lapsed.len(), healed: 0 };
        for (conversation, message) in lapsed {
            match crate::chat::heal::fail_lapsed(&mut conn, conversation, message).await {
                Ok(Some((conversation, event))) => {
                    tracing::warn!(conversation.id = %conversation.id, message.id = message, "a chat reply's writer stopped; the reply failed");
                    if let Some(bus) = &self.bus {
                        let kind = crate::chat::EventKind::Error;
                        crate::chat::events::announce(bus, &conversation, event, kind, message);
                    }
                    pass.healed += 1;
                }
                Ok(None) => {}
                Err(e) => item_failed("fail_lost_replies", &message.to_string(), &e),
            }
        }
        Ok(self.woke(pass))
    }

    /// Sets agents idle that are marked working without a live claim.
    pub async fn free_zombies(&self) -> Result<Pass> {
        let mut conn = self.pool.get().await?;
        let ids = beads::zombie_agents(&mut conn, BATCH).await?;
        let mut pass = Pass { seen: ids.len(), healed: 0 };
        for id in ids {
            match beads::free_zombie(&mut conn, id).await {
                Ok(true) => {
                    tracing::warn!(agent.id = %id, "an agent was marked working with nothing to work on; it is idle again");
                    pass.healed += 1;
                }
                Ok(false) => {}
                Err(e) => item_failed("free_zombies", &id.to_string(), &e),
            }
        }
        Ok(self.woke(pass))
    }

    /// Reopens beads parked as `gateway_unavailable` once the gateway is healthy, and those
    /// parked as `sandbox_unavailable` once this process can make a sandbox (or its operator
    /// turned the sandbox off), each once its park's back-off has passed.
    pub async fn resume_parked(&self) -> Result<Pass> {
        self.resume_parked_at(Utc::now()).await
    }

    /// `resume_parked` as if it were `now` (tests look ahead past a park's back-off).
    pub async fn resume_parked_at(&self, now: DateTime<Utc>) -> Result<Pass> {
        let mut pass = Pass::default();
        if self.gateway.get() == Health::Healthy {
            pass += self.resume(BlockedReason::GatewayUnavailable, now).await?;
        }
        if let Some(sandbox) = &self.sandbox {
            let status = sandbox.status().await;
            if status.available || status.mode == crate::workbench::SandboxMode::Off {
                pass += self.resume(BlockedReason::SandboxUnavailable, now).await?;
            }
        }
        Ok(self.woke(pass))
    }

    async fn resume(&self, reason: BlockedReason, now: DateTime<Utc>) -> Result<Pass> {
        let mut conn = self.pool.get().await?;
        let ids = Bead::parked(&mut conn, reason, now, BATCH).await?;
        let mut pass = Pass { seen: ids.len(), healed: 0 };
        for id in ids {
            match Bead::resume_parked(&mut conn, &id, reason).await {
                Ok(true) => pass.healed += 1,
                Ok(false) => {}
                Err(e) => item_failed("resume_parked", &id, &e),
            }
        }
        if pass.healed > 0 {
            tracing::info!(beads = pass.healed, reason = %reason, "parked beads are back in the queue");
        }
        Ok(pass)
    }

    /// Tries the repository of every project marked unreachable (without cloning: see
    /// `Repos::probe`); one that answers is marked `ok` and its beads are dispatched again,
    /// one that still does not keeps its state with the latest error.
    pub async fn check_repos(&self) -> Result<Pass> {
        let Some(repos) = &self.repos else { return Ok(Pass::default()) };
        let projects = repo_state::unreachable(&mut *self.pool.get().await?).await?;
        let mut pass = Pass { seen: projects.len(), healed: 0 };
        for p in projects {
            let repo = crate::git::ProjectRepo { id: p.id, repo: p.repo, branch: p.branch };
            let (state, error) = match repos.probe(&repo).await {
                Ok(()) => (RepoState::Ok, None),
                Err(e) => (RepoState::Unreachable, Some(e.to_string())),
            };
            let mut conn = self.pool.get().await?;
            match repo_state::mark(&mut conn, &repo.id, Some(&repo.repo), state, error.as_deref())
                .await
            {
                Ok(true) => {
                    tracing::info!(project.id = %repo.id, "the project's repository answers again");
                    pass.healed += 1;
                }
                Ok(false) => {}
                Err(e) => item_failed("check_repos", &repo.id, &e),
            }
        }
        Ok(self.woke(pass))
    }

    /// Fires every schedule that is due.
    pub async fn fire_schedules(&self) -> Result<Vec<Fired>> {
        let mut conn = self.pool.get().await?;
        let now = Utc::now();
        let mut fired = Vec::new();
        while fired.len() < BATCH as usize {
            match Schedule::fire_next_due(&mut conn, now).await? {
                Some(f) => fired.push(f),
                None => break,
            }
        }
        if !fired.is_empty() {
            tracing::info!(schedules = fired.len(), "fired schedules");
            self.changed();
        }
        Ok(fired)
    }

    fn woke(&self, pass: Pass) -> Pass {
        if pass.healed > 0 {
            self.changed();
        }
        pass
    }

    /// Puts every job on a scheduler and starts it. A bad expression fails here, naming the
    /// job. A pass still running when its next time comes is not started twice.
    pub async fn start(self, config: &TickerConfig) -> anyhow::Result<JobScheduler> {
        let ticker = Arc::new(self);
        let scheduler = JobScheduler::new().await.context("starting the ticker")?;
        let jobs: [(&str, &str, JobFn); 6] = [
            ("expire_leases", &config.expire_leases, |t| {
                Box::pin(async move { t.expire_leases().await.map(|_| ()) })
            }),
            // Leases of both kinds, on the same beat.
            ("fail_lost_replies", &config.expire_leases, |t| {
                Box::pin(async move { t.fail_lost_replies().await.map(|_| ()) })
            }),
            ("free_zombies", &config.free_zombies, |t| {
                Box::pin(async move { t.free_zombies().await.map(|_| ()) })
            }),
            ("resume_parked", &config.resume_parked, |t| {
                Box::pin(async move { t.resume_parked().await.map(|_| ()) })
            }),
            // Repositories marked unreachable, on the beat of the other parked work.
            ("check_repos", &config.resume_parked, |t| {
                Box::pin(async move { t.check_repos().await.map(|_| ()) })
            }),
            ("schedules", &config.schedules, |t| {
                Box::pin(async move { t.fire_schedules().await.map(|_| ()) })
            }),
        ];
        for (name, cron, run) in jobs {
            let ticker = ticker.clone();
            let running = Arc::new(Mutex::new(()));
            let job = Job::new_async(cron, move |_, _| {
                let (ticker, running) = (ticker.clone(), running.clone());
                Box::pin(async move {
                    let Ok(_guard) = running.try_lock() else { return };
                    if let Err(e) = run(ticker).await {
                        tracing::warn!(job = name, error = %e, "a ticker pass failed; the next one retries");
                    }
                })
            })
            .with_context(|| format!("the ticker schedule of {name} ({cron:?}) is not a six-field cron expression"))?;
            scheduler.add(job).await.with_context(|| format!("scheduling {name}"))?;
        }
        scheduler.start().await.context("starting the ticker")?;
        tracing::info!("ticker started");
        Ok(scheduler)
    }
}

/// One item that cannot be healed must not hold up the rest of the pass; it is retried on
/// the next one.
fn item_failed(job: &str, item: &str, e: &crate::Error) {
    tracing::warn!(job, item, error = %e, "could not heal an item; the next pass retries it");
}

type JobFn =
    fn(Arc<Ticker>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;
