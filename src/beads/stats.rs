//! Counts of beads for the status API, the dashboard and the metrics.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::Bead;
use super::types::{BeadStatus, BlockedReason};
use crate::db::Conn;
use crate::db::schema::beads;
use crate::error::Result;

/// Beads by status, every status in its order (zero when none), of one project or all.
pub async fn by_status(conn: &mut Conn, project: Option<&str>) -> Result<Vec<(BeadStatus, i64)>> {
    let mut q = beads::table
        .group_by(beads::status)
        .select((beads::status, diesel::dsl::count_star()))
        .into_boxed();
    if let Some(p) = project {
        q = q.filter(beads::project_id.eq(p.to_owned()));
    }
    let rows: Vec<(BeadStatus, i64)> = q.load(conn).await?;
    Ok(crate::db::every(BeadStatus::ALL.iter().copied(), &rows))
}

/// Beads not closed, by priority (0 to 4, every one present).
pub async fn open_by_priority(conn: &mut Conn) -> Result<Vec<(i16, i64)>> {
    let rows: Vec<(i16, i64)> = beads::table
        .filter(beads::status.ne(BeadStatus::Closed))
        .group_by(beads::priority)
        .select((beads::priority, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    Ok(crate::db::every(0..=4, &rows))
}

/// Beads a person must act on (blocked for any reason Loom does not clear by itself), most
/// urgent first and, at one priority, the longest waiting first; with how many there are.
pub async fn waiting_for_a_person(conn: &mut Conn, limit: i64) -> Result<(Vec<Bead>, i64)> {
    let waiting = || {
        beads::table
            .filter(beads::status.eq(BeadStatus::Blocked))
            .filter(beads::blocked_reason.ne_all(BlockedReason::SELF_CLEARING))
    };
    let total = waiting().count().get_result(conn).await?;
    let beads = waiting()
        .order((beads::priority.asc(), beads::updated_at.asc()))
        .limit(limit)
        .select(Bead::as_select())
        .load(conn)
        .await?;
    Ok((beads, total))
}

/// Beads by project and status, one row per pair that has any.
/// Beads ready to dispatch, by project (the ready queue's depth).
pub async fn ready_by_project(conn: &mut Conn) -> Result<Vec<(String, i64)>> {
    Ok(beads::table
        .filter(beads::status.eq(BeadStatus::Open))
        .filter(beads::bead_type.ne(super::BeadType::Epic))
        .filter(beads::open_blockers.eq(0))
        .filter(beads::held_by.is_null())
        .filter(beads::paired_in.is_null())
        .filter(beads::not_before.is_null().or(beads::not_before.le(diesel::dsl::now)))
        .group_by(beads::project_id)
        .select((beads::project_id, diesel::dsl::count_star()))
        .load(conn)
        .await?)
}

pub async fn by_project_and_status(conn: &mut Conn) -> Result<Vec<(String, BeadStatus, i64)>> {
    Ok(beads::table
        .group_by((beads::project_id, beads::status))
        .select((beads::project_id, beads::status, diesel::dsl::count_star()))
        .load(conn)
        .await?)
}
