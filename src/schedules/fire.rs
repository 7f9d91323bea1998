//! Firing due schedules: each firing is one transaction that files the bead (or notes that
//! the last one is still open) and moves the schedule to its next time, so replicas racing
//! for the same schedule fire it once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::{CronExpr, Schedule};
use crate::activity::{Activity, Actor, Record};
use crate::beads::{Bead, BeadStatus, NewBead, PriorityInput};
use crate::db::Conn;
use crate::db::schema::{beads, schedules};
use crate::error::{Error, Result};
use crate::events::Kind;

/// What one firing did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fired {
    pub schedule: Uuid,
    pub outcome: FireOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "bead")]
pub enum FireOutcome {
    /// The bead it filed.
    Filed(String),
    /// A bead it filed earlier is still open; nothing new was filed.
    StillOpen(String),
    /// Filing failed (the reason is in the activity row); the schedule moved on regardless,
    /// so a broken template cannot retry forever.
    Failed,
}

impl Schedule {
    /// Fires the most overdue enabled schedule whose time has come, if any. Schedules other
    /// transactions are firing are skipped, not waited for. Missed firings are not made up:
    /// the next time is the first after `now`.
    pub async fn fire_next_due(conn: &mut Conn, now: DateTime<Utc>) -> Result<Option<Fired>> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let due: Option<Schedule> = schedules::table
                .filter(schedules::enabled.eq(true))
                .filter(schedules::next_run_at.le(now))
                .order(schedules::next_run_at)
                .select(Schedule::as_select())
                .for_update()
                .skip_locked()
                .first(conn)
                .await
                .optional()?;
            let Some(schedule) = due else { return Ok(None) };
            fire_locked(conn, schedule, now, Advance::ToNextAfterNow).await.map(Some)
        })
        .await
    }

    /// Fires a schedule now, whether or not it is due or enabled (a person trying it out);
    /// the open-bead rule still holds and its next regular time is kept.
    pub async fn fire_now(conn: &mut Conn, id: Uuid) -> Result<Fired> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let schedule = Schedule::lock(conn, id).await?;
            fire_locked(conn, schedule, Utc::now(), Advance::Keep).await
        })
        .await
    }
}

/// Whether a firing moves the schedule's next time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advance {
    ToNextAfterNow,
    Keep,
}

async fn fire_locked(
    conn: &mut Conn,
    schedule: Schedule,
    now: DateTime<Utc>,
    advance: Advance,
) -> Result<Fired> {
    let next = match CronExpr::parse(&schedule.cron).and_then(|c| c.next_after(now)) {
        Ok(next) if advance == Advance::ToNextAfterNow => next,
        Ok(_) => schedule.next_run_at,
        Err(e) => return disable(conn, schedule, e).await,
    };
    let outcome = match still_open(conn, schedule.id).await? {
        Some(open) => skip(conn, &schedule, open).await?,
        None => file(conn, &schedule).await?,
    };
    let filed = match &outcome {
        FireOutcome::Filed(bead) => Some(bead.as_str()),
        _ => None,
    };
    diesel::update(schedules::table.find(schedule.id))
        .set((
            schedules::next_run_at.eq(next),
            schedules::last_run_at.eq(now),
            schedules::last_bead_id.eq(filed.or(schedule.last_bead_id.as_deref())),
            schedules::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(Fired { schedule: schedule.id, outcome })
}

/// A bead from the last firing is still open: nothing is filed, and the history says why.
async fn skip(conn: &mut Conn, s: &Schedule, open: String) -> Result<FireOutcome> {
    Activity::record(
        conn,
        Record {
            kind: Kind::ScheduleSkipped,
            project_id: Some(&s.project_id),
            bead_id: Some(&open),
            actor: Actor::System,
            data: serde_json::json!({ "schedule": s.id, "still_open": open }),
        },
    )
    .await?;
    Ok(FireOutcome::StillOpen(open))
}

async fn still_open(conn: &mut Conn, schedule: Uuid) -> Result<Option<String>> {
    Ok(beads::table
        .filter(beads::schedule_id.eq(schedule))
        .filter(beads::status.ne(BeadStatus::Closed))
        .select(beads::id)
        .first(conn)
        .await
        .optional()?)
}

/// Files the schedule's bead in a savepoint: if that fails, the firing is still recorded.
async fn file(conn: &mut Conn, s: &Schedule) -> Result<FireOutcome> {
    let new = NewBead {
        project: s.project_id.clone(),
        title: s.title.clone(),
        description: Some(s.description.clone()),
        bead_type: Some(s.bead_type),
        priority: Some(PriorityInput::Number(s.priority.into())),
        labels: Some(s.labels.clone()),
        persona: s.persona.clone(),
        parent: None,
        depends_on: None,
    };
    let id = s.id;
    let filed = conn
        .transaction::<_, Error, _>(async move |conn| {
            let bead = Bead::create(conn, new, Actor::System).await?;
            diesel::update(beads::table.find(&bead.id))
                .set(beads::schedule_id.eq(id))
                .execute(conn)
                .await?;
            Ok(bead.id)
        })
        .await;
    let (kind, outcome, data) = match filed {
        // The database failing is not the template's fault: the whole firing rolls back and
        // the next pass tries again.
        Err(e @ (Error::Database(_) | Error::Unavailable(_) | Error::Internal(_))) => {
            return Err(e);
        }
        Ok(bead) => (
            Kind::ScheduleFired,
            FireOutcome::Filed(bead.clone()),
            serde_json::json!({ "schedule": s.id, "bead": bead }),
        ),
        Err(e) => {
            tracing::warn!(schedule.id = %s.id, error = %e, "a schedule could not file its bead");
            (
                Kind::ScheduleFailed,
                FireOutcome::Failed,
                serde_json::json!({ "schedule": s.id, "error": e.to_string() }),
            )
        }
    };
    let bead = match &outcome {
        FireOutcome::Filed(b) => Some(b.as_str()),
        _ => None,
    };
    Activity::record(
        conn,
        Record { kind, project_id: Some(&s.project_id), bead_id: bead, actor: Actor::System, data },
    )
    .await?;
    Ok(outcome)
}

/// A stored expression that no longer parses (a library upgrade, a hand edit) turns the
/// schedule off rather than failing every pass.
async fn disable(conn: &mut Conn, s: Schedule, e: Error) -> Result<Fired> {
    diesel::update(schedules::table.find(s.id))
        .set((schedules::enabled.eq(false), schedules::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Activity::record(
        conn,
        Record {
            kind: Kind::ScheduleDisabled,
            project_id: Some(&s.project_id),
            bead_id: None,
            actor: Actor::System,
            data: serde_json::json!({ "schedule": s.id, "cron": s.cron, "error": e.to_string() }),
        },
    )
    .await?;
    Ok(Fired { schedule: s.id, outcome: FireOutcome::Failed })
}
