//! The executors of one process: which projects it owns (`ownership`), the runs it picked up
//! in them, one task per run up to each project's `max_parallel`, and their leases kept
//! alive; and each owned project's landing queue (`landing`), one task per project at a
//! time. `step()` does one round and says whether it started anything; `run` loops it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::ownership::Owner;
use super::pickup::{self, OpenRun};
use super::run::{self, RunEnv};
use crate::beads::{Bead, RunOutcome};
use crate::db::schema::projects;
use crate::error::Result;
use crate::workbench::actions::ToolsSetting;

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// How long a project's ownership lives without renewal.
    pub ownership_lease: Duration,
    /// How long a bead's lease lives without renewal (the dispatcher's lease).
    pub bead_lease: Duration,
    /// How often the loop looks for new runs without being woken.
    pub tick: Duration,
    /// A run adopted after its worker died this many times is failed instead.
    pub max_resumes: i32,
    /// What stops a run whatever the model says.
    pub limits: super::machine::Limits,
    /// Variables of Loom's environment that commands in `run` get too (`LOOM_RUN_PASS_ENV`).
    pub run_pass_env: Vec<String>,
    /// At shutdown, how long running turns have to reach their next checkpoint (the gateway
    /// call under way answered and its actions done) before they are stopped where they are.
    pub shutdown_grace: Duration,
    /// Where agents' commands run (one per process, shared with the chat).
    pub sandbox: crate::workbench::Sandbox,
    /// How replies carry actions: native tool calls, JSON in the text, or native until the
    /// gateway refuses tools.
    pub tools: ToolsSetting,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            ownership_lease: Duration::from_secs(30),
            bead_lease: Duration::from_secs(60),
            tick: Duration::from_secs(1),
            max_resumes: 2,
            limits: super::machine::Limits::default(),
            run_pass_env: Vec::new(),
            shutdown_grace: Duration::from_secs(20),
            sandbox: crate::workbench::Sandbox::default(),
            tools: Default::default(),
        }
    }
}

/// Times a run the database went away under is started again by this process.
const MAX_RESTARTS: u32 = 5;

/// Most runs picked up per round (the rest come next round).
const PICK_UP_BATCH: i32 = 200;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Runs started.
    Worked(usize),
    Idle,
}

struct Running {
    open: OpenRun,
    cancel: CancellationToken,
    handle: JoinHandle<run::Left>,
}

/// A project's landing queue as this process runs it: the step under way, and how the
/// last one ended.
#[derive(Default)]
struct Queue {
    step: Option<JoinHandle<Result<crate::landing::Stepped>>>,
    /// When the last step ended and whether it got anywhere: one that did not (origin
    /// unreachable, say) is tried again after `QUEUE_RETRY`, not every tick.
    last: Option<(Instant, bool)>,
}

/// How long a landing queue that could not make progress waits before it tries again.
const QUEUE_RETRY: Duration = Duration::from_secs(10);

pub struct Executors {
    env: Arc<RunEnv>,
    owner: Owner,
    config: ExecutorConfig,
    /// Projects owned, with their `max_parallel`.
    owned: HashMap<String, usize>,
    running: HashMap<Uuid, Running>,
    /// Picked up, waiting for a free slot in their project.
    queued: VecDeque<OpenRun>,
    claimed_at: Option<Instant>,
    renewed_at: Option<Instant>,
    /// Woken when this process's dispatcher claims beads.
    wake: Arc<tokio::sync::Notify>,
    /// Fired at shutdown: every run stops at its next checkpoint.
    checkpoint: CancellationToken,
    /// Runs started again after the database went away under them, and how often.
    restarts: HashMap<Uuid, u32>,
    /// Lands finished work in the projects this process owns.
    lander: crate::landing::Lander,
    queues: HashMap<String, Queue>,
}

impl Executors {
    fn new(env: Arc<RunEnv>, owner: Owner, config: ExecutorConfig) -> Executors {
        let lander = crate::landing::Lander {
            pool: env.pool.clone(),
            repos: env.repos.clone(),
            sandbox: env.sandbox.clone(),
            homes: env.homes.with_file_name("check-homes"),
            run_env: env.run_env.clone(),
            bus: env.bus.clone(),
            worker: owner.id,
            retry: env.retry,
            lease: config.ownership_lease,
        };
        Executors {
            env,
            owner,
            config,
            owned: HashMap::new(),
            running: HashMap::new(),
            queued: VecDeque::new(),
            claimed_at: None,
            renewed_at: None,
            wake: Arc::default(),
            checkpoint: CancellationToken::new(),
            restarts: HashMap::new(),
            lander,
            queues: HashMap::new(),
        }
    }

    /// The executors of this process, over Loom's clones under `data_dir`.
    pub fn start(
        pool: crate::db::Pool,
        gateway: crate::gateway::Gateway,
        data_dir: &std::path::Path,
        retry: crate::beads::RetryPolicy,
        config: ExecutorConfig,
    ) -> Executors {
        let owner = Owner::new();
        // Commands get HOME under it, which must not depend on the process's directory.
        let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let env = RunEnv {
            pool,
            gateway,
            repos: crate::git::Repos::new(data_dir.clone()),
            limits: config.limits,
            retry,
            worker: owner.id,
            tools: super::run::Offered::new(),
            tools_setting: config.tools,
            homes: data_dir.join("homes"),
            sandbox: config.sandbox.clone(),
            run_env: crate::workbench::toolchain_env(&config.run_pass_env),
            bus: crate::events::Bus::in_process("loom"),
            active: Default::default(),
        };
        Executors::new(Arc::new(env), owner, config)
    }

    /// Wakes the loop when `wake` is notified (`Dispatcher::on_claim`), so claimed beads
    /// start at once rather than at the next tick.
    pub fn woken_by(mut self, wake: Arc<tokio::sync::Notify>) -> Executors {
        self.wake = wake;
        self
    }

    /// Streams steps on `bus`, and wakes its feed after what runs store. Call it before
    /// the executors start working.
    pub fn publishing_to(mut self, bus: crate::events::Bus) -> Executors {
        match Arc::get_mut(&mut self.env) {
            Some(env) => env.bus = bus.clone(),
            None => tracing::warn!("executors already running: their events stay in the process"),
        }
        self.lander.bus = bus;
        self
    }

    /// The beads whose run task is alive in this process.
    pub fn active_beads(&self) -> super::ActiveBeads {
        self.env.active.clone()
    }

    /// This process's id as an executor owner (`executor_leases.owner`).
    pub fn owner_id(&self) -> Uuid {
        self.owner.id
    }

    /// Projects this process runs now.
    pub fn owned(&self) -> Vec<String> {
        let mut v: Vec<String> = self.owned.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// One round: renew ownership and leases when due, pick up new runs, start what fits.
    pub async fn step(&mut self) -> Result<Step> {
        self.collect_finished();
        let due = |at: Option<Instant>, every: Duration| at.is_none_or(|t| t.elapsed() >= every);
        // Leases first: whatever else fails this round, held runs must not lapse.
        if due(self.renewed_at, self.config.bead_lease / 3) {
            self.renew_leases().await?;
        }
        let renew = due(self.claimed_at, self.config.ownership_lease / 3);
        if renew || Owner::any_unowned(&mut *self.env.pool.get().await?).await? {
            self.claim_projects().await?;
        }
        // Every open run of an owned project is taken on, whether or not a slot is free: a
        // run waiting for a slot is held here, its lease renewed, instead of lapsing unseen.
        if !self.owned.is_empty() {
            let projects = self.owned();
            let mut conn = self.env.pool.get().await?;
            let picked =
                pickup::pick_up(&mut conn, self.owner.id, &projects, PICK_UP_BATCH).await?;
            if !picked.is_empty() {
                self.env.bus.committed();
                // An adopted or long-waiting run's lease may be near its end: renew at once.
                self.queued.extend(picked);
                drop(conn);
                self.renew_leases().await?;
            }
        }
        let runs = self.start_queued().await?;
        let landings = self.step_queues().await?;
        Ok(match (runs, landings) {
            (Step::Idle, 0) => Step::Idle,
            (Step::Idle, n) => Step::Worked(n),
            (Step::Worked(n), m) => Step::Worked(n + m),
        })
    }

    /// Starts a step of each owned project's landing queue that has beads waiting and no
    /// step under way; returns how many started.
    async fn step_queues(&mut self) -> Result<usize> {
        self.collect_queues();
        if self.owned.is_empty() {
            return Ok(0);
        }
        let mut conn = self.env.pool.get().await?;
        let waiting = crate::beads::Bead::projects_landing(&mut conn, &self.owned()).await?;
        drop(conn);
        let mut started = 0;
        for project in waiting {
            let queue = self.queues.entry(project.clone()).or_default();
            let due =
                queue.last.is_none_or(|(at, progressed)| progressed || at.elapsed() >= QUEUE_RETRY);
            if queue.step.is_some() || !due {
                continue;
            }
            let (lander, wake) = (self.lander.clone(), self.wake.clone());
            queue.step = Some(tokio::spawn(async move {
                let stepped = lander.step(&project).await;
                if let Err(e) = lander.note(&project, &stepped).await {
                    tracing::warn!(project.id = %project, error = %e, "could not record how a landing queue step went");
                }
                // The loop starts the next step (or takes note of this one) at once.
                wake.notify_one();
                stepped
            }));
            started += 1;
        }
        Ok(started)
    }

    /// Notes how the queue steps that ended went.
    fn collect_queues(&mut self) {
        use futures_util::FutureExt;
        for (project, queue) in &mut self.queues {
            if let Some(step) = queue.step.take_if(|h| h.is_finished()) {
                queue.last = Some((Instant::now(), progressed(project, step.now_or_never())));
            }
        }
    }

    /// Waits for one queue step under way to end, and notes how it went.
    async fn wait_for_a_queue(&mut self) {
        let Some((project, queue)) = self.queues.iter_mut().find(|(_, q)| q.step.is_some()) else {
            return;
        };
        if let Some(step) = queue.step.take() {
            let joined = step.await;
            queue.last = Some((Instant::now(), progressed(project, Some(joined))));
        }
    }

    /// Whether a landing queue step is under way.
    fn landing(&self) -> bool {
        self.queues.values().any(|q| q.step.is_some())
    }

    /// Forgets the runs whose task ended; one the database went away under goes back in
    /// the queue, to start again once it answers (a few times: then its lease lapses).
    fn collect_finished(&mut self) {
        use futures_util::FutureExt;
        let ended: Vec<Uuid> = self
            .running
            .iter()
            .filter(|(_, r)| r.handle.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(r) = self.running.remove(&id) else { continue };
            let left = r.handle.now_or_never().and_then(|joined| joined.ok());
            self.ended(r.open, left);
        }
    }

    fn ended(&mut self, open: OpenRun, left: Option<run::Left>) {
        let id = open.id;
        if left == Some(run::Left::Open) {
            let n = self.restarts.entry(id).or_default();
            *n += 1;
            if *n <= MAX_RESTARTS {
                self.queued.push_back(open);
                return;
            }
            tracing::warn!(run.id = %id, "the database failed a run {MAX_RESTARTS} times; its lease is left to lapse");
        }
        self.restarts.remove(&id);
    }

    async fn claim_projects(&mut self) -> Result<()> {
        let mut conn = self.env.pool.get().await?;
        let owned = self.owner.claim(&mut conn, self.config.ownership_lease).await?;
        let limits: Vec<(String, i32)> = projects::table
            .filter(projects::id.eq_any(&owned))
            .select((projects::id, projects::max_parallel))
            .load(&mut conn)
            .await?;
        let lost: Vec<String> = self.owned.keys().filter(|p| !owned.contains(p)).cloned().collect();
        for p in &lost {
            tracing::warn!(project.id = %p, "lost the executor of a project to another process");
        }
        self.owned = limits.into_iter().map(|(p, n)| (p, n.max(1) as usize)).collect();
        // A project owned elsewhere now: its queue is that owner's, as are its runs. A queue
        // step under way is left to finish its check (the new owner's waits for it): it
        // stops before its next one, and its push could only land what it checked.
        self.queues.retain(|p, q| self.owned.contains_key(p) || q.step.is_some());
        self.running.retain(|_, r| {
            let keep = self.owned.contains_key(&r.open.project_id);
            if !keep {
                r.cancel.cancel();
            }
            keep
        });
        self.queued.retain(|q| self.owned.contains_key(&q.project_id));
        self.claimed_at = Some(Instant::now());
        Ok(())
    }

    /// Renews the leases of every run held (running or queued); a run whose claim is gone
    /// is stopped.
    async fn renew_leases(&mut self) -> Result<()> {
        let held: Vec<Uuid> =
            self.running.keys().copied().chain(self.queued.iter().map(|q| q.id)).collect();
        let mut conn = self.env.pool.get().await?;
        let kept = pickup::renew(&mut conn, self.owner.id, &held, self.config.bead_lease).await?;
        for id in held.iter().filter(|id| !kept.contains(id)) {
            tracing::info!(run.id = %id, "a run lost its claim and stops");
            if let Some(r) = self.running.remove(id) {
                r.cancel.cancel();
            }
        }
        self.queued.retain(|q| kept.contains(&q.id));
        self.renewed_at = Some(Instant::now());
        Ok(())
    }

    fn in_project(&self, project: &str) -> usize {
        self.running.values().filter(|r| r.open.project_id == project).count()
    }

    async fn start_queued(&mut self) -> Result<Step> {
        let mut started = 0;
        let mut waiting = VecDeque::new();
        while let Some(open) = self.queued.pop_front() {
            let max = self.owned.get(&open.project_id).copied().unwrap_or(0);
            // One task per bead: an earlier run of it may still be stopping in its worktree.
            let busy = self.running.values().any(|r| r.open.bead_id == open.bead_id);
            if busy || self.in_project(&open.project_id) >= max {
                waiting.push_back(open);
                continue;
            }
            if open.resumes > self.config.max_resumes {
                // On failure the run stays held (and renewed) and is given up next round.
                if let Err(e) = self.give_up(&open).await {
                    tracing::warn!(run.id = %open.id, error = %e, "could not give up a run");
                    waiting.push_back(open);
                }
                continue;
            }
            let cancel = CancellationToken::new();
            let stop = run::Stop { now: cancel.clone(), at_checkpoint: self.checkpoint.clone() };
            let (env, wake) = (self.env.clone(), self.wake.clone());
            let work = run::work(env, open.clone(), stop);
            let handle = tokio::spawn(async move {
                let left = work.await;
                // Its bead may wait in the landing queue now: the loop steps it at once.
                wake.notify_one();
                left
            });
            self.running.insert(open.id, Running { open, cancel, handle });
            started += 1;
        }
        self.queued = waiting;
        Ok(if started > 0 { Step::Worked(started) } else { Step::Idle })
    }

    /// A run whose process died under it again and again: the bead may be what kills it.
    async fn give_up(&self, open: &OpenRun) -> Result<()> {
        let why = format!(
            "the run was interrupted {} times (its process stopped under it); not resumed again",
            open.resumes
        );
        tracing::warn!(run.id = %open.id, bead.id = %open.bead_id, "{why}");
        let mut conn = self.env.pool.get().await?;
        Bead::release(&mut conn, open.id, RunOutcome::Failed, Some(why), self.env.retry).await?;
        self.env.bus.committed();
        Ok(())
    }

    /// Steps and waits for the runs and landing queue steps it started, until nothing is
    /// left to do (tests). A queue that cannot make progress counts as idle.
    pub async fn run_until_idle(&mut self) -> Result<()> {
        loop {
            let step = self.step().await?;
            let next = self.running.keys().next().copied();
            match (step, next) {
                (Step::Idle, None) if self.queued.is_empty() && !self.landing() => return Ok(()),
                (_, Some(id)) => {
                    if let Some(r) = self.running.remove(&id) {
                        let left = r.handle.await.ok();
                        self.ended(r.open, left);
                    }
                }
                _ => self.wait_for_a_queue().await,
            }
        }
    }

    /// Loops until cancelled; then lets every run reach its next checkpoint, within the
    /// shutdown grace, stops those that did not, and hands them all over (they stay open for
    /// whoever owns their project next), giving up this process's projects so a peer takes
    /// over at once.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "an executor step failed; trying again");
            }
            let wake = self.wake.clone();
            tokio::select! {
                () = cancel.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.tick) => {}
            }
        }
        self.checkpoint.cancel();
        let runs: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        let stops: Vec<CancellationToken> = runs.iter().map(|r| r.cancel.clone()).collect();
        let mut handles: Vec<JoinHandle<run::Left>> = runs.into_iter().map(|r| r.handle).collect();
        if !handles.is_empty() {
            tracing::info!(
                runs = handles.len(),
                grace_s = self.config.shutdown_grace.as_secs(),
                "letting running turns reach a checkpoint"
            );
        }
        let all = futures_util::future::join_all(handles.iter_mut());
        if tokio::time::timeout(self.config.shutdown_grace, all).await.is_err() {
            let late = handles.iter().filter(|h| !h.is_finished()).count();
            tracing::warn!(
                runs = late,
                "runs did not reach a checkpoint in time; stopping them where they are"
            );
            stops.iter().for_each(CancellationToken::cancel);
            let all = futures_util::future::join_all(handles.iter_mut());
            let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
        }
        // A check under way is stopped with its sandbox; the next owner of the project runs
        // it again (a push under way either happened, and is recorded by the next owner,
        // or did not).
        for queue in self.queues.values() {
            if let Some(step) = &queue.step {
                step.abort();
            }
        }
        match self.env.pool.get().await {
            Ok(mut conn) => {
                // A clean hand-over is not a crash: the next owner picks these runs up as
                // new (no resume counted) and this process's projects are free at once.
                if let Err(e) = pickup::hand_over(&mut conn, self.owner.id).await {
                    tracing::warn!(error = %e, "could not hand over the open runs");
                }
                if let Err(e) = self.owner.release_all(&mut conn).await {
                    tracing::warn!(error = %e, "could not give up the executor leases");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not give up the executor leases"),
        }
    }
}

/// Whether a queue step that ended got anywhere, logging what it did or why it failed.
fn progressed(
    project: &str,
    joined: Option<std::result::Result<Result<crate::landing::Stepped>, tokio::task::JoinError>>,
) -> bool {
    match joined {
        Some(Ok(Ok(stepped))) => {
            if !stepped.landed.is_empty() || stepped.returned > 0 {
                tracing::info!(project.id = %project, landed = stepped.landed.len(), returned = stepped.returned, checks = stepped.checks, "a landing queue stepped");
            }
            stepped.progressed
        }
        Some(Ok(Err(e))) => {
            tracing::warn!(project.id = %project, error = %e, "a landing queue step failed; trying again shortly");
            false
        }
        Some(Err(e)) => {
            tracing::warn!(project.id = %project, error = %e, "a landing queue step stopped");
            false
        }
        None => false,
    }
}
