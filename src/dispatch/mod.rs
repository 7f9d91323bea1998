//! The dispatcher: hands every ready bead to an idle agent. Each step reads the idle agents
//! and the ready queue, pairs them (`matching`), and claims each pair in its own
//! transaction (`Bead::claim`, `FOR UPDATE SKIP LOCKED`), so any number of dispatchers, in one
//! process or many, can run against one database: a pair someone else took is skipped.
//! The loop wakes on a nudge (a bead became ready, an agent became idle) and also sweeps on
//! an interval, so a lost nudge only delays work.

pub mod matching;

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agents::AgentStatus;
use crate::beads::Bead;
use crate::db::Pool;
use crate::db::schema::{agents, personas};
use crate::error::Result;
use matching::{Candidate, IdleAgent, assign};

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How long a claim lives without renewal.
    pub lease: Duration,
    /// How often the dispatcher looks for work without being nudged.
    pub sweep_interval: Duration,
    /// Most ready beads read per page while looking for matches.
    pub page: i64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            lease: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(2),
            page: 200,
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
pub struct Nudge(Arc<Notify>);

impl Nudge {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    async fn wait(&self) {
        self.0.notified().await;
    }
}

pub struct Dispatcher {
    pool: Pool,
    config: DispatchConfig,
    nudge: Nudge,
}

/// Pages of the ready queue read per step before giving up on matching the idle agents.
const MAX_PAGES: usize = 10;

impl Dispatcher {
    pub fn new(pool: Pool, config: DispatchConfig, nudge: Nudge) -> Self {
        Dispatcher { pool, config, nudge }
    }

    /// One pass: claims as many ready beads as there are idle agents that can take them.
    pub async fn step(&self) -> Result<Step> {
        let mut conn = self.pool.get().await?;
        let mut idle = idle_agents(&mut conn).await?;
        let mut claimed = 0;
        let mut after: Option<crate::beads::Cursor> = None;
        for _ in 0..MAX_PAGES {
            if idle.is_empty() {
                break;
            }
            let page = Bead::ready(&mut conn, None, after.as_ref(), self.config.page).await?;
            let candidates: Vec<Candidate> = page
                .items
                .iter()
                .map(|b| Candidate {
                    id: b.id.clone(),
                    project: b.project_id.clone(),
                    persona: b.persona.clone(),
                    labels: b.labels.clone(),
                })
                .collect();
            for (bead, agent) in assign(&candidates, &idle) {
                if Bead::claim(&mut conn, &bead, agent, self.config.lease).await?.is_some() {
                    claimed += 1;
                }
                // Taken here or by another dispatcher: either way this agent is spoken for
                // (or busy elsewhere) for the rest of this step.
                idle.retain(|a| a.id != agent);
            }
            match (page.next_cursor, page.items.last()) {
                (Some(_), Some(last)) => after = Some(crate::beads::Cursor::after(last)),
                _ => break,
            }
        }
        Ok(if claimed > 0 { Step::Worked(claimed) } else { Step::Idle })
    }

    /// Steps until a pass claims nothing.
    pub async fn run_until_idle(&self) -> Result<usize> {
        let mut total = 0;
        while let Step::Worked(n) = self.step().await? {
            total += n;
        }
        Ok(total)
    }

    /// The loop: drain, then wait for a nudge, the sweep interval or cancellation.
    pub async fn run(self, cancel: CancellationToken) {
        tracing::info!("dispatcher started");
        loop {
            if let Err(e) = self.run_until_idle().await {
                tracing::warn!(error = %e, "dispatch pass failed; retrying after the sweep interval");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.nudge.wait() => {}
                _ = tokio::time::sleep(self.config.sweep_interval) => {}
            }
        }
        tracing::info!("dispatcher stopped");
    }
}

/// Idle agents with their persona's labels, longest idle first.
async fn idle_agents(conn: &mut crate::db::Conn) -> Result<Vec<IdleAgent>> {
    let rows: Vec<(uuid::Uuid, Option<String>, String, Vec<String>)> = agents::table
        .inner_join(personas::table)
        .filter(agents::status.eq(AgentStatus::Idle))
        .order(agents::updated_at.asc())
        .select((agents::id, agents::project_id, agents::persona, personas::labels))
        .limit(1000)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, project, persona, labels)| IdleAgent { id, project, persona, labels })
        .collect())
}
