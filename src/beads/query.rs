//! Reading beads: filtered lists with cursor paging, the ready queue in dispatch order, and
//! the beads that are not ready with what holds each one.

use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Int2, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};

use super::comments::Comment;
use super::links::open_blockers_of;
use super::model::{Bead, BeadDetails, BeadView, HeldBead, Hold};
use super::runs::Run;
use super::types::{BeadStatus, BeadType, Priority};
use crate::activity::Activity;
use crate::db::schema::beads;
use crate::db::{Conn, Page};
use crate::error::{Error, Result};

/// A position in the dispatch order `(priority, created_at, id)`, opaque to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    p: i16,
    t: DateTime<Utc>,
    i: String,
}

impl Cursor {
    pub fn after(bead: &Bead) -> Cursor {
        Cursor { p: bead.priority.get(), t: bead.created_at, i: bead.id.clone() }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(text: &str) -> Result<Cursor> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| {
                Error::bad_request("invalid_cursor", "the cursor is not one this API gave out")
            })
    }
}

/// Filters for the bead list; every one is optional.
#[derive(Debug, Clone, Default)]
pub struct BeadFilter {
    pub project: Option<String>,
    pub statuses: Vec<BeadStatus>,
    pub priorities: Vec<Priority>,
    pub types: Vec<BeadType>,
    pub label: Option<String>,
    pub assignee: Option<uuid::Uuid>,
    pub persona: Option<String>,
    pub text: Option<String>,
    pub parent: Option<String>,
}

pub(super) type Boxed<'a> =
    beads::BoxedQuery<'a, diesel::pg::Pg, diesel::dsl::AsSelect<Bead, diesel::pg::Pg>>;

/// Keeps rows strictly after the cursor in `(priority, created_at, id)` order.
fn after_cursor<'a>(q: Boxed<'a>, cursor: Option<&Cursor>) -> Boxed<'a> {
    match cursor {
        None => q,
        Some(c) => q.filter(
            diesel::dsl::sql::<Bool>("(beads.priority, beads.created_at, beads.id) > (")
                .bind::<Int2, _>(c.p)
                .sql(", ")
                .bind::<Timestamptz, _>(c.t)
                .sql(", ")
                .bind::<Text, _>(c.i.clone())
                .sql(")"),
        ),
    }
}

pub(super) fn in_order(q: Boxed<'_>) -> Boxed<'_> {
    q.order((beads::priority.asc(), beads::created_at.asc(), beads::id.asc()))
}

fn paginate(rows: Vec<Bead>, limit: i64) -> Page<Bead> {
    Page::from_rows(rows, limit, |b| Cursor::after(b).encode())
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The beads matching every filter that is set, unordered.
pub(super) fn filtered(f: &BeadFilter) -> Boxed<'static> {
    let mut q = beads::table.select(Bead::as_select()).into_boxed();
    if let Some(p) = &f.project {
        q = q.filter(beads::project_id.eq(p.clone()));
    }
    // One value is `=`, not `= ANY(...)`: only then can the planner read the page in
    // order off an index instead of sorting every match.
    match f.statuses.as_slice() {
        [] => {}
        [one] => q = q.filter(beads::status.eq(*one)),
        many => q = q.filter(beads::status.eq_any(many.to_vec())),
    }
    if !f.priorities.is_empty() {
        q = q.filter(
            beads::priority.eq_any(f.priorities.iter().map(|p| p.get()).collect::<Vec<_>>()),
        );
    }
    if !f.types.is_empty() {
        q = q.filter(beads::bead_type.eq_any(f.types.clone()));
    }
    if let Some(label) = &f.label {
        q = q.filter(beads::labels.contains(vec![label.to_lowercase()]));
    }
    if let Some(a) = f.assignee {
        q = q.filter(beads::assignee_agent_id.eq(a));
    }
    if let Some(p) = &f.persona {
        q = q.filter(beads::persona.eq(p.clone()));
    }
    if let Some(parent) = &f.parent {
        q = q.filter(beads::parent_id.eq(parent.clone()));
    }
    if let Some(text) = f.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let pattern = format!("%{}%", escape_like(text));
        q = q.filter(
            beads::title
                .ilike(pattern.clone())
                .or(beads::description.ilike(pattern))
                .or(beads::id.eq(text.to_owned())),
        );
    }
    q
}

impl Bead {
    /// Beads matching the filter in dispatch order (priority, then age).
    pub async fn list(
        conn: &mut Conn,
        f: &BeadFilter,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<Bead>> {
        let q = filtered(f);
        let rows = in_order(after_cursor(q, cursor)).limit(limit + 1).load(conn).await?;
        Ok(paginate(rows, limit))
    }

    /// Ready beads in dispatch order. Served by the partial `beads_ready*` indexes: beads
    /// leave them the moment they stop being ready, so this reads about `limit` entries.
    pub async fn ready(
        conn: &mut Conn,
        project: Option<&str>,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<Bead>> {
        let mut q = beads::table
            .select(Bead::as_select())
            .filter(beads::status.eq(BeadStatus::Open))
            .filter(beads::bead_type.ne(BeadType::Epic))
            .filter(beads::open_blockers.eq(0))
            .filter(beads::held_by.is_null())
            .filter(beads::paired_in.is_null())
            .filter(beads::not_before.is_null().or(beads::not_before.le(diesel::dsl::now)))
            .into_boxed();
        if let Some(p) = project {
            q = q.filter(beads::project_id.eq(p.to_owned()));
        }
        let rows = in_order(after_cursor(q, cursor)).limit(limit + 1).load(conn).await?;
        Ok(paginate(rows, limit))
    }

    /// Beads that are not ready (blocked, deferred, or open but held back), each with
    /// everything that holds it.
    pub async fn not_ready(
        conn: &mut Conn,
        project: Option<&str>,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<HeldBead>> {
        let mut q = beads::table
            .select(Bead::as_select())
            .filter(
                beads::status.eq_any([BeadStatus::Blocked, BeadStatus::Deferred]).or(beads::status
                    .eq(BeadStatus::Open)
                    .and(
                        beads::open_blockers
                            .gt(0)
                            .or(beads::held_by.is_not_null())
                            .or(beads::paired_in.is_not_null())
                            .or(beads::not_before.gt(diesel::dsl::now)),
                    )),
            )
            .into_boxed();
        if let Some(p) = project {
            q = q.filter(beads::project_id.eq(p.to_owned()));
        }
        let rows = in_order(after_cursor(q, cursor)).limit(limit + 1).load(conn).await?;
        let page = paginate(rows, limit);
        let holds = holds_for(conn, &page.items).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .zip(holds)
                .map(|(bead, holds)| HeldBead { bead, holds })
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// A bead with its links, holds, comments, runs and history.
    pub async fn details(conn: &mut Conn, id: &str) -> Result<BeadDetails> {
        let bead = Bead::get(conn, id).await?;
        let (dependencies, dependents) = Bead::links(conn, &bead).await?;
        let holds = holds_for(conn, std::slice::from_ref(&bead)).await?.remove(0);
        let comments = Comment::latest(conn, id, 200).await?;
        let runs = Run::for_bead(conn, id).await?;
        let history = Activity::for_bead(conn, id, 200).await?;
        Ok(BeadDetails {
            bead: BeadView::from(bead),
            dependencies,
            dependents,
            holds,
            comments,
            runs,
            history,
        })
    }
}

/// What holds each of the given beads (empty for a ready bead), with two queries for the
/// whole page.
pub(super) async fn holds_for(conn: &mut Conn, page: &[Bead]) -> Result<Vec<Vec<Hold>>> {
    let with_blockers: Vec<String> =
        page.iter().filter(|b| b.open_blockers > 0).map(|b| b.id.clone()).collect();
    let blockers = open_blockers_of(conn, &with_blockers).await?;
    let ancestor_ids: Vec<String> = page.iter().filter_map(|b| b.held_by.clone()).collect();
    let ancestors: Vec<(String, String, BeadStatus)> = if ancestor_ids.is_empty() {
        Vec::new()
    } else {
        beads::table
            .filter(beads::id.eq_any(&ancestor_ids))
            .select((beads::id, beads::title, beads::status))
            .load(conn)
            .await?
    };
    let now = Utc::now();
    Ok(page
        .iter()
        .map(|b| {
            let mut holds = Vec::new();
            match b.status {
                BeadStatus::Blocked => holds.push(Hold::Blocked {
                    reason: b.blocked_reason.unwrap_or(super::BlockedReason::Manual),
                    note: b.blocked_note.clone(),
                }),
                BeadStatus::Deferred => holds.push(Hold::Deferred { until: b.defer_until }),
                BeadStatus::InProgress => {
                    holds.push(Hold::InProgress { assignee: b.assignee_agent_id })
                }
                BeadStatus::Closed => holds.push(Hold::Closed),
                BeadStatus::Review => holds.push(Hold::Review),
                BeadStatus::Landing => holds.push(Hold::Landing { since: b.landing_since }),
                BeadStatus::Open => {}
            }
            if b.bead_type == BeadType::Epic && b.status == BeadStatus::Open {
                holds.push(Hold::Epic);
            }
            let mine: Vec<_> =
                blockers.iter().filter(|(of, _)| *of == b.id).map(|(_, l)| l.clone()).collect();
            if !mine.is_empty() {
                holds.push(Hold::Blockers { blockers: mine });
            }
            if let Some(a) = &b.held_by
                && let Some((id, title, status)) = ancestors.iter().find(|(id, _, _)| id == a)
            {
                holds.push(Hold::Ancestor {
                    id: id.clone(),
                    title: title.clone(),
                    status: *status,
                });
            }
            if let Some(conversation) = b.paired_in {
                holds.push(Hold::Paired { conversation });
            }
            if let Some(t) = b.not_before.filter(|t| *t > now) {
                holds.push(Hold::Backoff { until: t });
            }
            holds
        })
        .collect())
}
