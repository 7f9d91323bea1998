//! Healing stuck work, one bead or agent per transaction: claims whose lease ran out, agents
//! marked working with nothing to work on, beads parked while the gateway was down. The
//! ticker decides when; these decide what, re-checking everything under the row locks so a
//! renewal or a claim that commits meanwhile always wins.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::claims::{AfterRun, RetryPolicy, release_in};
use super::graph::lock_graph;
use super::model::Bead;
use super::runs::RunOutcome;
use super::status::{self, Attempts};
use super::types::{BeadStatus, BlockedReason};
use crate::activity::{Activity, Actor, Record};
use crate::agents::AgentStatus;
use crate::db::Conn;
use crate::db::schema::{agents, beads, projects, runs};
use crate::error::{Error, Result};
use crate::events::Kind;

/// A claim the ticker ended because its lease ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expired {
    pub bead: String,
    pub run: Option<Uuid>,
    pub agent: Option<Uuid>,
    pub after: AfterRun,
}

async fn healed(
    conn: &mut Conn,
    project: Option<&str>,
    bead: Option<&str>,
    data: serde_json::Value,
) -> Result<()> {
    Activity::record(
        conn,
        Record {
            kind: Kind::TickerHealed,
            project_id: project,
            bead_id: bead,
            actor: Actor::System,
            data,
        },
    )
    .await?;
    Ok(())
}

impl Bead {
    /// Beads held under a lease (in progress, or in an agent's review) whose lease has run
    /// out, longest expired first.
    pub async fn expired_leases(conn: &mut Conn, limit: i64) -> Result<Vec<String>> {
        Ok(beads::table
            .filter(beads::status.eq_any(BeadStatus::HELD))
            .filter(beads::lease_expires_at.lt(diesel::dsl::now))
            .order(beads::lease_expires_at)
            .select(beads::id)
            .limit(limit)
            .load(conn)
            .await?)
    }

    /// Ends the claim on `bead_id` if its lease has still run out once locked: the run ends
    /// `lease_expired` (a failed attempt, with back-off or `too_many_attempts`), the agent
    /// is freed. `None` when it was renewed, released or reclaimed meanwhile.
    pub async fn expire_lease(
        conn: &mut Conn,
        bead_id: &str,
        retry: RetryPolicy,
    ) -> Result<Option<Expired>> {
        let bead_id = bead_id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            // The outcome may block the bead: graph lock first, then run, then bead, the
            // same order as every release.
            lock_graph(conn).await?;
            let run: Option<(Uuid, Option<Uuid>)> = runs::table
                .filter(runs::bead_id.eq(&bead_id))
                .filter(runs::outcome.is_null())
                .select((runs::id, runs::agent_id))
                .for_update()
                .first(conn)
                .await
                .optional()?;
            // The database's clock decides, not this replica's: one whose clock runs fast must
            // not expire leases that are still alive. A renewal that committed first makes
            // this find nothing.
            let lapsed: Option<Bead> = beads::table
                .find(&bead_id)
                .filter(beads::status.eq_any(BeadStatus::HELD))
                .filter(beads::lease_expires_at.lt(diesel::dsl::now))
                .select(Bead::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let Some(bead) = lapsed else { return Ok(None) };
            let project = bead.project_id.clone();
            let expired = match run {
                Some((run, agent)) => {
                    let error = Some("the lease expired: the run stopped renewing it".to_owned());
                    let after = release_in(conn, run, RunOutcome::LeaseExpired, error, retry)
                        .await?
                        .unwrap_or(AfterRun::Untouched);
                    Expired { bead: bead_id.clone(), run: Some(run), agent, after }
                }
                None if bead.status == BeadStatus::Review => orphan_review(conn, bead).await?,
                None => orphan(conn, bead, retry).await?,
            };
            healed(conn, Some(&project), Some(&bead_id), serde_json::json!({
                "job": "expire_leases", "run": expired.run, "agent": expired.agent, "after": expired.after,
            }))
            .await?;
            Ok(Some(expired))
        })
        .await
    }

    /// Beads parked (blocked, uncharged) for `reason`: `gateway_unavailable` or
    /// `sandbox_unavailable`, whose park's back-off (`not_before`) has passed at `now`,
    /// oldest first.
    pub async fn parked(
        conn: &mut Conn,
        reason: BlockedReason,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>> {
        Ok(beads::table
            .filter(beads::status.eq(BeadStatus::Blocked))
            .filter(beads::blocked_reason.eq(reason))
            .filter(beads::not_before.is_null().or(beads::not_before.le(now)))
            .order(beads::updated_at)
            .select(beads::id)
            .limit(limit)
            .load(conn)
            .await?)
    }

    /// Puts a bead parked for `reason` back to work, keeping its attempts (being parked
    /// was not its fault) and dropping the park's back-off. False when it is no longer
    /// parked so.
    pub async fn resume_parked(
        conn: &mut Conn,
        bead_id: &str,
        reason: BlockedReason,
    ) -> Result<bool> {
        let bead_id = bead_id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            let Some(bead) = lock_if_exists(conn, &bead_id).await? else { return Ok(false) };
            if bead.status != BeadStatus::Blocked || bead.blocked_reason != Some(reason) {
                return Ok(false);
            }
            let project = bead.project_id.clone();
            let reason = Some(match reason {
                BlockedReason::SandboxUnavailable => "a sandbox can be made again".to_owned(),
                _ => "the gateway is healthy again".to_owned(),
            });
            status::reopen(conn, bead, reason, Attempts::Keep, Actor::System).await?;
            diesel::update(beads::table.find(&bead_id))
                .set(beads::not_before.eq(None::<DateTime<Utc>>))
                .execute(conn)
                .await?;
            super::transitions::bump_version(conn, &bead_id).await?;
            healed(
                conn,
                Some(&project),
                Some(&bead_id),
                serde_json::json!({ "job": "resume_parked" }),
            )
            .await?;
            Ok(true)
        })
        .await
    }
}

/// A bead found by a scan may be gone by the time it is locked (its project was deleted).
async fn lock_if_exists(conn: &mut Conn, id: &str) -> Result<Option<Bead>> {
    match Bead::lock(conn, id).await {
        Ok(bead) => Ok(Some(bead)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A bead in review held by no open run: it waits for its next review, uncharged.
async fn orphan_review(conn: &mut Conn, bead: Bead) -> Result<Expired> {
    super::landing::unhold(conn, &bead.id).await?;
    super::transitions::bump_version(conn, &bead.id).await?;
    if let Some(agent) = bead.assignee_agent_id
        && !has_live_claim(conn, agent).await?
    {
        free_if_working(conn, agent).await?;
    }
    let after = AfterRun::Finished(BeadStatus::Review);
    Ok(Expired { bead: bead.id, run: None, agent: bead.assignee_agent_id, after })
}

/// A bead in progress with no open run cannot be finished by anyone: the lost attempt is
/// counted like any failed run (back-off, or `too_many_attempts` at the project's limit) and
/// its agent is freed unless it holds a live claim elsewhere.
async fn orphan(conn: &mut Conn, bead: Bead, retry: RetryPolicy) -> Result<Expired> {
    let attempts = bead.attempts + 1;
    let max: i32 =
        projects::table.find(&bead.project_id).select(projects::max_attempts).first(conn).await?;
    let error = "the lease expired and no run held the bead";
    let wait = chrono::Duration::from_std(retry.delay(attempts)).unwrap_or_default();
    diesel::update(beads::table.find(&bead.id))
        .set((
            beads::status.eq(BeadStatus::Open),
            beads::assignee_agent_id.eq(None::<Uuid>),
            beads::lease_expires_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            beads::attempts.eq(attempts),
            beads::not_before.eq(chrono::Utc::now() + wait),
            beads::last_error.eq(error),
            beads::version.eq(beads::version + 1),
            beads::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    let after = if attempts >= max {
        let open = Bead::get(conn, &bead.id).await?;
        let reason = BlockedReason::TooManyAttempts;
        status::block(conn, open, reason, Some(error.to_owned()), Actor::System).await?;
        AfterRun::Blocked(reason)
    } else {
        AfterRun::Retry { attempts }
    };
    if let Some(agent) = bead.assignee_agent_id
        && !has_live_claim(conn, agent).await?
    {
        free_if_working(conn, agent).await?;
    }
    Ok(Expired { bead: bead.id, run: None, agent: bead.assignee_agent_id, after })
}

async fn free_if_working(conn: &mut Conn, agent: Uuid) -> Result<bool> {
    let n =
        diesel::update(agents::table.find(agent).filter(agents::status.eq(AgentStatus::Working)))
            .set((agents::status.eq(AgentStatus::Idle), agents::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?;
    Ok(n > 0)
}

/// Agents marked working that hold no live claim (an open run on a bead held under a
/// lease that is assigned to them).
pub async fn zombie_agents(conn: &mut Conn, limit: i64) -> Result<Vec<Uuid>> {
    let live = runs::table
        .inner_join(beads::table)
        .filter(runs::agent_id.eq(agents::id.nullable()))
        .filter(runs::outcome.is_null())
        .filter(beads::status.eq_any(BeadStatus::HELD))
        .filter(beads::assignee_agent_id.eq(agents::id.nullable()));
    Ok(agents::table
        .filter(agents::status.eq(AgentStatus::Working))
        .filter(diesel::dsl::not(diesel::dsl::exists(live)))
        .order(agents::updated_at)
        .select(agents::id)
        .limit(limit)
        .load(conn)
        .await?)
}

/// Whether the agent holds an open run on a bead held under a lease that is assigned to it.
async fn has_live_claim(conn: &mut Conn, agent: Uuid) -> Result<bool> {
    let live: i64 = runs::table
        .inner_join(beads::table)
        .filter(runs::agent_id.eq(agent))
        .filter(runs::outcome.is_null())
        .filter(beads::status.eq_any(BeadStatus::HELD))
        .filter(beads::assignee_agent_id.eq(agent))
        .count()
        .get_result(conn)
        .await?;
    Ok(live > 0)
}

/// Sets a zombie agent idle, if it still is one once locked. An open run it holds on a bead
/// that is no longer its own is ended `cancelled` (no attempt is charged to a bead it was
/// not holding).
pub async fn free_zombie(conn: &mut Conn, agent: Uuid) -> Result<bool> {
    conn.transaction::<_, Error, _>(async move |conn| {
        // The agent is locked before anything is read about it, and the check runs as a
        // later statement, so a claim that committed while this waited is seen. (Agent
        // before run is the reverse of a release; the graph lock, which every release takes
        // first, keeps the two from interleaving, and claims skip locked rows.)
        lock_graph(conn).await?;
        let status: Option<(AgentStatus, Option<String>)> = agents::table
            .find(agent)
            .select((agents::status, agents::project_id))
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some((AgentStatus::Working, project)) = status else { return Ok(false) };
        if has_live_claim(conn, agent).await? {
            return Ok(false);
        }
        let open_run: Option<Uuid> = runs::table
            .filter(runs::agent_id.eq(agent))
            .filter(runs::outcome.is_null())
            .select(runs::id)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        if let Some(run) = open_run {
            let error = Some("the agent no longer held the bead".to_owned());
            release_in(conn, run, RunOutcome::Cancelled, error, RetryPolicy::default()).await?;
        }
        free_if_working(conn, agent).await?;
        let data =
            serde_json::json!({ "job": "free_zombie_agents", "agent": agent, "run": open_run });
        healed(conn, project.as_deref(), None, data).await?;
        Ok(true)
    })
    .await
}
