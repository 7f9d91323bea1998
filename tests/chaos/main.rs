//! Chaos and soak: two `loom serve` replicas on a private Postgres, a private NATS and a
//! scripted gateway work a few hundred beads with dependencies while replicas are killed
//! outright, NATS drops, Postgres crashes and the gateway fails; then everything a crash
//! could break is checked: each bead closed once, never held twice, never before its
//! blockers, merged once into its project's history, and no run left open.
//!
//! The default is the short form `.ci/run` runs; `LOOM_CHAOS_*` variables size the long
//! form (docs/TESTING.md).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location (as in tests/api)

#[path = "../api/support/mod.rs"]
#[allow(dead_code)] // the API tests' support; this binary uses a few parts of it
mod support;

mod faults;
mod fleet;
mod invariants;
mod postgres;
mod world;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet::Fleet;
use postgres::PrivatePostgres;
use support::gateway::ScriptedGateway;
use support::replica::PrivateNats;
use world::{Api, Rng, World};

/// How much work and how much chaos, from `LOOM_CHAOS_*` (defaults: the short form).
struct Size {
    beads: usize,
    projects: usize,
    agents: usize,
    /// How long faults are injected (they stop early once every bead is closed).
    faults: Duration,
    /// How long after the faults every bead must be closed.
    settle: Duration,
    seed: u64,
}

impl Size {
    fn from_env() -> Size {
        let var = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        Size {
            beads: var("LOOM_CHAOS_BEADS", 200) as usize,
            projects: var("LOOM_CHAOS_PROJECTS", 3).max(1) as usize,
            agents: var("LOOM_CHAOS_AGENTS", 8).max(1) as usize,
            faults: Duration::from_secs(var("LOOM_CHAOS_SECONDS", 60)),
            settle: Duration::from_secs(var("LOOM_CHAOS_SETTLE_SECONDS", 300)),
            seed: var("LOOM_CHAOS_SEED", 0x5eed_c4a05).max(1),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_crashes_and_outages_every_bead_is_closed_once_and_merged_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let size = Size::from_env();
    let mut rng = Rng(size.seed);
    let root = tempfile::Builder::new().prefix("loom-chaos-").tempdir().expect("a tempdir");
    // The server runs as `postgres` when the test runs as root: it must reach its dirs.
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let postgres = PrivatePostgres::start(root.path()).await;
    let url = postgres.url();
    loom::db::migrate(&url).await.expect("migrate");
    let token = world::admin_token(&url).await;
    let mut nats = PrivateNats::start().await;
    let gateway = ScriptedGateway::start().await;
    gateway.require_key(support::work::KEY);
    gateway.respond_with(world::reply_to);
    let env = fleet::environment(&nats.url, &gateway.url(), support::work::KEY);
    let mut fleet = Fleet::start(root.path(), &url, env, 2).await;

    let started = Instant::now();
    let api = Api::new(fleet.base(0), &token);
    let world = World::file(&api, size.projects, size.agents, size.beads, &mut rng).await;
    let mut targets = faults::Targets {
        fleet: &mut fleet,
        nats: &mut nats,
        postgres: &postgres,
        gateway: &gateway,
        upstreams: world.projects.iter().map(|p| p.upstream.path()).collect(),
    };
    let injected =
        faults::inject(&mut targets, size.faults, &mut rng, async || open_beads(&url).await == 0)
            .await;
    let settled = settle(&mut fleet, &url, size.settle).await;

    let mut conn = invariants::connect(&url).await.expect("the database is up");
    let mut broken = invariants::broken(&mut conn, &world).await;
    if !fleet.unexpected_exits.is_empty() {
        broken.insert("no replica exits by itself".into(), fleet.unexpected_exits.clone());
    }
    let summary = summary(&mut conn, &injected, started.elapsed()).await;
    eprintln!("{summary}");
    if !broken.is_empty() || !settled {
        let report = report(&mut conn, &fleet, &broken).await;
        let kept = root.keep();
        panic!(
            "{}\n{summary}\n{report}\nthe replicas' logs and data are kept in {}",
            if settled { "invariants broken" } else { "the work never settled" },
            kept.display()
        );
    }
    fleet.stop().await;
}

/// Beads not closed yet; `usize::MAX` while the database cannot be reached.
async fn open_beads(url: &str) -> usize {
    let Some(mut conn) = invariants::connect(url).await else { return usize::MAX };
    let sql = "SELECT id AS line FROM beads WHERE status <> 'closed'";
    match diesel_async::RunQueryDsl::load::<Row>(diesel::sql_query(sql), &mut conn).await {
        Ok(rows) => rows.len(),
        Err(_) => usize::MAX,
    }
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[expect(dead_code, reason = "counted, not read")]
    line: String,
}

/// Waits until every bead is closed and no run is open, replacing any replica that fell
/// over meanwhile; false when `within` passes first.
async fn settle(fleet: &mut Fleet, url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        fleet.revive_the_fallen().await;
        if open_beads(url).await == 0 && open_runs(url).await == Some(0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

async fn open_runs(url: &str) -> Option<usize> {
    let mut conn = invariants::connect(url).await?;
    let sql = "SELECT id::text AS line FROM runs WHERE ended_at IS NULL";
    diesel_async::RunQueryDsl::load::<Row>(diesel::sql_query(sql), &mut conn)
        .await
        .ok()
        .map(|r| r.len())
}

/// What happened: faults injected, how runs ended, how long it all took.
async fn summary(
    conn: &mut diesel_async::AsyncPgConnection,
    injected: &BTreeMap<faults::Fault, u32>,
    took: Duration,
) -> String {
    let outcomes = invariants::lines(
        conn,
        "SELECT coalesce(outcome::text, 'open') || ': ' || count(*) || ' runs, ' || sum(resumes) || ' resumes' AS line
           FROM runs GROUP BY outcome ORDER BY outcome",
    )
    .await;
    let beads = invariants::lines(
        conn,
        "SELECT count(*) || ' beads, ' || count(*) FILTER (WHERE status = 'closed') || ' closed, '
                || sum(attempts) || ' attempts charged, at most ' || max(attempts) || ' on one' AS line FROM beads",
    )
    .await;
    format!(
        "chaos: {} in {took:.0?}; faults {injected:?}; runs: {}",
        beads.join(""),
        outcomes.join("; ")
    )
}

/// Why: the broken invariants, the beads not closed with their last run, and every error
/// the replicas logged.
async fn report(
    conn: &mut diesel_async::AsyncPgConnection,
    fleet: &Fleet,
    broken: &BTreeMap<String, Vec<String>>,
) -> String {
    let mut out = String::new();
    for (name, rows) in broken {
        out += &format!("\nbroken: {name} ({} rows)\n", rows.len());
        for row in rows.iter().take(40) {
            out += &format!("  {row}\n");
        }
    }
    let stuck = invariants::lines(
        conn,
        "SELECT b.id || ' ' || b.status::text || coalesce('/' || b.blocked_reason::text, '')
                || ' attempts=' || b.attempts || ' open_blockers=' || b.open_blockers
                || coalesce(' held_by=' || b.held_by, '') || coalesce(' not_before=' || b.not_before, '')
                || coalesce(' lease=' || b.lease_expires_at, '') || coalesce(' last_error=' || b.last_error, '')
                || coalesce(' | last run ' || r.id || ' ' || coalesce(r.outcome::text, 'open')
                            || ' worker=' || coalesce(r.worker::text, 'none') || ' resumes=' || r.resumes
                            || coalesce(' error=' || r.error, ''), '') AS line
           FROM beads b LEFT JOIN LATERAL (SELECT * FROM runs WHERE bead_id = b.id ORDER BY started_at DESC LIMIT 1) r ON true
          WHERE b.status <> 'closed' ORDER BY b.id LIMIT 60",
    )
    .await;
    out += &format!("\nbeads not closed ({} shown):\n  {}\n", stuck.len(), stuck.join("\n  "));
    let errors = fleet.errors();
    out += &format!("\nERROR lines in the replicas' logs ({}):\n", errors.len());
    for line in errors.iter().take(60) {
        out += &format!("  {line}\n");
    }
    out
}
