//! A project's dependency graph as a server-rendered SVG: beads in layers (a bead sits one
//! layer right of the furthest bead it waits on), edges drawn from what is needed to what
//! needs it. No script: it is a picture with links.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::page::{Layout, Nav, PageError, Viewer, ok};
use crate::beads::{DependencyKind, Graph, project_graph};
use crate::projects::Project;

/// The most beads drawn (the most urgent are kept).
const MAX_NODES: i64 = 300;
const COL: i64 = 250;
const ROW: i64 = 62;
const NODE_W: i64 = 210;
const NODE_H: i64 = 46;
const PAD: i64 = 16;

pub struct PlacedNode {
    pub id: String,
    pub title: String,
    pub status: String,
    pub priority: i16,
    pub x: i64,
    pub y: i64,
}

pub struct PlacedEdge {
    pub kind: &'static str,
    pub path: String,
}

/// Where each bead goes: its layer is one more than the deepest bead it depends on through
/// `blocks` or as a child (related edges do not order anything); beads keep their given
/// order within a layer.
pub fn layers(graph: &Graph) -> HashMap<String, usize> {
    let ordering: Vec<(&str, &str)> = graph
        .edges
        .iter()
        .filter(|e| matches!(e.kind, DependencyKind::Blocks | DependencyKind::ParentChild))
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    let mut layer: HashMap<String, usize> = graph.nodes.iter().map(|n| (n.id.clone(), 0)).collect();
    // Longest path by relaxation; the graph is acyclic, and the bound stops a corrupt one.
    for _ in 0..graph.nodes.len() {
        let mut changed = false;
        for (from, to) in &ordering {
            let below = (layer.get(*to).copied().unwrap_or(0) + 1).min(graph.nodes.len());
            if let Some(l) = layer.get_mut(*from)
                && *l < below
            {
                *l = below;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

fn place(graph: &Graph) -> (Vec<PlacedNode>, Vec<PlacedEdge>, i64, i64) {
    let layer = layers(graph);
    let mut rows_in: HashMap<usize, i64> = HashMap::new();
    let mut at: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for n in &graph.nodes {
        let l = layer.get(&n.id).copied().unwrap_or(0);
        let row = rows_in.entry(l).or_insert(0);
        let (x, y) = (PAD + l as i64 * COL, PAD + *row * ROW);
        *row += 1;
        at.insert(n.id.as_str(), (x, y));
        nodes.push(PlacedNode {
            id: n.id.clone(),
            title: n.title.chars().take(30).collect(),
            status: n.status.to_string(),
            priority: n.priority.get(),
            x,
            y,
        });
    }
    let edges = graph
        .edges
        .iter()
        .filter_map(|e| {
            let (&(tx, ty), &(fx, fy)) = (at.get(e.to.as_str())?, at.get(e.from.as_str())?);
            // From the right side of what is needed to the left side of what needs it.
            let (x1, y1, x2, y2) = (tx + NODE_W, ty + NODE_H / 2, fx, fy + NODE_H / 2);
            let bend = ((x2 - x1).abs() / 2).max(30);
            Some(PlacedEdge {
                kind: match e.kind {
                    DependencyKind::Blocks => "blocks",
                    DependencyKind::ParentChild => "parent-child",
                    DependencyKind::Related => "related",
                    DependencyKind::DiscoveredFrom => "discovered-from",
                },
                path: format!("M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}", x1 + bend, x2 - bend),
            })
        })
        .collect();
    let width = PAD * 2 + (layer.values().max().copied().unwrap_or(0) as i64) * COL + NODE_W;
    let height = PAD * 2 + rows_in.values().max().copied().unwrap_or(0) * ROW;
    (nodes, edges, width, height.max(ROW))
}

#[derive(Template)]
#[template(path = "graph.html")]
struct GraphPage {
    layout: Layout,
    project: Project,
    nodes: Vec<PlacedNode>,
    edges: Vec<PlacedEdge>,
    width: i64,
    height: i64,
    node_w: i64,
    node_h: i64,
    truncated: bool,
    closed: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct GraphQuery {
    #[serde(default)]
    closed: bool,
}

/// `GET /projects/{id}/graph`.
pub async fn page(
    viewer: Viewer,
    id: web::Path<String>,
    query: web::Query<GraphQuery>,
) -> Result<HttpResponse, PageError> {
    let mut conn = viewer.state.pool.get().await?;
    let project = Project::find(&mut conn, &id).await?;
    let graph = project_graph(&mut conn, &id, query.closed, MAX_NODES).await?;
    drop(conn);
    let (nodes, edges, width, height) = place(&graph);
    ok(GraphPage {
        layout: viewer.layout(format!("{} graph", project.name), Nav::Projects).await?,
        project,
        nodes,
        edges,
        width,
        height,
        node_w: NODE_W,
        node_h: NODE_H,
        truncated: graph.truncated,
        closed: query.closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beads::{BeadStatus, BeadType, Edge, Node, Priority};

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            title: id.into(),
            status: BeadStatus::Open,
            bead_type: BeadType::Task,
            priority: Priority::DEFAULT,
        }
    }

    fn edge(from: &str, to: &str, kind: DependencyKind) -> Edge {
        Edge { from: from.into(), to: to.into(), kind }
    }

    #[test]
    fn a_bead_sits_right_of_the_deepest_bead_it_waits_on() {
        let graph = Graph {
            nodes: ["a", "b", "c", "d", "e"].map(node).to_vec(),
            edges: vec![
                edge("b", "a", DependencyKind::Blocks),
                edge("c", "b", DependencyKind::Blocks),
                edge("c", "a", DependencyKind::Blocks),
                edge("d", "a", DependencyKind::ParentChild),
                edge("e", "c", DependencyKind::Related),
            ],
            truncated: false,
        };
        let l = layers(&graph);
        assert_eq!([l["a"], l["b"], l["c"], l["d"], l["e"]], [0, 1, 2, 1, 0]);
        let (nodes, edges, width, _) = place(&graph);
        assert_eq!(nodes.len(), 5);
        assert_eq!(edges.len(), 5);
        assert_eq!(width, PAD * 2 + 2 * COL + NODE_W);
    }

    #[test]
    fn a_cycle_in_corrupt_data_does_not_hang_the_page() {
        let graph = Graph {
            nodes: ["a", "b"].map(node).to_vec(),
            edges: vec![
                edge("a", "b", DependencyKind::Blocks),
                edge("b", "a", DependencyKind::Blocks),
            ],
            truncated: false,
        };
        let l = layers(&graph);
        assert!(l["a"] <= 2 && l["b"] <= 2, "{l:?}");
    }
}
