//! Status changes and what follows from them: dependents recounted, subtree holds
//! refreshed, epics closing with their last child and reopening with a reopened one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::graph::{recount_dependents, refresh_holds};
use super::model::Bead;
use super::runs::RunOutcome;
use super::transitions::{StatusChange, bump_version};
use super::types::{BeadStatus, BeadType, BlockedReason};
use crate::activity::{Activity, Actor, Record};
use crate::agents::AgentStatus;
use crate::db::Conn;
use crate::db::schema::{agents, beads, runs};
use crate::error::{Error, Result};
use crate::events::Kind;

/// Applies one status change to a locked bead, with everything that follows from it. The
/// caller holds the graph lock and bumps the bead's version. A bead an agent holds is taken
/// back first (also how a person starting to pair on it stops the agent).
pub(crate) async fn apply(
    conn: &mut Conn,
    bead: Bead,
    change: StatusChange,
    actor: Actor,
) -> Result<()> {
    // In progress, or in review with an agent reviewing it.
    if bead.status == BeadStatus::InProgress || bead.assignee_agent_id.is_some() {
        take_back(conn, &bead, actor).await?;
    }
    if bead.landing_sha.is_some() {
        // Out of review or the landing queue: its work stays on its branch, unlanded.
        leave_landing(conn, &bead.id).await?;
    }
    match change {
        StatusChange::Close { reason } => close(conn, bead, reason, actor).await,
        StatusChange::Reopen { reason } => reopen(conn, bead, reason, Attempts::Reset, actor).await,
        StatusChange::Block { reason, note } => block(conn, bead, reason, note, actor).await,
        StatusChange::Defer { until } => defer(conn, bead, until, actor).await,
    }
}

/// A person changing the status of a bead an agent holds takes it back: the open run ends
/// `cancelled` (no attempt is charged) and the agent is free again, in the same transaction,
/// so the bead can be claimed afresh and the old run can neither renew nor release it.
pub(super) async fn take_back(conn: &mut Conn, bead: &Bead, actor: Actor) -> Result<()> {
    let ended: Vec<(uuid::Uuid, Option<uuid::Uuid>)> = diesel::update(
        runs::table.filter(runs::bead_id.eq(&bead.id)).filter(runs::outcome.is_null()),
    )
    .set((
        runs::ended_at.eq(diesel::dsl::now),
        runs::outcome.eq(RunOutcome::Cancelled),
        runs::error.eq("taken back by a person"),
    ))
    .returning((runs::id, runs::agent_id))
    .get_results(conn)
    .await?;
    for (run, agent) in ended {
        if let Some(agent) = agent {
            diesel::update(
                agents::table.find(agent).filter(agents::status.eq(AgentStatus::Working)),
            )
            .set((agents::status.eq(AgentStatus::Idle), agents::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?;
        }
        let data =
            serde_json::json!({ "run": run, "outcome": RunOutcome::Cancelled, "agent": agent });
        record(conn, bead, Kind::RunEnded, actor, data).await?;
    }
    Ok(())
}

/// Takes a bead out of review and the landing queue (its status is set by the caller).
pub(super) async fn leave_landing(conn: &mut Conn, id: &str) -> Result<()> {
    diesel::update(beads::table.find(id))
        .set((
            beads::landing_sha.eq(None::<String>),
            beads::landing_since.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn record(
    conn: &mut Conn,
    bead: &Bead,
    kind: Kind,
    actor: Actor,
    data: serde_json::Value,
) -> Result<()> {
    Activity::record(
        conn,
        Record { kind, project_id: Some(&bead.project_id), bead_id: Some(&bead.id), actor, data },
    )
    .await?;
    Ok(())
}

pub(super) async fn close(
    conn: &mut Conn,
    bead: Bead,
    reason: Option<String>,
    actor: Actor,
) -> Result<()> {
    close_saying(conn, bead, reason, actor, None).await
}

/// `close`, with the branch its work landed on said in the `bead.closed` row.
pub(super) async fn close_saying(
    conn: &mut Conn,
    bead: Bead,
    reason: Option<String>,
    actor: Actor,
    landed_on: Option<&str>,
) -> Result<()> {
    if bead.status == BeadStatus::Closed {
        return Err(Error::conflict("already_closed", format!("{} is already closed", bead.id)));
    }
    let open_children: i64 = beads::table
        .filter(beads::parent_id.eq(&bead.id))
        .filter(beads::status.ne(BeadStatus::Closed))
        .count()
        .get_result(conn)
        .await?;
    if open_children > 0 {
        return Err(Error::conflict(
            "has_open_children",
            format!("{} has {open_children} child bead(s) that are not closed", bead.id),
        ));
    }
    diesel::update(beads::table.find(&bead.id))
        .set((
            beads::status.eq(BeadStatus::Closed),
            beads::closed_at.eq(diesel::dsl::now),
            beads::close_reason.eq(&reason),
            beads::blocked_reason.eq(None::<BlockedReason>),
            beads::blocked_note.eq(None::<String>),
            beads::assignee_agent_id.eq(None::<uuid::Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    recount_dependents(conn, &bead.id).await?;
    // A closed bead holds nothing back, even if it closed with blockers open.
    refresh_holds(conn, std::slice::from_ref(&bead.id)).await?;
    let mut data = serde_json::json!({ "reason": reason });
    if let Some(branch) = landed_on {
        data["landed_on"] = branch.into();
    }
    record(conn, &bead, Kind::BeadClosed, actor, data).await?;
    close_finished_epic(conn, bead.parent_id.as_deref()).await
}

/// Closes an epic whose children are all closed (it has at least one), and so on up the
/// hierarchy.
pub(super) async fn close_finished_epic(conn: &mut Conn, parent: Option<&str>) -> Result<()> {
    let Some(parent_id) = parent else { return Ok(()) };
    let parent = Bead::lock(conn, parent_id).await?;
    if parent.bead_type != BeadType::Epic || parent.status == BeadStatus::Closed {
        return Ok(());
    }
    let remaining: i64 = beads::table
        .filter(beads::parent_id.eq(parent_id))
        .filter(beads::status.ne(BeadStatus::Closed))
        .count()
        .get_result(conn)
        .await?;
    let children: i64 =
        beads::table.filter(beads::parent_id.eq(parent_id)).count().get_result(conn).await?;
    if remaining > 0 || children == 0 {
        return Ok(());
    }
    let reason = Some("all children closed".to_owned());
    Box::pin(close(conn, parent, reason, Actor::System)).await?;
    bump_version(conn, parent_id).await?;
    Ok(())
}

/// What reopening does to a bead's failed attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempts {
    /// A person reopening a bead gives it a fresh start.
    Reset,
    /// Loom resuming a bead it parked (the gateway is back) keeps its record.
    Keep,
}

pub(super) async fn reopen(
    conn: &mut Conn,
    bead: Bead,
    reason: Option<String>,
    attempts: Attempts,
    actor: Actor,
) -> Result<()> {
    if bead.status == BeadStatus::Open {
        return Err(Error::conflict("already_open", format!("{} is already open", bead.id)));
    }
    let was = bead.status;
    let (attempts, not_before, last_error) = match attempts {
        Attempts::Reset => (0, None, None),
        Attempts::Keep => (bead.attempts, bead.not_before, bead.last_error.clone()),
    };
    diesel::update(beads::table.find(&bead.id))
        .set((
            beads::status.eq(BeadStatus::Open),
            beads::closed_at.eq(None::<DateTime<Utc>>),
            beads::close_reason.eq(None::<String>),
            beads::blocked_reason.eq(None::<BlockedReason>),
            beads::blocked_note.eq(None::<String>),
            beads::defer_until.eq(None::<DateTime<Utc>>),
            beads::assignee_agent_id.eq(None::<uuid::Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
            beads::attempts.eq(attempts),
            beads::not_before.eq(not_before),
            beads::last_error.eq(last_error),
        ))
        .execute(conn)
        .await?;
    if was == BeadStatus::Closed {
        recount_dependents(conn, &bead.id).await?;
    }
    refresh_holds(conn, std::slice::from_ref(&bead.id)).await?;
    record(
        conn,
        &bead,
        Kind::BeadReopened,
        actor,
        serde_json::json!({ "reason": reason, "from": was }),
    )
    .await?;
    reopen_closed_parent(conn, bead.parent_id.as_deref()).await
}

/// A closed parent cannot keep an open child: it is reopened too, up the hierarchy.
async fn reopen_closed_parent(conn: &mut Conn, parent: Option<&str>) -> Result<()> {
    let Some(parent_id) = parent else { return Ok(()) };
    let parent = Bead::lock(conn, parent_id).await?;
    if parent.status != BeadStatus::Closed {
        return Ok(());
    }
    let reason = Some("a child was reopened".to_owned());
    Box::pin(reopen(conn, parent, reason, Attempts::Reset, Actor::System)).await?;
    bump_version(conn, parent_id).await?;
    Ok(())
}

pub(super) async fn block(
    conn: &mut Conn,
    bead: Bead,
    reason: BlockedReason,
    note: Option<String>,
    actor: Actor,
) -> Result<()> {
    if bead.status == BeadStatus::Closed {
        return Err(Error::conflict(
            "bead_closed",
            format!("{} is closed; reopen it first", bead.id),
        ));
    }
    diesel::update(beads::table.find(&bead.id))
        .set((
            beads::status.eq(BeadStatus::Blocked),
            beads::blocked_reason.eq(reason),
            beads::blocked_note.eq(&note),
            beads::defer_until.eq(None::<DateTime<Utc>>),
            beads::assignee_agent_id.eq(None::<uuid::Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    refresh_holds(conn, std::slice::from_ref(&bead.id)).await?;
    record(
        conn,
        &bead,
        Kind::BeadBlocked,
        actor,
        serde_json::json!({ "reason": reason, "note": note }),
    )
    .await
}

async fn defer(
    conn: &mut Conn,
    bead: Bead,
    until: Option<DateTime<Utc>>,
    actor: Actor,
) -> Result<()> {
    if bead.status == BeadStatus::Closed {
        return Err(Error::conflict(
            "bead_closed",
            format!("{} is closed; reopen it first", bead.id),
        ));
    }
    if until.is_some_and(|t| t <= Utc::now()) {
        return Err(Error::invalid("invalid_defer_until", "defer_until must be in the future"));
    }
    diesel::update(beads::table.find(&bead.id))
        .set((
            beads::status.eq(BeadStatus::Deferred),
            beads::defer_until.eq(until),
            beads::blocked_reason.eq(None::<BlockedReason>),
            beads::blocked_note.eq(None::<String>),
            beads::assignee_agent_id.eq(None::<uuid::Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    refresh_holds(conn, std::slice::from_ref(&bead.id)).await?;
    record(conn, &bead, Kind::BeadDeferred, actor, serde_json::json!({ "until": until })).await
}
