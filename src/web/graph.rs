//! A project's dependency graph as a server-rendered SVG: beads in layers (a bead sits one
//! layer right of the furthest bead it waits on), edges drawn from what is needed to what
//! needs it. No script: it is a picture with links.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::page::{Layout, Nav, PageError, Viewer, ok};
use crate::beads::{DependencyKind, Graph, Node, project_graph};
use crate::projects::Project;

/// The most beads drawn (the most urgent are kept).
const MAX_NODES: i64 = 300;
const NODE_W: i64 = 210;
/// The space between two layers, where edges between neighbouring layers are drawn.
const GAP: i64 = 60;
const COL: i64 = NODE_W + GAP;
/// Left of the first layer: room for edges that come back to it.
const LEFT: i64 = 28;
const PAD: i64 = 16;
/// The vertical space between two beads of a layer.
const VGAP: i64 = 16;
/// A bead with a one-line title; each further line adds `LINE`.
const NODE_H: i64 = 46;
const LINE: i64 = 16;
/// The distance between two edges routed over the beads.
const LANE: i64 = 7;
/// Characters of a title's line (13 px system font in 190 px: wide letters included).
const LINE_CHARS: usize = 24;
const MAX_LINES: usize = 3;

pub struct PlacedNode {
    pub id: String,
    /// The full title, for the tooltip.
    pub title: String,
    /// The title in lines broken between words.
    pub lines: Vec<TitleLine>,
    /// `ready`, `waiting` or the status: the class the bead is drawn with.
    pub state: &'static str,
    pub status: String,
    pub priority: i16,
    /// The other project a blocker lives in.
    pub elsewhere: Option<String>,
    pub x: i64,
    pub y: i64,
    pub h: i64,
}

pub struct TitleLine {
    pub text: String,
    pub dy: i64,
    /// A single word longer than a line: squeezed into it, never cut.
    pub squeeze: bool,
}

pub struct PlacedEdge {
    pub kind: &'static str,
    pub path: String,
}

/// `title` in at most `max_lines` lines of about `width` characters, broken between words;
/// when it does not fit, the last line ends with "…" after a whole word. A word longer than a
/// line stands on a line of its own.
pub fn wrap(title: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in title.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = lines.last_mut().expect("max_lines > 0");
        // Room for the ellipsis: drop whole words from the end while it does not fit.
        while last.chars().count() + 1 > width {
            match last.rfind(' ') {
                Some(at) => last.truncate(at),
                None => break,
            }
        }
        last.push('…');
    }
    lines
}

/// The class a bead is drawn with: ready and waiting beads apart from other open ones.
fn state(node: &Node) -> &'static str {
    if node.ready {
        "ready"
    } else if node.waiting {
        "waiting"
    } else {
        node.status.as_str()
    }
}

fn kind_name(kind: DependencyKind) -> &'static str {
    match kind {
        DependencyKind::Blocks => "blocks",
        DependencyKind::ParentChild => "parent-child",
        DependencyKind::Related => "related",
        DependencyKind::DiscoveredFrom => "discovered-from",
    }
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

/// The order beads are drawn in, layer by layer: the first layer as given (most urgent
/// first), each later one by the mean row of what its beads wait on in the layer just left of
/// it (ties, and beads waiting on nothing there, keep the given order, after the others), so
/// edges between neighbouring layers cross less.
fn order<'a>(graph: &'a Graph, layer: &HashMap<String, usize>) -> Vec<&'a Node> {
    let layer_of = |id: &str| layer.get(id).copied().unwrap_or(0);
    let mut before: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &graph.edges {
        if layer_of(&e.to) + 1 == layer_of(&e.from) {
            before.entry(e.from.as_str()).or_default().push(e.to.as_str());
        }
    }
    let mut by_layer: Vec<Vec<(usize, &Node)>> = Vec::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        let l = layer_of(&n.id);
        if by_layer.len() <= l {
            by_layer.resize_with(l + 1, Vec::new);
        }
        by_layer[l].push((i, n));
    }
    let mut row: HashMap<&str, f64> = HashMap::new();
    let mut out = Vec::with_capacity(graph.nodes.len());
    for here in by_layer {
        let mut keyed: Vec<(f64, usize, &Node)> = here
            .into_iter()
            .map(|(i, n)| {
                let rows: Vec<f64> = before
                    .get(n.id.as_str())
                    .map(|ids| ids.iter().filter_map(|id| row.get(id).copied()).collect())
                    .unwrap_or_default();
                let key = if rows.is_empty() {
                    f64::MAX
                } else {
                    rows.iter().sum::<f64>() / rows.len() as f64
                };
                (key, i, n)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (r, (_, _, n)) in keyed.iter().enumerate() {
            row.insert(n.id.as_str(), r as f64);
        }
        out.extend(keyed.into_iter().map(|(_, _, n)| n));
    }
    out
}

/// Where everything goes. An edge between neighbouring layers is a curve in the gap between
/// them; any other edge (across layers, within one, or backwards) leaves its bead into the
/// gap on its right, runs in a lane of its own above all the beads and comes down in the
/// gap left of its other bead, so no edge ever crosses a bead.
fn place(graph: &Graph, project: &str) -> (Vec<PlacedNode>, Vec<PlacedEdge>, i64, i64) {
    let layer = layers(graph);
    let layer_of = |id: &str| layer.get(id).copied().unwrap_or(0) as i64;
    let drawn: HashMap<&str, ()> = graph.nodes.iter().map(|n| (n.id.as_str(), ())).collect();
    let edges: Vec<&crate::beads::Edge> = graph
        .edges
        .iter()
        .filter(|e| drawn.contains_key(e.from.as_str()) && drawn.contains_key(e.to.as_str()))
        .collect();
    let long = |e: &crate::beads::Edge| layer_of(&e.from) != layer_of(&e.to) + 1;
    let lanes = edges.iter().filter(|e| long(e)).count() as i64;
    let top = PAD + lanes * LANE;
    let mut next_y: HashMap<i64, i64> = HashMap::new();
    let mut at: HashMap<&str, (i64, i64, i64)> = HashMap::new();
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for n in order(graph, &layer) {
        let l = layer_of(&n.id);
        let elsewhere = (n.project != project).then(|| n.project.clone());
        let lines = wrap(&n.title, LINE_CHARS, MAX_LINES);
        let extra = lines.len().max(1) as i64 - 1 + i64::from(elsewhere.is_some());
        let h = NODE_H + extra * LINE;
        let y = next_y.entry(l).or_insert(top);
        let (x, node_y) = (LEFT + l * COL, *y);
        *y += h + VGAP;
        at.insert(n.id.as_str(), (x, node_y, h));
        nodes.push(PlacedNode {
            id: n.id.clone(),
            title: n.title.clone(),
            lines: lines
                .into_iter()
                .enumerate()
                .map(|(i, text)| TitleLine {
                    squeeze: text.chars().count() > LINE_CHARS,
                    text,
                    dy: i as i64 * LINE,
                })
                .collect(),
            state: state(n),
            status: n.status.to_string(),
            priority: n.priority.get(),
            elsewhere,
            x,
            y: node_y,
            h,
        });
    }
    let mut lane = 0;
    let edges = edges
        .into_iter()
        .filter_map(|e| {
            let (&(tx, ty, th), &(fx, fy, fh)) = (at.get(e.to.as_str())?, at.get(e.from.as_str())?);
            // From the right side of what is needed to the left side of what needs it.
            let (x1, y1, x2, y2) = (tx + NODE_W, ty + th / 2, fx, fy + fh / 2);
            let path = if long(e) {
                let ly = PAD + lane * LANE;
                let off = 8 + (lane % 4) * 4;
                lane += 1;
                format!("M{x1},{y1} H{} V{ly} H{} V{y2} H{x2}", x1 + off, x2 - off)
            } else {
                let bend = (x2 - x1) / 2;
                format!("M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}", x1 + bend, x2 - bend)
            };
            Some(PlacedEdge { kind: kind_name(e.kind), path })
        })
        .collect();
    let width = LEFT + layer.values().max().copied().unwrap_or(0) as i64 * COL + NODE_W + GAP / 2;
    let height = next_y.values().max().copied().unwrap_or(top) + PAD;
    (nodes, edges, width, height.max(NODE_H + 2 * PAD))
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
    truncated: bool,
    /// How many of the project's own beads are drawn (blockers elsewhere not counted).
    own: usize,
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
    let (nodes, edges, width, height) = place(&graph, &project.id);
    let own = graph.nodes.iter().filter(|n| n.project == project.id).count();
    ok(GraphPage {
        layout: viewer.layout(format!("{} graph", project.name), Nav::Projects).await?,
        project,
        nodes,
        edges,
        width,
        height,
        node_w: NODE_W,
        truncated: graph.truncated,
        own,
        closed: query.closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beads::{BeadStatus, BeadType, Edge, Priority};

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            project: "p".into(),
            title: id.into(),
            status: BeadStatus::Open,
            bead_type: BeadType::Task,
            priority: Priority::DEFAULT,
            ready: true,
            waiting: false,
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
        let (nodes, edges, width, _) = place(&graph, "p");
        assert_eq!(nodes.len(), 5);
        assert_eq!(edges.len(), 5);
        assert_eq!(width, LEFT + 2 * COL + NODE_W + GAP / 2);
    }

    /// The points of an `M… H… V…` path, in order.
    fn corners(path: &str) -> Vec<(i64, i64)> {
        let mut at = (0, 0);
        let mut points = Vec::new();
        for part in path.split(' ') {
            let (cmd, rest) = part.split_at(1);
            match cmd {
                "M" => {
                    let (x, y) = rest.split_once(',').expect("M x,y");
                    at = (x.parse().expect("x"), y.parse().expect("y"));
                }
                "H" => at.0 = rest.parse().expect("x"),
                "V" => at.1 = rest.parse().expect("y"),
                other => panic!("unexpected {other} in {path}"),
            }
            points.push(at);
        }
        points
    }

    #[test]
    fn edges_that_skip_a_layer_or_go_back_never_cross_a_bead() {
        // c is two layers right of a (through b), and a child of a: the child-of edge skips
        // the layer of b; e is related to c, from a layer left of it.
        let mut nodes = ["a", "b", "c", "x", "y", "e"].map(node).to_vec();
        nodes[1].title = "A title long enough to take three lines of the node".into();
        let graph = Graph {
            nodes,
            edges: vec![
                edge("b", "a", DependencyKind::Blocks),
                edge("x", "a", DependencyKind::Blocks),
                edge("y", "x", DependencyKind::Blocks),
                edge("c", "b", DependencyKind::Blocks),
                edge("c", "a", DependencyKind::ParentChild),
                edge("e", "c", DependencyKind::Related),
            ],
            truncated: false,
        };
        let (nodes, edges, _, _) = place(&graph, "p");
        let inside = |(x, y): (i64, i64)| {
            nodes.iter().any(|n| x > n.x && x < n.x + NODE_W && y > n.y && y < n.y + n.h)
        };
        let routed: Vec<&PlacedEdge> = edges.iter().filter(|e| !e.path.contains('C')).collect();
        assert_eq!(routed.len(), 2, "the child-of edge over b and the related edge back");
        for e in routed {
            let points = corners(&e.path);
            for pair in points.windows(2) {
                let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
                // Every point along the segment, a pixel apart.
                let steps = (x2 - x1).abs().max((y2 - y1).abs()).max(1);
                for s in 0..=steps {
                    let p = (x1 + (x2 - x1) * s / steps, y1 + (y2 - y1) * s / steps);
                    assert!(!inside(p), "{} crosses a bead at {p:?}", e.path);
                }
            }
        }
        // Lanes are apart: no two routed edges run at the same height.
        let lanes: Vec<i64> =
            edges.iter().filter(|e| !e.path.contains('C')).map(|e| corners(&e.path)[2].1).collect();
        assert_ne!(lanes[0], lanes[1]);
    }

    #[test]
    fn titles_wrap_between_words_and_end_with_an_ellipsis_after_a_whole_word() {
        assert_eq!(
            wrap("Store beads in Postgres with diesel", 24, 3),
            ["Store beads in Postgres", "with diesel"]
        );
        let long =
            "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
        let lines = wrap(long, 12, 3);
        assert_eq!(lines, ["one two", "three four", "five six…"]);
        for line in &lines {
            let words = line.trim_end_matches('…');
            assert!(words.split(' ').all(|w| long.split(' ').any(|whole| whole == w)), "{line}");
        }
        // A word longer than a line is never cut: it stands alone.
        assert_eq!(
            wrap("see src/web/graph_layout_helpers.rs now", 12, 3),
            ["see", "src/web/graph_layout_helpers.rs", "now"]
        );
        assert_eq!(wrap("", 12, 3), Vec::<String>::new());
    }

    #[test]
    fn ready_waiting_and_other_projects_beads_are_drawn_apart() {
        let mut waiting = node("w");
        (waiting.ready, waiting.waiting) = (false, true);
        let mut held = node("h");
        held.ready = false;
        let mut elsewhere = node("o");
        elsewhere.project = "other".into();
        let graph = Graph {
            nodes: vec![node("r"), waiting, held, elsewhere],
            edges: vec![edge("w", "o", DependencyKind::Blocks)],
            truncated: false,
        };
        let (nodes, edges, _, _) = place(&graph, "p");
        let of = |id: &str| nodes.iter().find(|n| n.id == id).expect("drawn");
        let states: Vec<&str> = ["r", "w", "h", "o"].iter().map(|id| of(id).state).collect();
        assert_eq!(states, ["ready", "waiting", "open", "ready"]);
        assert_eq!(of("o").elsewhere.as_deref(), Some("other"));
        assert_eq!(of("o").h, NODE_H + LINE, "a line says which project");
        assert_eq!(of("r").elsewhere, None);
        assert_eq!(edges.len(), 1);
    }

    #[test]
    fn beads_stack_next_to_what_they_wait_on() {
        // b waits on the last bead of the first layer, a on the first: a is drawn above b
        // whatever their given order.
        let graph = Graph {
            nodes: ["x", "y", "b", "a"].map(node).to_vec(),
            edges: vec![
                edge("b", "y", DependencyKind::Blocks),
                edge("a", "x", DependencyKind::Blocks),
            ],
            truncated: false,
        };
        let (nodes, _, _, _) = place(&graph, "p");
        let y_of = |id: &str| nodes.iter().find(|n| n.id == id).expect("drawn").y;
        assert!(y_of("x") < y_of("y"), "the first layer keeps the given order");
        assert!(y_of("a") < y_of("b"));
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
