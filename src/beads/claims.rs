//! Claims, leases and the end of a run: the transactions that move a bead between `open`
//! and `in_progress`, and what each run outcome does to the bead afterwards.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::graph::{lock_graph, refresh_holds};
use super::model::Bead;
use super::runs::{Run, RunKind, RunOutcome};
use super::status;
use super::types::{BeadStatus, BlockedReason, EdgeKind};
use crate::activity::{Activity, Actor, Record};
use crate::agents::AgentStatus;
use crate::db::schema::{agents, bead_dependencies, beads, projects, runs};
use crate::db::{Conn, Prepared};
use crate::error::{Error, Result};
use crate::events::Kind;

/// A bead held by an agent under a lease, with the run that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub run_id: Uuid,
    pub bead_id: String,
    pub agent_id: Uuid,
    pub attempt: i32,
    pub lease_expires_at: DateTime<Utc>,
}

/// How long a failed bead waits before it is ready again: `base * 2^(attempts-1)`, at most
/// `cap`; and a parked one before the ticker reopens it: `park_base * 2^(parks-1)`, at most
/// `PARK_CAP`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// `LOOM_PARK_BACKOFF_SECONDS`.
    pub park_base: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
            park_base: Duration::from_secs(30),
        }
    }
}

/// No park waits longer than this for the ticker to try the bead again.
pub const PARK_CAP: Duration = Duration::from_secs(30 * 60);

impl RetryPolicy {
    pub fn delay(&self, attempts: i32) -> Duration {
        let exp = attempts.clamp(1, 20) as u32 - 1;
        self.base.saturating_mul(2u32.saturating_pow(exp)).min(self.cap)
    }

    /// How long a bead parked for the gateway for the `parks`-th time waits before the
    /// ticker reopens it: `park_base` doubled with each park, at most `PARK_CAP`. A
    /// gateway that answers the probe but fails this bead's calls is not asked again and
    /// again every tick.
    pub fn park_delay(&self, parks: i64) -> Duration {
        let exp = parks.clamp(1, 20) as u32 - 1;
        self.park_base.saturating_mul(2u32.saturating_pow(exp)).min(PARK_CAP)
    }
}

pub(crate) fn lease_end(lease: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60))
}

/// What a run's end did to its bead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AfterRun {
    Closed,
    /// Back to open, ready again after the back-off.
    Retry {
        attempts: i32,
    },
    Blocked(BlockedReason),
    /// The bead had been changed by someone else meanwhile; only the run was recorded.
    Untouched,
    /// Its work waits in `review` or in the landing queue (`landing`).
    Finished(BeadStatus),
}

/// Where a bead goes when its agent is done: its committed work, and whether the project
/// wants a review before it lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The commit the agent finished on (the tip of `loom/<bead-id>`).
    pub sha: String,
    /// Who reviews it before it lands, if anyone (the project's `review`).
    pub review: crate::projects::Review,
}

/// The readiness rules of DESIGN.md on `beads`' own columns: the `beads_ready*` partial
/// index predicate plus the retry back-off.
const READY: &str = "status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 \
                     AND held_by IS NULL AND paired_in IS NULL \
                     AND (not_before IS NULL OR not_before <= now())";

/// Claims every (bead, agent, run id) pair whose bead is still ready and whose agent is still
/// idle, in one statement. Rows another transaction holds are skipped, not waited for, so
/// competing dispatchers never queue on each other (and a statement that waits for nothing
/// cannot deadlock). The run's `started_at` is the statement's start, which follows every
/// close this statement's snapshot saw.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH want AS (SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS w(bead, agent, run)), \
         bead AS MATERIALIZED (SELECT id, project_id, attempts, \
             extract(epoch FROM statement_timestamp() - GREATEST(updated_at, not_before, \
               (SELECT max(x.closed_at) FROM bead_dependencies d JOIN beads x ON x.id = d.depends_on \
                 WHERE d.bead_id = beads.id AND d.kind = 'blocks')))::float8 AS waited \
           FROM beads WHERE id = ANY($1) AND {READY} FOR UPDATE SKIP LOCKED), \
         agent AS MATERIALIZED (SELECT id FROM agents WHERE id = ANY($2) AND status = 'idle' \
           FOR UPDATE SKIP LOCKED), \
         won AS MATERIALIZED (SELECT w.bead, w.agent, w.run, b.project_id, b.attempts + 1 AS attempt, b.waited \
           FROM want w JOIN bead b ON b.id = w.bead JOIN agent a ON a.id = w.agent), \
         claimed AS (UPDATE beads SET status = 'in_progress', assignee_agent_id = won.agent, \
             lease_expires_at = $4, version = beads.version + 1, updated_at = statement_timestamp() \
           FROM won WHERE beads.id = won.bead), \
         busy AS (UPDATE agents SET status = 'working', last_heartbeat_at = statement_timestamp(), \
             updated_at = statement_timestamp() FROM won WHERE agents.id = won.agent), \
         opened AS (INSERT INTO runs (id, bead_id, agent_id, attempt, started_at) \
           SELECT run, bead, agent, attempt, statement_timestamp() FROM won), \
         history AS (INSERT INTO activity (kind, project_id, bead_id, actor_agent_id, data) \
           SELECT 'bead.claimed', project_id, bead, agent, \
                  jsonb_build_object('agent', agent, 'run', run, 'attempt', attempt, 'waited_s', round(waited::numeric, 3)) FROM won) \
         SELECT bead, agent, run, attempt FROM won"
    )
});

#[derive(QueryableByName)]
struct Won {
    #[diesel(sql_type = Text)]
    bead: String,
    #[diesel(sql_type = SqlUuid)]
    agent: Uuid,
    #[diesel(sql_type = SqlUuid)]
    run: Uuid,
    #[diesel(sql_type = Integer)]
    attempt: i32,
}

impl Bead {
    /// Claims a bead for an agent, if both are still free: the bead must still be ready and
    /// the agent idle. `None` means someone else was faster.
    pub async fn claim(
        conn: &mut Conn,
        bead_id: &str,
        agent_id: Uuid,
        lease: Duration,
    ) -> Result<Option<Claim>> {
        let pair = [(bead_id.to_owned(), agent_id)];
        Ok(Bead::claim_many(conn, &pair, lease).await?.pop())
    }

    /// Claims each (bead, agent) pair whose bead is still ready and whose agent is still
    /// idle, in one statement: each claim sets the bead `in_progress` under a lease and the
    /// agent `working`, opens a run and writes `bead.claimed`. Pairs someone else took (or
    /// holds locked right now) are left out of the result. A pair list must not name a bead
    /// or an agent twice.
    pub async fn claim_many(
        conn: &mut Conn,
        pairs: &[(String, Uuid)],
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (beads, agents): (Vec<String>, Vec<Uuid>) = pairs.iter().cloned().unzip();
        let runs: Vec<Uuid> = pairs.iter().map(|_| Uuid::now_v7()).collect();
        let until = lease_end(lease);
        let won: Vec<Won> = Prepared(
            diesel::sql_query(CLAIM.as_str())
                .bind::<Array<Text>, _>(beads)
                .bind::<Array<SqlUuid>, _>(agents)
                .bind::<Array<SqlUuid>, _>(runs)
                .bind::<Timestamptz, _>(until),
        )
        .load(conn)
        .await?;
        Ok(won
            .into_iter()
            .map(|w| Claim {
                run_id: w.run,
                bead_id: w.bead,
                agent_id: w.agent,
                attempt: w.attempt,
                lease_expires_at: until,
            })
            .collect())
    }

    /// Extends a live claim's lease; false when the claim is gone (released, expired and
    /// reclaimed, or taken back by a person).
    pub async fn renew_lease(conn: &mut Conn, claim: &Claim, lease: Duration) -> Result<bool> {
        let n = diesel::update(
            beads::table
                .filter(beads::id.eq(&claim.bead_id))
                .filter(beads::status.eq(BeadStatus::InProgress))
                .filter(beads::assignee_agent_id.eq(claim.agent_id))
                // The same agent may hold the bead again under a newer run; a run whose
                // lease expired or was taken back must not keep that claim alive.
                .filter(diesel::dsl::exists(
                    runs::table.filter(runs::id.eq(claim.run_id)).filter(runs::outcome.is_null()),
                )),
        )
        .set(beads::lease_expires_at.eq(lease_end(lease)))
        .execute(conn)
        .await?;
        if n > 0 {
            diesel::update(agents::table.find(claim.agent_id))
                .set(agents::last_heartbeat_at.eq(diesel::dsl::now))
                .execute(conn)
                .await?;
        }
        Ok(n > 0)
    }

    /// Ends a run whose agent is done, in one transaction: the run succeeds with its
    /// summary, the agent is freed, and the bead goes to `review` or to the landing queue
    /// with its commit (not `closed`: that is the queue's, once the work has landed). A bead
    /// with children still open is blocked instead, as `release` does. `None` when the run
    /// had ended already.
    pub async fn finish(
        conn: &mut Conn,
        run_id: Uuid,
        summary: Option<String>,
        finish: Finish,
    ) -> Result<Option<AfterRun>> {
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            end_run(
                conn,
                run_id,
                RunOutcome::Success,
                summary,
                RetryPolicy::default(),
                Some(finish),
            )
            .await
        })
        .await
    }

    /// Ends a run with its outcome, in one transaction: the run is recorded, the agent is
    /// freed and the bead moves on (closed, retried after a back-off, or blocked). `note` is
    /// the run's summary on success (it becomes the bead's close reason) and its error
    /// otherwise. `None` when the run had already ended.
    pub async fn release(
        conn: &mut Conn,
        run_id: Uuid,
        outcome: RunOutcome,
        note: Option<String>,
        retry: RetryPolicy,
    ) -> Result<Option<AfterRun>> {
        let error = note;
        if outcome == RunOutcome::Success
            && let Some(after) = close_unshared(conn, run_id, &error).await?
        {
            return Ok(Some(after));
        }
        conn.transaction::<_, Error, _>(async move |conn| {
            // Closing or blocking changes holds: take the graph lock before any row lock.
            lock_graph(conn).await?;
            if outcome == RunOutcome::Success
                && let Some(after) = close_plain(conn, run_id, &error, Dependents::Recount).await?
            {
                return Ok(Some(after));
            }
            release_in(conn, run_id, outcome, error, retry).await
        })
        .await
    }
}

/// Closes a successful run's bead without the graph lock when nothing else's readiness
/// depends on it: a plain leaf (see `CLOSE_PLAIN`) that no bead waits on. Closing such a
/// bead changes no other bead's `open_blockers` or `held_by`, and so cannot race another
/// graph change over them. What could still race is a change that makes some bead depend on
/// this one meanwhile (a `blocks` edge to it, a bead filed behind it, a child filed or
/// linked under it); every one of those locks this bead's row before it reads its status
/// (`lock_existing`, `claim_child_slot`), and the close reads after holding that same row
/// lock, in a later statement with a fresh snapshot. So either the change committed first
/// and the close sees it (and steps aside for the locked path), or it waits for the close
/// and then sees the bead closed. `None` when the bead does not qualify (nothing is changed
/// then); the locks it took are rolled back before the caller takes the graph lock.
async fn close_unshared(
    conn: &mut Conn,
    run_id: Uuid,
    error: &Option<String>,
) -> Result<Option<AfterRun>> {
    let tried = conn
        .transaction::<_, Error, _>(async |conn| {
            // Run, then bead: the order of every release.
            let waited_on = bead_dependencies::table
                .filter(bead_dependencies::depends_on.eq(beads::id))
                .filter(bead_dependencies::kind.eq(EdgeKind::Blocks));
            let shape: Option<(Option<String>, i32, bool)> = runs::table
                .inner_join(beads::table)
                .filter(runs::id.eq(run_id))
                .filter(runs::outcome.is_null())
                .select((beads::parent_id, beads::open_blockers, diesel::dsl::exists(waited_on)))
                .for_update()
                .first(conn)
                .await
                .optional()?;
            // Only a hint (read before the locks were granted); the close checks again.
            if shape != Some((None, 0, false)) {
                return Err(diesel::result::Error::RollbackTransaction.into());
            }
            match close_plain(conn, run_id, error, Dependents::Refuse).await? {
                Some(after) => Ok(after),
                None => Err(diesel::result::Error::RollbackTransaction.into()),
            }
        })
        .await;
    match tried {
        Ok(after) => Ok(Some(after)),
        Err(Error::Database(diesel::result::Error::RollbackTransaction)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `CLOSE_PLAIN` may close a bead that others wait on (and recount them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dependents {
    /// Under the graph lock: recount them.
    Recount,
    /// Without it: leave such a bead alone.
    Refuse,
}

impl Claim {
    /// Notified (on commit) whenever a run ends and so frees an agent; dispatchers in every
    /// process listen on it.
    pub const WAKE_CHANNEL: &str = "loom_dispatch";
}

/// A successful run on a bead that is a plain leaf of the hierarchy, in one statement: no
/// parent (so no epic to close), no open child, and not holding its subtree (in progress
/// with no open blocker), so closing it moves no `held_by` below it. The run ends, the bead
/// closes, the agent is freed, the beads waiting on it are recounted (the bead itself counts
/// as closed there: the statement's snapshot does not see its own update), both activity
/// rows are written in the order `release_in` writes them, and dispatchers are woken.
/// Returns the recounted dependents that stopped or started holding a subtree that exists.
/// With `$4` true it must run under the graph lock, taken in an earlier statement, so that
/// its snapshot sees every close and edge that committed before; with `$4` false it leaves
/// alone a bead that any other waits on (see `close_unshared`).
const CLOSE_PLAIN: &str = "WITH run AS MATERIALIZED ( \
       SELECT id, bead_id, agent_id, attempt, started_at FROM runs WHERE id = $1 AND outcome IS NULL FOR UPDATE), \
     bead AS MATERIALIZED ( \
       SELECT b.id, b.project_id, run.agent_id, run.attempt, run.started_at FROM beads b JOIN run ON b.id = run.bead_id \
        WHERE b.id = (SELECT bead_id FROM run) AND b.status = 'in_progress' AND b.assignee_agent_id = run.agent_id \
          AND b.parent_id IS NULL AND b.open_blockers = 0 \
          AND NOT EXISTS (SELECT 1 FROM beads c WHERE c.parent_id = b.id AND c.status <> 'closed') \
          AND ($4 OR NOT EXISTS (SELECT 1 FROM bead_dependencies w \
                                  WHERE w.depends_on = b.id AND w.kind = 'blocks')) \
        FOR UPDATE OF b), \
     ended AS (UPDATE runs SET ended_at = now(), outcome = 'success', summary = $2 \
        FROM bead WHERE runs.id = $1), \
     closed AS (UPDATE beads SET status = 'closed', closed_at = now(), close_reason = coalesce($2, 'done'), \
          blocked_reason = NULL, blocked_note = NULL, assignee_agent_id = NULL, \
          lease_expires_at = NULL, version = beads.version + 1, updated_at = now() \
        FROM bead WHERE beads.id = bead.id), \
     freed AS (UPDATE agents SET status = 'idle', updated_at = now() \
        FROM bead WHERE agents.id = (SELECT agent_id FROM bead) AND agents.status = 'working'), \
     counts AS MATERIALIZED ( \
       SELECT x.id, x.open_blockers AS old, \
         (SELECT count(*) FROM bead_dependencies e JOIN beads y ON y.id = e.depends_on \
           WHERE e.bead_id = x.id AND e.kind = 'blocks' AND y.status <> 'closed' \
             AND y.id <> d.depends_on)::int AS new \
       FROM bead JOIN bead_dependencies d ON d.depends_on = bead.id AND d.kind = 'blocks' \
       JOIN beads x ON x.id = d.bead_id), \
     recounted AS (UPDATE beads SET open_blockers = counts.new FROM counts \
        WHERE beads.id = counts.id AND beads.open_blockers <> counts.new \
        RETURNING beads.id, (counts.old = 0) <> (counts.new = 0) AS crossed), \
     history AS (INSERT INTO activity (kind, project_id, bead_id, actor_agent_id, data) \
        SELECT e.kind, e.project, bead.id, bead.agent_id, e.data FROM bead CROSS JOIN LATERAL (VALUES \
          (1, 'bead.closed', bead.project_id, jsonb_build_object('reason', coalesce($2, 'done'))), \
          (2, 'run.ended', NULL, jsonb_build_object('run', $1::uuid, 'outcome', 'success', \
                'attempt', bead.attempt, 'summary', $2::text, \
                'seconds', round(extract(epoch FROM now() - bead.started_at), 3)))) AS e(n, kind, project, data) \
        ORDER BY e.n) \
   SELECT (SELECT count(*) FROM bead) AS closed, \
          ARRAY(SELECT r.id FROM recounted r WHERE r.crossed \
                  AND EXISTS (SELECT 1 FROM beads c WHERE c.parent_id = r.id)) AS roots, \
          (SELECT count(pg_notify($3, '')) FROM bead) AS woken";

/// Closes a successful run's bead with `CLOSE_PLAIN` when it qualifies; `None` when it does
/// not (or the run already ended), for `release_in` to handle in full.
async fn close_plain(
    conn: &mut Conn,
    run_id: Uuid,
    error: &Option<String>,
    dependents: Dependents,
) -> Result<Option<AfterRun>> {
    #[derive(QueryableByName)]
    struct Closed {
        #[diesel(sql_type = BigInt)]
        closed: i64,
        #[diesel(sql_type = Array<Text>)]
        roots: Vec<String>,
    }
    let done: Closed = Prepared(
        diesel::sql_query(CLOSE_PLAIN)
            .bind::<SqlUuid, _>(run_id)
            .bind::<Nullable<Text>, _>(error)
            .bind::<Text, _>(Claim::WAKE_CHANNEL)
            .bind::<Bool, _>(dependents == Dependents::Recount),
    )
    .get_result(conn)
    .await?;
    if done.closed == 0 {
        return Ok(None);
    }
    refresh_holds(conn, &done.roots).await?;
    Ok(Some(AfterRun::Closed))
}

/// The body of `release`, for callers that already run a transaction (and hold the graph
/// lock when the outcome can close or block the bead). Locks run, then bead, then agent.
pub(crate) async fn release_in(
    conn: &mut Conn,
    run_id: Uuid,
    outcome: RunOutcome,
    error: Option<String>,
    retry: RetryPolicy,
) -> Result<Option<AfterRun>> {
    end_run(conn, run_id, outcome, error, retry, None).await
}

/// `release_in`, or with `finish` a done run's way into review or landing.
async fn end_run(
    conn: &mut Conn,
    run_id: Uuid,
    outcome: RunOutcome,
    error: Option<String>,
    retry: RetryPolicy,
    finish: Option<Finish>,
) -> Result<Option<AfterRun>> {
    let Some(run) = Run::lock_open(conn, run_id).await? else { return Ok(None) };
    let bead = Bead::lock(conn, &run.bead_id).await?;
    // On success the note is the run's summary, otherwise its error.
    let (summary, failure) = match outcome {
        RunOutcome::Success => (error.clone(), None),
        _ => (None, error.clone()),
    };
    diesel::update(runs::table.find(run_id))
        .set((
            runs::ended_at.eq(diesel::dsl::now),
            runs::outcome.eq(outcome),
            runs::error.eq(&failure),
            runs::summary.eq(&summary),
        ))
        .execute(conn)
        .await?;
    let held = bead.assignee_agent_id.is_some() && bead.assignee_agent_id == run.agent_id;
    let after = match (run.kind, bead.status) {
        (RunKind::Work, BeadStatus::InProgress) if held => {
            settle_bead(conn, bead, &run, (outcome, finish), error.clone(), retry).await?
        }
        (RunKind::Review, BeadStatus::Review) if held => {
            super::landing::end_review(conn, &bead, outcome, error.as_deref(), retry).await?
        }
        _ => AfterRun::Untouched,
    };
    if let Some(agent) = run.agent_id {
        diesel::update(agents::table.find(agent).filter(agents::status.eq(AgentStatus::Working)))
            .set((agents::status.eq(AgentStatus::Idle), agents::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?;
    }
    Activity::record(
        conn,
        Record {
            kind: Kind::RunEnded,
            project_id: None,
            bead_id: Some(&run.bead_id),
            actor: run.agent_id.map(Actor::Agent).unwrap_or(Actor::System),
            data: serde_json::json!({
                "run": run_id, "outcome": outcome, "attempt": run.attempt, "error": failure,
                "summary": summary, "seconds": ran_for(run.started_at),
            }),
        },
    )
    .await?;
    wake_dispatchers(conn).await?;
    Ok(Some(after))
}

/// What an outcome does to the bead the run held.
async fn settle_bead(
    conn: &mut Conn,
    bead: Bead,
    run: &Run,
    (outcome, finish): (RunOutcome, Option<Finish>),
    error: Option<String>,
    retry: RetryPolicy,
) -> Result<AfterRun> {
    let actor = run.agent_id.map(Actor::Agent).unwrap_or(Actor::System);
    let id = bead.id.clone();
    let after = match outcome {
        RunOutcome::Success => {
            let open_children: i64 = beads::table
                .filter(beads::parent_id.eq(&id))
                .filter(beads::status.ne(BeadStatus::Closed))
                .count()
                .get_result(conn)
                .await?;
            if open_children == 0
                && let Some(finish) = finish
            {
                let status = super::landing::enter(conn, &bead, run, finish).await?;
                AfterRun::Finished(status)
            } else if open_children == 0 {
                let reason = error.clone().unwrap_or_else(|| "done".into());
                status::close(conn, bead, Some(reason), actor).await?;
                AfterRun::Closed
            } else {
                let note = Some(format!(
                    "the work is done but {open_children} child bead(s) are still open"
                ));
                status::block(conn, bead, BlockedReason::NeedsHuman, note, actor).await?;
                AfterRun::Blocked(BlockedReason::NeedsHuman)
            }
        }
        // Not the bead's fault: the gateway is parked, a person paused the agent.
        RunOutcome::GatewayUnavailable => {
            // This run's outcome is written already: it is counted.
            let parks: i64 = runs::table
                .filter(runs::bead_id.eq(&id))
                .filter(runs::outcome.eq(RunOutcome::GatewayUnavailable))
                .count()
                .get_result(conn)
                .await?;
            status::block(conn, bead, BlockedReason::GatewayUnavailable, error.clone(), actor)
                .await?;
            let wait = chrono::Duration::from_std(retry.park_delay(parks))
                .unwrap_or(chrono::Duration::zero());
            diesel::update(beads::table.find(&id))
                .set(beads::not_before.eq(Some(Utc::now() + wait)))
                .execute(conn)
                .await?;
            AfterRun::Blocked(BlockedReason::GatewayUnavailable)
        }
        // No sandbox for its commands: parked until an operator makes one.
        RunOutcome::SandboxUnavailable => {
            status::block(conn, bead, BlockedReason::SandboxUnavailable, error.clone(), actor)
                .await?;
            AfterRun::Blocked(BlockedReason::SandboxUnavailable)
        }
        RunOutcome::Cancelled => {
            reopen_claimed(conn, &id, bead.attempts, None, &error).await?;
            AfterRun::Retry { attempts: bead.attempts }
        }
        failed => {
            let attempts = bead.attempts + 1;
            let max: i32 = projects::table
                .find(&bead.project_id)
                .select(projects::max_attempts)
                .first(conn)
                .await?;
            let blocked = match failed {
                RunOutcome::NeedsHuman => Some(BlockedReason::NeedsHuman),
                RunOutcome::LoopDetected => Some(BlockedReason::LoopDetected),
                RunOutcome::MergeConflict => Some(BlockedReason::MergeConflict),
                _ if attempts >= max => Some(BlockedReason::TooManyAttempts),
                _ => None,
            };
            diesel::update(beads::table.find(&id))
                .set((beads::attempts.eq(attempts), beads::last_error.eq(&error)))
                .execute(conn)
                .await?;
            match blocked {
                Some(reason) => {
                    let bead = Bead::get(conn, &id).await?;
                    status::block(conn, bead, reason, error.clone(), actor).await?;
                    AfterRun::Blocked(reason)
                }
                None => {
                    let wait = chrono::Duration::from_std(retry.delay(attempts))
                        .unwrap_or(chrono::Duration::zero());
                    reopen_claimed(conn, &id, attempts, Some(Utc::now() + wait), &error).await?;
                    AfterRun::Retry { attempts }
                }
            }
        }
    };
    diesel::update(beads::table.find(&id))
        .set((beads::version.eq(beads::version + 1), beads::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(after)
}

/// Returns a claimed bead to `open` (nothing about holds changes: in progress and open
/// hold nothing back).
async fn reopen_claimed(
    conn: &mut Conn,
    id: &str,
    attempts: i32,
    not_before: Option<DateTime<Utc>>,
    error: &Option<String>,
) -> Result<()> {
    diesel::update(beads::table.find(id))
        .set((
            beads::status.eq(BeadStatus::Open),
            beads::assignee_agent_id.eq(None::<Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
            beads::attempts.eq(attempts),
            beads::not_before.eq(not_before),
            beads::last_error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The agent this run held is free: wake the dispatchers of every process when this
/// transaction commits.
async fn wake_dispatchers(conn: &mut Conn) -> Result<()> {
    diesel::sql_query("SELECT pg_notify($1, '')")
        .bind::<Text, _>(Claim::WAKE_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Seconds since `started_at`, to the millisecond (a run's length in its `run.ended` row).
fn ran_for(started_at: DateTime<Utc>) -> f64 {
    (Utc::now() - started_at).num_milliseconds().max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parks_back_off_doubling_from_the_base_up_to_half_an_hour() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| p.park_delay(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1800, 1800]);
        assert_eq!(p.park_delay(0).as_secs(), 30);
        assert_eq!(p.park_delay(i64::MAX), PARK_CAP);
    }
}
