//! The executor's reads and writes of runs: picking up the runs the dispatcher opened in the
//! projects this process owns (and adopting those whose worker died), keeping their beads'
//! leases alive, recording steps, and what a run needs to start.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::prelude::*;
use diesel::sql_types::{Array, Integer, Interval, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::beads::RunKind;
use crate::db::schema::{run_steps, runs};
use crate::db::{Conn, Prepared};
use crate::error::Result;

/// An open run this process has taken on.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct OpenRun {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub bead_id: String,
    #[diesel(sql_type = Text)]
    pub project_id: String,
    #[diesel(sql_type = SqlUuid)]
    pub agent_id: Uuid,
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    /// How many times it was adopted after its worker died.
    #[diesel(sql_type = Integer)]
    pub resumes: i32,
    #[diesel(sql_type = Text)]
    pub kind: RunKind,
}

/// Open runs in `$2`'s projects not yet worked by `$1`: new ones (no worker) and ones whose
/// worker is another process, which can only be a dead or deposed owner, since this process
/// owns the project now. Adopting one counts a resume. Oldest first, bounded per call. Each
/// start (or restart) is a `run.started` in the history.
const PICK_UP: &str = "WITH picked AS (UPDATE runs r SET worker = $1, \
            resumes = r.resumes + CASE WHEN r.worker IS NULL THEN 0 ELSE 1 END \
       FROM beads b \
      WHERE r.id IN (SELECT r2.id FROM runs r2 JOIN beads b2 ON b2.id = r2.bead_id \
                      WHERE r2.outcome IS NULL AND b2.project_id = ANY($2) \
                        AND r2.agent_id IS NOT NULL \
                        AND (r2.worker IS NULL OR r2.worker <> $1) \
                      ORDER BY r2.started_at LIMIT $3 FOR UPDATE OF r2 SKIP LOCKED) \
        AND b.id = r.bead_id \
  RETURNING r.id, r.bead_id, b.project_id, r.agent_id, r.attempt, r.resumes, r.kind), \
     history AS (INSERT INTO activity (kind, project_id, bead_id, actor_agent_id, data) \
       SELECT 'run.started', project_id, bead_id, agent_id, jsonb_build_object('run', id, \
              'agent', agent_id, 'attempt', attempt, 'resumes', resumes, 'kind', kind) FROM picked) \
   SELECT * FROM picked";

pub async fn pick_up(
    conn: &mut Conn,
    worker: Uuid,
    projects: &[String],
    limit: i32,
) -> Result<Vec<OpenRun>> {
    if projects.is_empty() {
        return Ok(Vec::new());
    }
    let mut runs: Vec<OpenRun> = Prepared(
        diesel::sql_query(PICK_UP)
            .bind::<SqlUuid, _>(worker)
            .bind::<Array<Text>, _>(projects)
            .bind::<Integer, _>(limit),
    )
    .load(conn)
    .await?;
    runs.sort_by_key(|r| r.id);
    Ok(runs)
}

/// Extends the leases of the beads of `$2`'s runs that are still open and still `$1`'s
/// (a work run's bead in progress, a review run's in review), in one statement; returns the
/// runs renewed. A run missing from the answer has lost its
/// claim (taken back, expired and handed on, adopted elsewhere) and must stop.
const RENEW: &str = "UPDATE beads b SET lease_expires_at = now() + $3 \
       FROM runs r \
      WHERE r.id = ANY($2) AND r.outcome IS NULL AND r.worker = $1 \
        AND b.id = r.bead_id AND b.assignee_agent_id = r.agent_id \
        AND b.status = CASE r.kind WHEN 'review' THEN 'review'::bead_status ELSE 'in_progress' END \
  RETURNING r.id";

#[derive(QueryableByName)]
struct Renewed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

pub async fn renew(
    conn: &mut Conn,
    worker: Uuid,
    runs: &[Uuid],
    lease: Duration,
) -> Result<Vec<Uuid>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Renewed> = Prepared(
        diesel::sql_query(RENEW)
            .bind::<SqlUuid, _>(worker)
            .bind::<Array<SqlUuid>, _>(runs)
            .bind::<Interval, _>(crate::db::interval(lease)),
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Gives this process's open runs back unworked (at shutdown), for the next owner.
pub async fn hand_over(conn: &mut Conn, worker: Uuid) -> Result<usize> {
    Ok(diesel::update(runs::table.filter(runs::worker.eq(worker)).filter(runs::outcome.is_null()))
        .set(runs::worker.eq(None::<Uuid>))
        .execute(conn)
        .await?)
}

/// Whether the run is still open and still this process's: a person may have taken the
/// bead back, or its lease lapsed and another process adopted it. Asked before each call to
/// the model and before merging, so taken-back work is not merged.
pub async fn still_ours(conn: &mut Conn, run_id: Uuid, worker: Uuid) -> Result<bool> {
    let open = runs::table
        .filter(runs::id.eq(run_id))
        .filter(runs::outcome.is_null())
        .filter(runs::worker.eq(worker));
    Ok(diesel::select(diesel::dsl::exists(open)).get_result(conn).await?)
}

/// One performed action, as `GET /api/v1/runs/{id}` shows it.
pub struct StepRecord<'a> {
    pub run_id: Uuid,
    pub turn: i32,
    pub action: serde_json::Value,
    pub ok: bool,
    pub result: &'a str,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: i64,
}

/// The longest result kept in a step; the model saw the whole (clipped) text.
const STEP_RESULT_CHARS: usize = 2_000;

/// Records a step.
pub async fn record_step(conn: &mut Conn, step: &StepRecord<'_>) -> Result<()> {
    let result: String = step.result.chars().take(STEP_RESULT_CHARS).collect();
    diesel::insert_into(run_steps::table)
        .values((
            run_steps::run_id.eq(step.run_id),
            run_steps::turn.eq(step.turn),
            run_steps::action.eq(&step.action),
            run_steps::ok.eq(step.ok),
            run_steps::result.eq(&result),
            run_steps::prompt_tokens.eq(step.prompt_tokens),
            run_steps::completion_tokens.eq(step.completion_tokens),
            run_steps::started_at.eq(step.started_at),
            run_steps::duration_ms.eq(step.duration_ms),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// What a run had spent when it was adopted: (turns, prompt tokens, completion tokens).
pub async fn totals(conn: &mut Conn, run_id: Uuid) -> Result<(i32, i64, i64)> {
    Ok(runs::table
        .find(run_id)
        .select((runs::turns, runs::prompt_tokens, runs::completion_tokens))
        .first(conn)
        .await?)
}

/// The run's counters, after each reply.
pub async fn record_totals(
    conn: &mut Conn,
    run_id: Uuid,
    turns: u32,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Result<()> {
    diesel::update(runs::table.find(run_id).filter(runs::outcome.is_null()))
        .set((
            runs::turns.eq(turns as i32),
            runs::prompt_tokens.eq(prompt_tokens as i64),
            runs::completion_tokens.eq(completion_tokens as i64),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
