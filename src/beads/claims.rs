//! Claims, leases and the end of a run: the transactions that move a bead between `open`
//! and `in_progress`, and what each run outcome does to the bead afterwards.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::graph::lock_graph;
use super::model::Bead;
use super::runs::{Run, RunOutcome};
use super::status;
use super::types::{BeadStatus, BeadType, BlockedReason};
use crate::activity::{Activity, Actor, Record};
use crate::agents::AgentStatus;
use crate::db::Conn;
use crate::db::schema::{agents, beads, projects, runs};
use crate::error::{Error, Result};

/// A bead held by an agent under a lease, with the run that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub run_id: Uuid,
    pub bead_id: String,
    pub agent_id: Uuid,
    pub attempt: i32,
    pub lease_expires_at: DateTime<Utc>,
}

/// How long a failed bead waits before it is ready again: `base * 2^(attempts-1)`, at most
/// `cap`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: Duration::from_secs(30), cap: Duration::from_secs(3600) }
    }
}

impl RetryPolicy {
    pub fn delay(&self, attempts: i32) -> Duration {
        let exp = attempts.clamp(1, 20) as u32 - 1;
        self.base.saturating_mul(2u32.saturating_pow(exp)).min(self.cap)
    }
}

fn lease_end(lease: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

/// What a run's end did to its bead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AfterRun {
    Closed,
    /// Back to open, ready again after the back-off.
    Retry {
        attempts: i32,
    },
    Blocked(BlockedReason),
    /// The bead had been changed by someone else meanwhile; only the run was recorded.
    Untouched,
}

impl Bead {
    /// Claims a bead for an agent in one transaction, if both are still free: the bead must
    /// still be ready and the agent idle. Rows another transaction holds are skipped, not
    /// waited for, so competing dispatchers never queue on each other. `None` means someone
    /// else was faster.
    pub async fn claim(
        conn: &mut Conn,
        bead_id: &str,
        agent_id: Uuid,
        lease: Duration,
    ) -> Result<Option<Claim>> {
        let bead_id = bead_id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            let bead: Option<(i32, String)> = beads::table
                .filter(beads::id.eq(&bead_id))
                .filter(beads::status.eq(BeadStatus::Open))
                .filter(beads::bead_type.ne(BeadType::Epic))
                .filter(beads::open_blockers.eq(0))
                .filter(beads::held_by.is_null())
                .filter(beads::not_before.is_null().or(beads::not_before.le(diesel::dsl::now)))
                .select((beads::attempts, beads::project_id))
                .for_update()
                .skip_locked()
                .first(conn)
                .await
                .optional()?;
            let Some((attempts, project)) = bead else { return Ok(None) };
            let agent: Option<Uuid> = agents::table
                .filter(agents::id.eq(agent_id))
                .filter(agents::status.eq(AgentStatus::Idle))
                .select(agents::id)
                .for_update()
                .skip_locked()
                .first(conn)
                .await
                .optional()?;
            if agent.is_none() {
                return Ok(None);
            }
            let until = lease_end(lease);
            diesel::update(beads::table.find(&bead_id))
                .set((
                    beads::status.eq(BeadStatus::InProgress),
                    beads::assignee_agent_id.eq(agent_id),
                    beads::lease_expires_at.eq(until),
                    beads::version.eq(beads::version + 1),
                    beads::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            diesel::update(agents::table.find(agent_id))
                .set((
                    agents::status.eq(AgentStatus::Working),
                    agents::last_heartbeat_at.eq(diesel::dsl::now),
                    agents::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            let run_id = Uuid::now_v7();
            diesel::insert_into(runs::table)
                .values((
                    runs::id.eq(run_id),
                    runs::bead_id.eq(&bead_id),
                    runs::agent_id.eq(agent_id),
                    runs::attempt.eq(attempts + 1),
                ))
                .execute(conn)
                .await?;
            Activity::record(conn, Record {
                kind: "bead.claimed",
                project_id: Some(&project),
                bead_id: Some(&bead_id),
                actor: Actor::Agent(agent_id),
                data: serde_json::json!({ "agent": agent_id, "run": run_id, "attempt": attempts + 1 }),
            })
            .await?;
            Ok(Some(Claim { run_id, bead_id, agent_id, attempt: attempts + 1, lease_expires_at: until }))
        })
        .await
    }

    /// Extends a live claim's lease; false when the claim is gone (released, expired and
    /// reclaimed, or taken back by a person).
    pub async fn renew_lease(conn: &mut Conn, claim: &Claim, lease: Duration) -> Result<bool> {
        let n = diesel::update(
            beads::table
                .filter(beads::id.eq(&claim.bead_id))
                .filter(beads::status.eq(BeadStatus::InProgress))
                .filter(beads::assignee_agent_id.eq(claim.agent_id)),
        )
        .set(beads::lease_expires_at.eq(lease_end(lease)))
        .execute(conn)
        .await?;
        if n > 0 {
            diesel::update(agents::table.find(claim.agent_id))
                .set(agents::last_heartbeat_at.eq(diesel::dsl::now))
                .execute(conn)
                .await?;
        }
        Ok(n > 0)
    }

    /// Ends a run with its outcome, in one transaction: the run is recorded, the agent is
    /// freed and the bead moves on (closed, retried after a back-off, or blocked). `None`
    /// when the run had already ended.
    pub async fn release(
        conn: &mut Conn,
        run_id: Uuid,
        outcome: RunOutcome,
        error: Option<String>,
        retry: RetryPolicy,
    ) -> Result<Option<AfterRun>> {
        conn.transaction::<_, Error, _>(async move |conn| {
            // Closing or blocking changes holds: take the graph lock before any row lock.
            lock_graph(conn).await?;
            release_in(conn, run_id, outcome, error, retry).await
        })
        .await
    }
}

/// The body of `release`, for callers that already run a transaction (and hold the graph
/// lock when the outcome can close or block the bead). Locks run, then bead, then agent.
pub(crate) async fn release_in(
    conn: &mut Conn,
    run_id: Uuid,
    outcome: RunOutcome,
    error: Option<String>,
    retry: RetryPolicy,
) -> Result<Option<AfterRun>> {
    let run: Option<Run> = runs::table
        .find(run_id)
        .filter(runs::outcome.is_null())
        .select(Run::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some(run) = run else { return Ok(None) };
    let bead = Bead::lock(conn, &run.bead_id).await?;
    diesel::update(runs::table.find(run_id))
        .set((
            runs::ended_at.eq(diesel::dsl::now),
            runs::outcome.eq(outcome),
            runs::error.eq(&error),
        ))
        .execute(conn)
        .await?;
    let ours = bead.status == BeadStatus::InProgress && bead.assignee_agent_id == run.agent_id;
    let after = if ours {
        settle_bead(conn, bead, &run, outcome, error.clone(), retry).await?
    } else {
        AfterRun::Untouched
    };
    if let Some(agent) = run.agent_id {
        diesel::update(agents::table.find(agent).filter(agents::status.eq(AgentStatus::Working)))
            .set((agents::status.eq(AgentStatus::Idle), agents::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?;
    }
    Activity::record(conn, Record {
        kind: "run.ended",
        project_id: None,
        bead_id: Some(&run.bead_id),
        actor: run.agent_id.map(Actor::Agent).unwrap_or(Actor::System),
        data: serde_json::json!({ "run": run_id, "outcome": outcome, "attempt": run.attempt, "error": error }),
    })
    .await?;
    Ok(Some(after))
}

/// What an outcome does to the bead the run held.
async fn settle_bead(
    conn: &mut Conn,
    bead: Bead,
    run: &Run,
    outcome: RunOutcome,
    error: Option<String>,
    retry: RetryPolicy,
) -> Result<AfterRun> {
    let actor = run.agent_id.map(Actor::Agent).unwrap_or(Actor::System);
    let id = bead.id.clone();
    let after = match outcome {
        RunOutcome::Success => {
            let open_children: i64 = beads::table
                .filter(beads::parent_id.eq(&id))
                .filter(beads::status.ne(BeadStatus::Closed))
                .count()
                .get_result(conn)
                .await?;
            if open_children == 0 {
                status::close(conn, bead, Some("done".into()), actor).await?;
                AfterRun::Closed
            } else {
                let note = Some(format!(
                    "the work is done but {open_children} child bead(s) are still open"
                ));
                status::block(conn, bead, BlockedReason::NeedsHuman, note, actor).await?;
                AfterRun::Blocked(BlockedReason::NeedsHuman)
            }
        }
        // Not the bead's fault: the gateway is parked, a person paused the agent.
        RunOutcome::GatewayUnavailable => {
            status::block(conn, bead, BlockedReason::GatewayUnavailable, error.clone(), actor)
                .await?;
            AfterRun::Blocked(BlockedReason::GatewayUnavailable)
        }
        RunOutcome::Cancelled => {
            reopen_claimed(conn, &id, bead.attempts, None, &error).await?;
            AfterRun::Retry { attempts: bead.attempts }
        }
        failed => {
            let attempts = bead.attempts + 1;
            let max: i32 = projects::table
                .find(&bead.project_id)
                .select(projects::max_attempts)
                .first(conn)
                .await?;
            let blocked = match failed {
                RunOutcome::NeedsHuman => Some(BlockedReason::NeedsHuman),
                RunOutcome::LoopDetected => Some(BlockedReason::LoopDetected),
                RunOutcome::MergeConflict => Some(BlockedReason::MergeConflict),
                _ if attempts >= max => Some(BlockedReason::TooManyAttempts),
                _ => None,
            };
            diesel::update(beads::table.find(&id))
                .set((beads::attempts.eq(attempts), beads::last_error.eq(&error)))
                .execute(conn)
                .await?;
            match blocked {
                Some(reason) => {
                    let bead = Bead::get(conn, &id).await?;
                    status::block(conn, bead, reason, error.clone(), actor).await?;
                    AfterRun::Blocked(reason)
                }
                None => {
                    let wait = chrono::Duration::from_std(retry.delay(attempts))
                        .unwrap_or(chrono::Duration::zero());
                    reopen_claimed(conn, &id, attempts, Some(Utc::now() + wait), &error).await?;
                    AfterRun::Retry { attempts }
                }
            }
        }
    };
    diesel::update(beads::table.find(&id))
        .set((beads::version.eq(beads::version + 1), beads::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(after)
}

/// Returns a claimed bead to `open` (nothing about holds changes: in progress and open
/// hold nothing back).
async fn reopen_claimed(
    conn: &mut Conn,
    id: &str,
    attempts: i32,
    not_before: Option<DateTime<Utc>>,
    error: &Option<String>,
) -> Result<()> {
    diesel::update(beads::table.find(id))
        .set((
            beads::status.eq(BeadStatus::Open),
            beads::assignee_agent_id.eq(None::<Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
            beads::attempts.eq(attempts),
            beads::not_before.eq(not_before),
            beads::last_error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
