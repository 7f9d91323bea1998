//! A project's board: its beads in the columns a person thinks in (open, ready, in progress,
//! blocked, recently closed), each column a bounded page and a total, so a project with ten
//! thousand beads renders as fast as one with ten.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::{Bead, HeldBead};
use super::query::{BeadFilter, Boxed, filtered, holds_for, in_order};
use super::types::{BeadStatus, BeadType};
use crate::db::Conn;
use crate::db::schema::beads;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Open or deferred, but waiting: on blockers, an ancestor, a back-off or a date.
    Open,
    /// What the dispatcher hands out next.
    Ready,
    InProgress,
    /// Done by their agents: in review, or in the landing queue.
    Landing,
    Blocked,
    /// Closed, newest first.
    Closed,
}

impl Column {
    pub const ALL: [Column; 6] = [
        Column::Open,
        Column::Ready,
        Column::InProgress,
        Column::Landing,
        Column::Blocked,
        Column::Closed,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Column::Open => "open",
            Column::Ready => "ready",
            Column::InProgress => "in_progress",
            Column::Landing => "landing",
            Column::Blocked => "blocked",
            Column::Closed => "closed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Column::Open => "Open",
            Column::Ready => "Ready",
            Column::InProgress => "In progress",
            Column::Landing => "Review & landing",
            Column::Blocked => "Blocked",
            Column::Closed => "Closed",
        }
    }

    /// The column a bead is in now.
    pub fn of(bead: &Bead, now: chrono::DateTime<chrono::Utc>) -> Column {
        match bead.status {
            BeadStatus::Open if bead.is_ready(now) => Column::Ready,
            BeadStatus::Open | BeadStatus::Deferred => Column::Open,
            BeadStatus::InProgress => Column::InProgress,
            BeadStatus::Review | BeadStatus::Landing => Column::Landing,
            BeadStatus::Blocked => Column::Blocked,
            BeadStatus::Closed => Column::Closed,
        }
    }

    fn query(self, f: &BeadFilter) -> Boxed<'static> {
        let q = filtered(f);
        let ready = beads::status
            .eq(BeadStatus::Open)
            .and(beads::bead_type.ne(BeadType::Epic))
            .and(beads::open_blockers.eq(0))
            .and(beads::held_by.is_null())
            .and(beads::paired_in.is_null())
            .and(beads::not_before.is_null().or(beads::not_before.le(diesel::dsl::now)));
        match self {
            Column::Ready => q.filter(ready),
            Column::Open => q
                .filter(beads::status.eq_any([BeadStatus::Open, BeadStatus::Deferred]))
                .filter(diesel::dsl::not(ready)),
            Column::InProgress => q.filter(beads::status.eq(BeadStatus::InProgress)),
            Column::Landing => {
                q.filter(beads::status.eq_any([BeadStatus::Review, BeadStatus::Landing]))
            }
            Column::Blocked => q.filter(beads::status.eq(BeadStatus::Blocked)),
            Column::Closed => q.filter(beads::status.eq(BeadStatus::Closed)),
        }
    }
}

/// One column: its first cards (with what holds each) and how many it has in all.
pub struct ColumnPage {
    pub column: Column,
    pub cards: Vec<HeldBead>,
    pub total: i64,
}

/// The board of the beads `filter` selects (its project set), at most `per_column` cards in
/// each column.
pub async fn board(
    conn: &mut Conn,
    filter: &BeadFilter,
    per_column: i64,
) -> Result<Vec<ColumnPage>> {
    let mut columns = Vec::with_capacity(Column::ALL.len());
    for column in Column::ALL {
        let rows: Vec<Bead> = match column {
            Column::Closed => {
                column
                    .query(filter)
                    .order((beads::closed_at.desc(), beads::id.desc()))
                    .limit(per_column)
                    .load(conn)
                    .await?
            }
            _ => in_order(column.query(filter)).limit(per_column).load(conn).await?,
        };
        let total = if (rows.len() as i64) < per_column {
            rows.len() as i64
        } else {
            column.query(filter).select(diesel::dsl::count_star()).first(conn).await?
        };
        let holds = holds_for(conn, &rows).await?;
        let cards =
            rows.into_iter().zip(holds).map(|(bead, holds)| HeldBead { bead, holds }).collect();
        columns.push(ColumnPage { column, cards, total });
    }
    Ok(columns)
}
