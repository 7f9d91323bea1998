//! A project's beads as nodes and edges, for drawing.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use super::types::{BeadStatus, BeadType, DependencyKind, EdgeKind, Priority};
use crate::db::Conn;
use crate::db::schema::{bead_dependencies, beads};
use crate::error::Result;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Node {
    pub id: String,
    pub title: String,
    pub status: BeadStatus,
    #[serde(rename = "type")]
    pub bead_type: BeadType,
    pub priority: Priority,
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
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// True when there were more beads than `limit`; the most urgent were kept.
    pub truncated: bool,
}

/// The project's beads (closed ones only when asked) in dispatch order, at most `limit`,
/// with the edges among them.
pub async fn project_graph(
    conn: &mut Conn,
    project: &str,
    include_closed: bool,
    limit: i64,
) -> Result<Graph> {
    let mut q = beads::table
        .filter(beads::project_id.eq(project))
        .select((
            beads::id,
            beads::title,
            beads::status,
            beads::bead_type,
            beads::priority,
            beads::parent_id,
        ))
        .order((beads::priority, beads::created_at, beads::id))
        .into_boxed();
    if !include_closed {
        q = q.filter(beads::status.ne(BeadStatus::Closed));
    }
    let mut rows: Vec<(String, String, BeadStatus, BeadType, i16, Option<String>)> =
        q.limit(limit + 1).load(conn).await?;
    let truncated = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let stored: Vec<(String, String, EdgeKind)> = bead_dependencies::table
        .filter(bead_dependencies::bead_id.eq_any(&ids))
        .filter(bead_dependencies::depends_on.eq_any(&ids))
        .select((
            bead_dependencies::bead_id,
            bead_dependencies::depends_on,
            bead_dependencies::kind,
        ))
        .load(conn)
        .await?;
    let known: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut edges: Vec<Edge> =
        stored.into_iter().map(|(from, to, kind)| Edge { from, to, kind: kind.into() }).collect();
    edges.extend(rows.iter().filter_map(|r| {
        let parent = r.5.as_ref().filter(|p| known.contains(p.as_str()))?;
        Some(Edge { from: r.0.clone(), to: parent.clone(), kind: DependencyKind::ParentChild })
    }));
    let nodes = rows
        .into_iter()
        .map(|(id, title, status, bead_type, priority, _)| Node {
            id,
            title,
            status,
            bead_type,
            priority: Priority::from(priority),
        })
        .collect();
    Ok(Graph { nodes, edges, truncated })
}
