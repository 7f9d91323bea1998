//! A project's beads as nodes and edges, for drawing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::model::Bead;
use super::types::{BeadStatus, BeadType, DependencyKind, EdgeKind, Priority};
use crate::db::Conn;
use crate::db::schema::{bead_dependencies, beads};
use crate::error::Result;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Node {
    pub id: String,
    /// The bead's project: another project's for a blocker that lives elsewhere.
    pub project: String,
    pub title: String,
    pub status: BeadStatus,
    #[serde(rename = "type")]
    pub bead_type: BeadType,
    pub priority: Priority,
    /// Dispatchable now (see `Bead::is_ready`).
    pub ready: bool,
    /// Open, but waiting on a `blocks` dependency that is not closed.
    pub waiting: bool,
}

impl Node {
    fn of(bead: Bead, now: DateTime<Utc>) -> Node {
        Node {
            ready: bead.is_ready(now),
            waiting: bead.status == BeadStatus::Open && bead.open_blockers > 0,
            id: bead.id,
            project: bead.project_id,
            title: bead.title,
            status: bead.status,
            bead_type: bead.bead_type,
            priority: bead.priority,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Edge {
    /// The dependent bead.
    pub from: String,
    /// The bead it depends on (for parent-child: the parent).
    pub to: String,
    pub kind: DependencyKind,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Graph {
    /// The project's beads, then the beads of other projects that block them (after all of
    /// the project's own; their `project` says where they live).
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// True when there were more beads than `limit`; the most urgent were kept.
    pub truncated: bool,
}

/// The project's beads (closed ones only when asked) in dispatch order, at most `limit`,
/// with the edges among them, and the beads of other projects that block them (closed ones
/// only when asked) with those edges.
pub async fn project_graph(
    conn: &mut Conn,
    project: &str,
    include_closed: bool,
    limit: i64,
) -> Result<Graph> {
    let mut q = beads::table
        .filter(beads::project_id.eq(project))
        .select(Bead::as_select())
        .order((beads::priority, beads::created_at, beads::id))
        .into_boxed();
    if !include_closed {
        q = q.filter(beads::status.ne(BeadStatus::Closed));
    }
    let mut rows: Vec<Bead> = q.limit(limit + 1).load(conn).await?;
    let truncated = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let stored: Vec<(String, String, EdgeKind)> = bead_dependencies::table
        .filter(bead_dependencies::bead_id.eq_any(&ids))
        .select((
            bead_dependencies::bead_id,
            bead_dependencies::depends_on,
            bead_dependencies::kind,
        ))
        .load(conn)
        .await?;
    let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
    // Blockers outside the drawn beads: those of other projects are drawn too.
    let outside: Vec<&str> = stored
        .iter()
        .filter(|(_, to, kind)| {
            !known.contains(to.as_str()) && DependencyKind::from(*kind) == DependencyKind::Blocks
        })
        .map(|(_, to, _)| to.as_str())
        .collect();
    let mut q = beads::table
        .filter(beads::id.eq_any(&outside))
        .filter(beads::project_id.ne(project))
        .select(Bead::as_select())
        .order((beads::project_id, beads::priority, beads::id))
        .into_boxed();
    if !include_closed {
        q = q.filter(beads::status.ne(BeadStatus::Closed));
    }
    let external: Vec<Bead> = q.load(conn).await?;
    let drawn: HashSet<&str> =
        known.iter().copied().chain(external.iter().map(|b| b.id.as_str())).collect();
    let mut edges: Vec<Edge> = stored
        .iter()
        .filter(|(_, to, _)| drawn.contains(to.as_str()))
        .map(|(from, to, kind)| Edge { from: from.clone(), to: to.clone(), kind: (*kind).into() })
        .collect();
    edges.extend(rows.iter().filter_map(|r| {
        let parent = r.parent_id.as_ref().filter(|p| known.contains(p.as_str()))?;
        Some(Edge { from: r.id.clone(), to: parent.clone(), kind: DependencyKind::ParentChild })
    }));
    let now = Utc::now();
    let nodes = rows.into_iter().chain(external).map(|b| Node::of(b, now)).collect();
    Ok(Graph { nodes, edges, truncated })
}
