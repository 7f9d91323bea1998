//! What every benchmark shares: where its databases live and how its numbers reach
//! docs/PERFORMANCE.md.
#![allow(dead_code, clippy::unwrap_used)] // each benchmark uses a different part

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The server each benchmark creates and drops its own databases on.
pub fn server_url() -> String {
    std::env::var("LOOM_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn url_for(db: &str) -> String {
    loom::db::database_url(&server_url(), db)
}

/// A fresh database `db` (dropped first if a run left it), migrated, with a pool on it.
pub async fn fresh_pool(db: &str) -> loom::db::Pool {
    drop_database(db).await;
    let mut admin = AsyncPgConnection::establish(&server_url()).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let url = url_for(db);
    loom::db::migrate(&url).await.unwrap();
    loom::db::connect(&url, &loom::config::DbConfig::default()).await.unwrap()
}

pub async fn drop_database(db: &str) {
    let mut admin = AsyncPgConnection::establish(&server_url()).await.unwrap();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
}

/// Replaces the section between `<!-- bench:<name>:start -->` and its end marker in
/// docs/PERFORMANCE.md with `table` and the time it was measured, or appends one.
pub fn write_doc(name: &str, table: &str) {
    let path = "docs/PERFORMANCE.md";
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let section = format!("{start}\nMeasured {stamp} (release build):\n\n{table}{end}");
    let new = match (doc.find(&start), doc.find(&end)) {
        (Some(s), Some(e)) => format!("{}{section}{}", &doc[..s], &doc[e + end.len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(path, new).unwrap();
}

/// `projects` projects (`p0`, `p1`, ...); beads spread over them with a realistic mix: ~55%
/// closed, 25% open, 8% blocked, 5% deferred, 7% in progress; 4% epics (open) owning ~10% of
/// beads as children; ~40% of beads wait on one earlier bead of their project and ~15% on a
/// second.
pub async fn load(conn: &mut AsyncPgConnection, size: i64, projects: i64) {
    let p = projects;
    let sql = format!(
        "INSERT INTO projects (id, name, repo, prefix) \
           SELECT 'p' || g, 'Project ' || g, '/tmp/p' || g, 'p' || g FROM generate_series(0, {p} - 1) g;
         INSERT INTO beads (id, project_id, title, bead_type, priority, status, blocked_reason, \
                            labels, created_at, closed_at)
           SELECT 'p' || (i % {p}) || '-' || lpad(to_hex(i), 6, '0'), 'p' || (i % {p}),
                  'bead number ' || i,
                  (CASE WHEN (i / 10) % 25 = 0 THEN 'epic' WHEN i % 7 = 0 THEN 'bug' ELSE 'task' END)::bead_type,
                  (hashint4(i) & 2147483647) % 5,
                  s.status::bead_status,
                  CASE WHEN s.status = 'blocked' THEN 'needs_human'::blocked_reason END,
                  CASE WHEN i % 3 = 0 THEN ARRAY['backend'] WHEN i % 3 = 1 THEN ARRAY['ui', 'web'] ELSE '{{}}' END,
                  now() - make_interval(secs => {size} - i),
                  CASE WHEN s.status = 'closed' THEN now() END
           FROM generate_series(1, {size}) i,
           LATERAL (SELECT CASE
                WHEN r < 55 THEN 'closed' WHEN r < 80 THEN 'open' WHEN r < 88 THEN 'blocked'
                WHEN r < 93 THEN 'deferred' ELSE 'in_progress' END AS status
              FROM (SELECT CASE WHEN (i / 10) % 25 = 0 THEN 60 ELSE (hashint4(i + 7) & 2147483647) % 100 END AS r) x) s;
         UPDATE beads c SET parent_id = p.id
           FROM generate_series(1, {size}) i
           JOIN beads p ON p.id = 'p' || (i % {p}) || '-' || lpad(to_hex(250 * (i / 250) + i % {p}), 6, '0')
          WHERE (i / 10) % 10 = 3 AND (i / 10) % 25 <> 0
            AND c.id = 'p' || (i % {p}) || '-' || lpad(to_hex(i), 6, '0');
         INSERT INTO bead_dependencies (bead_id, depends_on, kind)
           SELECT 'p' || (i % {p}) || '-' || lpad(to_hex(i), 6, '0'),
                  'p' || (i % {p}) || '-' || lpad(to_hex(i - {p} * (1 + (hashint4(i + k) & 2147483647) % 50)), 6, '0'),
                  'blocks'
           FROM generate_series(501, {size}) i, generate_series(1, 2) k
           WHERE (hashint4(i + 13) & 2147483647) % 100 < (CASE k WHEN 1 THEN 40 ELSE 15 END)
           ON CONFLICT DO NOTHING;
         UPDATE beads b SET open_blockers = c.n FROM (
           SELECT d.bead_id, count(*)::int AS n FROM bead_dependencies d JOIN beads x ON x.id = d.depends_on
            WHERE d.kind = 'blocks' AND x.status <> 'closed' GROUP BY d.bead_id) c
          WHERE b.id = c.bead_id;
         UPDATE beads c SET held_by = p.id FROM beads p
          WHERE c.parent_id = p.id AND (p.status IN ('blocked', 'deferred') OR (p.status <> 'closed' AND p.open_blockers > 0));"
    );
    conn.batch_execute(&sql).await.unwrap();
    conn.batch_execute("VACUUM ANALYZE").await.unwrap();
}
