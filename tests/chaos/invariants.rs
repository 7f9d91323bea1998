//! What must hold once the dust settles, read from the database and from each project's
//! upstream history. Each check returns what breaks it, so one failing run reports every
//! broken invariant at once with the rows that break it.

use std::collections::BTreeMap;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::world::{World, file_of};

/// One row of a check's query, rendered as text by the query itself.
#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// A fresh connection: the server may have restarted since the last one.
pub async fn connect(url: &str) -> Option<AsyncPgConnection> {
    AsyncPgConnection::establish(url).await.ok()
}

/// Runs `sql`, which selects one text column `line`; each row is a finding.
pub async fn lines(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<Line>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|l| l.line)
        .collect()
}

/// The database's invariants, each a query that finds the rows breaking it.
const CHECKS: &[(&str, &str)] = &[
    (
        "every bead is closed",
        "SELECT id || ' is ' || status::text || coalesce(' (' || blocked_reason::text || ')', '') AS line
           FROM beads WHERE status <> 'closed'",
    ),
    (
        "every bead was closed exactly once",
        "SELECT b.id || ' closed ' || count(a.id) || ' times' AS line
           FROM beads b LEFT JOIN activity a ON a.bead_id = b.id AND a.kind = 'bead.closed'
          GROUP BY b.id HAVING count(a.id) <> 1",
    ),
    (
        "every bead has exactly one successful run",
        "SELECT b.id || ' has ' || count(r.id) || ' successful runs' AS line
           FROM beads b LEFT JOIN runs r ON r.bead_id = b.id AND r.outcome = 'success'
          GROUP BY b.id HAVING count(r.id) <> 1",
    ),
    (
        "no bead was ever held by two runs at once",
        "SELECT a.bead_id || ': run ' || a.id || ' [' || a.started_at || ', ' || coalesce(a.ended_at::text, 'open')
                || ') overlaps run ' || b.id || ' [' || b.started_at || ', ' || coalesce(b.ended_at::text, 'open') || ')' AS line
           FROM runs a JOIN runs b ON a.bead_id = b.bead_id AND a.id < b.id
          WHERE a.started_at < coalesce(b.ended_at, 'infinity') AND b.started_at < coalesce(a.ended_at, 'infinity')",
    ),
    (
        "no agent ever held two beads at once",
        "SELECT 'agent ' || a.agent_id || ': ' || a.bead_id || ' and ' || b.bead_id AS line
           FROM runs a JOIN runs b ON a.agent_id = b.agent_id AND a.id < b.id
          WHERE a.started_at < coalesce(b.ended_at, 'infinity') AND b.started_at < coalesce(a.ended_at, 'infinity')",
    ),
    (
        "no run started before every blocker of its bead had closed",
        "SELECT d.bead_id || ': run ' || r.id || ' started ' || r.started_at || ', blocker ' || d.depends_on
                || ' closed ' || coalesce(x.closed_at::text, 'never') AS line
           FROM bead_dependencies d JOIN runs r ON r.bead_id = d.bead_id JOIN beads x ON x.id = d.depends_on
          WHERE d.kind = 'blocks' AND (x.closed_at IS NULL OR r.started_at < x.closed_at)",
    ),
    (
        "every run ended",
        "SELECT 'run ' || id || ' of ' || bead_id || ' (worker ' || coalesce(worker::text, 'none') || ')' AS line
           FROM runs WHERE ended_at IS NULL OR outcome IS NULL",
    ),
    (
        "no bead was merged twice by Loom",
        "SELECT bead_id || ' merged ' || count(*) || ' times' AS line
           FROM activity WHERE kind = 'git.merged' GROUP BY bead_id HAVING count(*) > 1",
    ),
    (
        "every bead landed through a green check of the merged tree",
        "SELECT b.id AS line FROM beads b WHERE NOT EXISTS (SELECT 1 FROM checks c
          WHERE b.id = ANY(c.beads) AND c.outcome = 'green' AND c.command IS NOT NULL)",
    ),
    (
        "no check was left running",
        "SELECT 'check ' || id || ' of ' || array_to_string(beads, ',') AS line
           FROM checks WHERE outcome IS NULL",
    ),
    (
        "no agent is left working",
        "SELECT name || ' is ' || status::text AS line FROM agents WHERE status <> 'idle'",
    ),
];

/// Every broken invariant: its name and the rows (or commits) that break it.
pub async fn broken(conn: &mut AsyncPgConnection, world: &World) -> BTreeMap<String, Vec<String>> {
    let mut found = BTreeMap::new();
    for (name, sql) in CHECKS {
        let rows = lines(conn, sql).await;
        if !rows.is_empty() {
            found.insert((*name).to_owned(), rows);
        }
    }
    let edges = filed_edges(conn, world).await;
    if !edges.is_empty() {
        found.insert("the filed dependencies are the stored ones".to_owned(), edges);
    }
    let history = merged_once(world);
    if !history.is_empty() {
        found.insert("each project's history holds each bead's work once".to_owned(), history);
    }
    found
}

/// The dependency check means something only if the edges the test filed are there.
async fn filed_edges(conn: &mut AsyncPgConnection, world: &World) -> Vec<String> {
    let mut filed: Vec<String> = world
        .beads
        .iter()
        .flat_map(|b| b.blockers.iter().map(move |on| format!("{} on {on}", b.id)))
        .collect();
    filed.sort();
    let stored = lines(
        conn,
        "SELECT bead_id || ' on ' || depends_on AS line FROM bead_dependencies
          WHERE kind = 'blocks' ORDER BY 1",
    )
    .await;
    if filed == stored {
        return Vec::new();
    }
    vec![format!("filed {} edges, stored {}", filed.len(), stored.len())]
}

/// Upstream's `main` of each project, as a person fetching it sees it: each of the
/// project's beads has exactly one commit with its `Bead:` trailer, at most one merge of
/// its branch, and its file.
fn merged_once(world: &World) -> Vec<String> {
    let mut problems = Vec::new();
    for project in &world.projects {
        let log = project.upstream.git(&[
            "log",
            "main",
            "--format=%s%x1f%(trailers:key=Bead,valueonly,separator=%x2C)",
        ]);
        let mut commits: BTreeMap<&str, usize> = BTreeMap::new();
        let mut merges: BTreeMap<&str, usize> = BTreeMap::new();
        for line in log.lines() {
            let (subject, beads) = line.split_once('\u{1f}').unwrap_or((line, ""));
            for bead in beads.split(',').map(str::trim).filter(|b| !b.is_empty()) {
                *commits.entry(bead).or_default() += 1;
            }
            if let Some(branch) = subject.strip_prefix("Merge loom/") {
                *merges.entry(branch.split(' ').next().unwrap_or("")).or_default() += 1;
            }
        }
        let files = project.upstream.git(&["ls-tree", "--name-only", "main"]);
        for bead in world.beads.iter().filter(|b| b.project == project.id) {
            let id = bead.id.as_str();
            match commits.get(id).copied().unwrap_or(0) {
                1 => {}
                n => problems.push(format!("{}: {n} commits with `Bead: {id}`", project.id)),
            }
            if merges.get(id).copied().unwrap_or(0) > 1 {
                problems.push(format!("{}: loom/{id} merged {} times", project.id, merges[id]));
            }
            if !files.lines().any(|f| f == file_of(id)) {
                problems.push(format!("{}: {} is missing", project.id, file_of(id)));
            }
        }
    }
    problems
}
