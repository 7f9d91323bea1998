//! The dependency graph: adding and removing edges, refusing `blocks` cycles, and keeping
//! each bead's readiness columns (`open_blockers`, `held_by`) current in the same
//! transaction as the change that moves them.

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use super::model::Bead;
use super::types::{BeadStatus, DependencyKind, EdgeKind};
use crate::activity::{Activity, Actor, Record};
use crate::db::Conn;
use crate::db::schema::{bead_dependencies, beads};
use crate::error::{Error, Result};
use crate::events::Kind;

/// One dependency as the API speaks of it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub depends_on: String,
    pub kind: DependencyKind,
}

/// Transactions that change the graph or whether a bead holds its subtree take this
/// transaction-scoped advisory lock as their first statement. Without it, two concurrent
/// edges could each pass the cycle check and together make a cycle, and a child filed under
/// a parent whose hold is changing could read the parent's stale `held_by` while the
/// subtree refresh (working from its own snapshot) misses the new child. Taking it first,
/// before any row lock, keeps it out of lock-order deadlocks. Claims and lease changes do
/// not change holds and never take it.
const GRAPH_LOCK: i64 = 4242424202;

/// Serialises this transaction with every other graph change; call it first.
pub(crate) async fn lock_graph(conn: &mut Conn) -> Result<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(GRAPH_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// The SQL test for "this bead holds its descendants back".
const HOLDS: &str = "(p.status IN ('blocked', 'deferred') \
                     OR (p.status <> 'closed' AND p.open_blockers > 0))";

/// What a child's `held_by` is given its parent.
pub(super) fn hold_from_parent(parent: &Bead) -> Option<String> {
    let holds = matches!(parent.status, BeadStatus::Blocked | BeadStatus::Deferred)
        || (parent.status != BeadStatus::Closed && parent.open_blockers > 0);
    if holds { Some(parent.id.clone()) } else { parent.held_by.clone() }
}

/// Locks the given beads against status changes (FOR SHARE) and returns their statuses;
/// any id that does not exist is an error naming it.
pub(super) async fn lock_existing(
    conn: &mut Conn,
    ids: &[String],
) -> Result<Vec<(String, BeadStatus)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<(String, BeadStatus)> = beads::table
        .filter(beads::id.eq_any(ids))
        .select((beads::id, beads::status))
        .order(beads::id)
        .for_share()
        .load(conn)
        .await?;
    if let Some(missing) = ids.iter().find(|id| !found.iter().any(|(f, _)| f == *id)) {
        return Err(Error::invalid("unknown_dependency", format!("no bead {missing:?}")));
    }
    Ok(found)
}

#[derive(QueryableByName)]
struct Recount {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Bool)]
    crossed_zero: bool,
}

/// Recounts `open_blockers` for the given beads and refreshes the holds below any whose
/// count moved to or from zero.
pub(super) async fn recount_blockers(conn: &mut Conn, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let changed: Vec<Recount> = diesel::sql_query(
        "WITH counts AS ( \
           SELECT b.id, b.open_blockers AS old, \
             (SELECT count(*) FROM bead_dependencies d JOIN beads x ON x.id = d.depends_on \
               WHERE d.bead_id = b.id AND d.kind = 'blocks' AND x.status <> 'closed')::int AS new \
           FROM beads b WHERE b.id = ANY($1)) \
         UPDATE beads SET open_blockers = counts.new FROM counts \
         WHERE beads.id = counts.id AND beads.open_blockers <> counts.new \
         RETURNING beads.id, (counts.old = 0) <> (counts.new = 0) AS crossed_zero",
    )
    .bind::<Array<Text>, _>(ids)
    .load(conn)
    .await?;
    let roots: Vec<String> = changed.into_iter().filter(|r| r.crossed_zero).map(|r| r.id).collect();
    refresh_holds(conn, &roots).await
}

/// Recounts the beads that wait on `id` through `blocks` edges (after `id` closed or
/// reopened).
pub(super) async fn recount_dependents(conn: &mut Conn, id: &str) -> Result<()> {
    let dependents: Vec<String> = bead_dependencies::table
        .filter(bead_dependencies::depends_on.eq(id))
        .filter(bead_dependencies::kind.eq(EdgeKind::Blocks))
        .select(bead_dependencies::bead_id)
        .load(conn)
        .await?;
    recount_blockers(conn, &dependents).await
}

/// Recomputes `held_by` for every descendant of the given beads, after something changed
/// whether they hold their subtree back. One statement, however deep the tree. When one
/// root lies below another, its descendants are reached twice; the row from the higher root
/// (the greater depth) is the one computed from fresh values, so it wins.
pub(super) async fn refresh_holds(conn: &mut Conn, roots: &[String]) -> Result<()> {
    if roots.is_empty() {
        return Ok(());
    }
    diesel::sql_query(format!(
        "WITH RECURSIVE tree(id, held, depth) AS ( \
           SELECT c.id, CASE WHEN {HOLDS} THEN p.id ELSE p.held_by END, 1 \
             FROM beads p JOIN beads c ON c.parent_id = p.id WHERE p.id = ANY($1) \
           UNION ALL \
           SELECT c.id, CASE WHEN {HOLDS} THEN p.id ELSE t.held END, t.depth + 1 \
             FROM tree t JOIN beads p ON p.id = t.id JOIN beads c ON c.parent_id = p.id \
            WHERE t.depth < 1000) \
         UPDATE beads SET held_by = fresh.held \
           FROM (SELECT DISTINCT ON (id) id, held FROM tree ORDER BY id, depth DESC) fresh \
         WHERE beads.id = fresh.id AND beads.held_by IS DISTINCT FROM fresh.held"
    ))
    .bind::<Array<Text>, _>(roots)
    .execute(conn)
    .await?;
    Ok(())
}

/// Walks the wait-for graph from `starts` and returns which of `targets` it reaches, and
/// how. A bead reached "closing" must close first: its blockers must close, its children
/// must close, and its parent must stop holding. A bead reached not closing must only stop
/// holding: its blockers must close and its parent must stop holding. A new link makes a
/// deadlock exactly when the beads it makes wait are reached from what they now wait on.
async fn waits_reach(
    conn: &mut Conn,
    starts: &[(String, bool)],
    targets: &[String],
) -> Result<Vec<(String, bool)>> {
    #[derive(QueryableByName)]
    struct Hit {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Bool)]
        closing: bool,
    }
    if starts.is_empty() || targets.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, modes): (Vec<String>, Vec<bool>) = starts.iter().cloned().unzip();
    let hits: Vec<Hit> = diesel::sql_query(
        "WITH RECURSIVE reach(id, closing) AS ( \
           SELECT * FROM unnest($1::text[], $2::bool[]) \
           UNION \
           SELECT n.id, n.closing FROM reach r CROSS JOIN LATERAL ( \
               SELECT d.depends_on, true FROM bead_dependencies d \
                WHERE d.bead_id = r.id AND d.kind = 'blocks' \
               UNION ALL \
               SELECT c.id, true FROM beads c WHERE r.closing AND c.parent_id = r.id \
               UNION ALL \
               SELECT b.parent_id, false FROM beads b WHERE b.id = r.id AND b.parent_id IS NOT NULL \
           ) AS n(id, closing)) \
         SELECT DISTINCT id, closing FROM reach WHERE id = ANY($3)",
    )
    .bind::<Array<Text>, _>(ids)
    .bind::<Array<Bool>, _>(modes)
    .bind::<Array<Text>, _>(targets)
    .load(conn)
    .await?;
    Ok(hits.into_iter().map(|h| (h.id, h.closing)).collect())
}

/// Refuses filing a child of `parent` that waits on `depends_on`, when one of those can
/// only close after the parent does (the parent waits for its children).
pub(super) async fn check_new_child(
    conn: &mut Conn,
    parent: &str,
    depends_on: &[String],
) -> Result<()> {
    let mut starts: Vec<(String, bool)> = depends_on.iter().map(|d| (d.clone(), true)).collect();
    starts.push((parent.to_owned(), false));
    let hits = waits_reach(conn, &starts, &[parent.to_owned()]).await?;
    if hits.iter().any(|(_, closing)| *closing) {
        return Err(Error::conflict(
            "dependency_cycle",
            format!(
                "a child of {parent} cannot wait on something that waits for {parent} to close"
            ),
        ));
    }
    Ok(())
}

/// The chain of `blocks` edges from `from` to `to`, if there is one, for the error message
/// (runs only once a refusal is certain). Each bead is reached once; its predecessor gives
/// the way back.
async fn blocks_path(conn: &mut Conn, from: &str, to: &str) -> Result<Option<Vec<String>>> {
    #[derive(QueryableByName)]
    struct Step {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Nullable<Text>)]
        pred: Option<String>,
    }
    let steps: Vec<Step> = diesel::sql_query(
        "WITH RECURSIVE reach(id, pred) AS ( \
           SELECT $1::text, NULL::text \
           UNION \
           SELECT d.depends_on, r.id FROM reach r \
             JOIN bead_dependencies d ON d.bead_id = r.id AND d.kind = 'blocks') \
         SELECT id, pred FROM reach",
    )
    .bind::<Text, _>(from)
    .load(conn)
    .await?;
    let pred: std::collections::HashMap<&str, &str> =
        steps.iter().filter_map(|s| s.pred.as_deref().map(|p| (s.id.as_str(), p))).collect();
    if !steps.iter().any(|s| s.id == to) {
        return Ok(None);
    }
    let mut path = vec![to.to_owned()];
    let mut at = to;
    while at != from && path.len() <= steps.len() {
        let Some(p) = pred.get(at) else { break };
        path.push((*p).to_owned());
        at = p;
    }
    path.reverse();
    Ok(Some(path))
}

/// The ancestors of a bead, nearest first.
pub(super) async fn ancestors(conn: &mut Conn, id: &str) -> Result<Vec<String>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "WITH RECURSIVE up(id, depth) AS ( \
           SELECT parent_id, 1 FROM beads WHERE id = $1 AND parent_id IS NOT NULL \
           UNION ALL \
           SELECT b.parent_id, u.depth + 1 FROM up u JOIN beads b ON b.id = u.id \
            WHERE b.parent_id IS NOT NULL AND u.depth < 1000) \
         SELECT id FROM up ORDER BY depth",
    )
    .bind::<Text, _>(id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

fn cycle_error(path: &[String]) -> Error {
    Error::conflict("dependency_cycle", format!("this would make a cycle: {}", path.join(" -> ")))
}

impl Bead {
    /// Adds a dependency; returns true when it was new.
    pub async fn add_dependency(
        conn: &mut Conn,
        id: &str,
        dep: Dependency,
        actor: Actor,
    ) -> Result<bool> {
        if dep.depends_on == id {
            return Err(Error::invalid("self_dependency", "a bead cannot depend on itself"));
        }
        let id = id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            let bead = Bead::lock(conn, &id).await?;
            let (_, target_status) =
                lock_existing(conn, std::slice::from_ref(&dep.depends_on)).await?.remove(0);
            let added = match dep.kind.edge() {
                None => set_parent(conn, &bead, &dep.depends_on, target_status).await?,
                Some(kind) => add_edge(conn, &bead, &dep.depends_on, kind).await?,
            };
            if added {
                record_edge(conn, &bead, &dep, Kind::DependencyAdded, actor).await?;
            }
            Ok(added)
        })
        .await
    }

    /// Removes a dependency; "not found" when there is no such edge.
    pub async fn remove_dependency(
        conn: &mut Conn,
        id: &str,
        dep: Dependency,
        actor: Actor,
    ) -> Result<()> {
        let id = id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            let bead = Bead::lock(conn, &id).await?;
            match dep.kind.edge() {
                None => {
                    if bead.parent_id.as_deref() != Some(dep.depends_on.as_str()) {
                        return Err(Error::not_found(format!(
                            "dependency of {id} on {}",
                            dep.depends_on
                        )));
                    }
                    diesel::update(beads::table.find(&id))
                        .set((
                            beads::parent_id.eq(None::<String>),
                            beads::held_by.eq(None::<String>),
                        ))
                        .execute(conn)
                        .await?;
                    refresh_holds(conn, std::slice::from_ref(&id)).await?;
                    // The epic may have just lost its last open child.
                    super::status::close_finished_epic(conn, Some(&dep.depends_on)).await?;
                }
                Some(kind) => {
                    let n = diesel::delete(
                        bead_dependencies::table
                            .filter(bead_dependencies::bead_id.eq(&id))
                            .filter(bead_dependencies::depends_on.eq(&dep.depends_on))
                            .filter(bead_dependencies::kind.eq(kind)),
                    )
                    .execute(conn)
                    .await?;
                    if n == 0 {
                        return Err(Error::not_found(format!(
                            "dependency of {id} on {}",
                            dep.depends_on
                        )));
                    }
                    if kind == EdgeKind::Blocks {
                        recount_blockers(conn, std::slice::from_ref(&id)).await?;
                    }
                }
            }
            record_edge(conn, &bead, &dep, Kind::DependencyRemoved, actor).await
        })
        .await
    }
}

async fn add_edge(conn: &mut Conn, bead: &Bead, target: &str, kind: EdgeKind) -> Result<bool> {
    if kind == EdgeKind::Blocks {
        let hits =
            waits_reach(conn, &[(target.to_owned(), true)], std::slice::from_ref(&bead.id)).await?;
        if !hits.is_empty() {
            return Err(match blocks_path(conn, target, &bead.id).await? {
                Some(mut path) => {
                    path.insert(0, bead.id.clone());
                    cycle_error(&path)
                }
                None => Error::conflict(
                    "dependency_cycle",
                    format!(
                        "{target} cannot close before {} does (through parent/child links), \
                         so {} cannot wait on it",
                        bead.id, bead.id
                    ),
                ),
            });
        }
    }
    let inserted = diesel::insert_into(bead_dependencies::table)
        .values((
            bead_dependencies::bead_id.eq(&bead.id),
            bead_dependencies::depends_on.eq(target),
            bead_dependencies::kind.eq(kind),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted > 0 && kind == EdgeKind::Blocks {
        recount_blockers(conn, std::slice::from_ref(&bead.id)).await?;
    }
    Ok(inserted > 0)
}

async fn set_parent(
    conn: &mut Conn,
    bead: &Bead,
    parent_id: &str,
    parent_status: BeadStatus,
) -> Result<bool> {
    if bead.parent_id.as_deref() == Some(parent_id) {
        return Ok(false);
    }
    if let Some(existing) = &bead.parent_id {
        return Err(Error::conflict(
            "already_has_parent",
            format!("{} is already a child of {existing}; remove that first", bead.id),
        ));
    }
    let parent = Bead::get(conn, parent_id).await?;
    if parent.project_id != bead.project_id {
        return Err(Error::invalid(
            "cross_project_parent",
            "a bead's parent must be in the same project",
        ));
    }
    if parent_status == BeadStatus::Closed && bead.status != BeadStatus::Closed {
        return Err(Error::conflict("parent_closed", format!("{parent_id} is closed")));
    }
    let mut up = ancestors(conn, parent_id).await?;
    if let Some(pos) = up.iter().position(|a| a == &bead.id) {
        up.truncate(pos + 1);
        let mut path = vec![bead.id.clone(), parent_id.to_owned()];
        path.extend(up);
        return Err(cycle_error(&path));
    }
    diesel::update(beads::table.find(&bead.id))
        .set((beads::parent_id.eq(parent_id), beads::held_by.eq(hold_from_parent(&parent))))
        .execute(conn)
        .await?;
    // With the link in place (the transaction rolls it back on refusal): the parent now
    // waits for the child to close, and the child for the parent to stop holding.
    let blockers: Vec<String> = bead_dependencies::table
        .filter(bead_dependencies::bead_id.eq(&bead.id))
        .filter(bead_dependencies::kind.eq(EdgeKind::Blocks))
        .select(bead_dependencies::depends_on)
        .load(conn)
        .await?;
    let children: Vec<String> =
        beads::table.filter(beads::parent_id.eq(&bead.id)).select(beads::id).load(conn).await?;
    let mut starts: Vec<(String, bool)> =
        blockers.into_iter().chain(children).map(|id| (id, true)).collect();
    starts.push((parent_id.to_owned(), false));
    let hits = waits_reach(conn, &starts, &[bead.id.clone(), parent_id.to_owned()]).await?;
    if hits.iter().any(|(_, closing)| *closing) {
        return Err(Error::conflict(
            "dependency_cycle",
            format!("{parent_id} waits on {} already; it cannot also be its parent", bead.id),
        ));
    }
    refresh_holds(conn, std::slice::from_ref(&bead.id)).await?;
    Ok(true)
}

async fn record_edge(
    conn: &mut Conn,
    bead: &Bead,
    dep: &Dependency,
    kind: Kind,
    actor: Actor,
) -> Result<()> {
    Activity::record(
        conn,
        Record {
            kind,
            project_id: Some(&bead.project_id),
            bead_id: Some(&bead.id),
            actor,
            data: serde_json::json!({ "depends_on": dep.depends_on, "kind": dep.kind }),
        },
    )
    .await?;
    Ok(())
}
