//! The dispatcher's reads, under `FOR UPDATE SKIP LOCKED`: idle agents and ready beads that
//! no other dispatcher is holding right now. Competing dispatchers (in one process or many)
//! so take disjoint slices of the agents and of the ready queue instead of all reading its
//! head, pairing it the same way and colliding on every claim.

use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, SmallInt, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::matching::{Candidate, IdleAgent};
use crate::agents::AgentStatus;
use crate::db::schema::agents;
use crate::db::{Conn, Prepared};
use crate::error::Result;

/// True when some agent is idle: a plain read, one round trip, that spares the transaction
/// (three) when there is nothing to do. It does not lock: a probe that locked would write
/// its row locks to the WAL and wait for the flush.
pub async fn any_idle_agent(conn: &mut Conn) -> Result<bool> {
    let idle = agents::table.filter(agents::status.eq(AgentStatus::Idle)).select(agents::id);
    Ok(diesel::select(exists(idle)).get_result(conn).await?)
}

/// Idle agents, longest idle first, that could take some ready bead: without that test the
/// head of the order fills with agents nothing is ready for (bound to a quiet project, say),
/// a step locks only them, and nothing is dispatched at all while work waits for the agents
/// behind them. The labels come from a subquery, not a join: a join would lock the persona
/// rows too, and hide every agent of that persona from the other dispatchers. The readiness
/// test is spelled with literals for the reason given on `READY`; the two `EXISTS` (one per
/// kind of agent) each read one partial index.
const IDLE: &str = "SELECT a.id, a.project_id, a.persona, \
            (SELECT p.labels FROM personas p WHERE p.name = a.persona) AS labels \
       FROM agents a \
      WHERE a.status = 'idle' \
        AND CASE WHEN a.project_id IS NULL THEN EXISTS ( \
              SELECT 1 FROM beads b \
               WHERE b.status = 'open' AND b.bead_type <> 'epic' AND b.open_blockers = 0 \
                 AND b.held_by IS NULL AND b.paired_in IS NULL \
                 AND (b.not_before IS NULL OR b.not_before <= now()) \
                 AND (b.persona IS NULL OR b.persona = a.persona)) \
            ELSE EXISTS ( \
              SELECT 1 FROM beads b \
               WHERE b.status = 'open' AND b.bead_type <> 'epic' AND b.open_blockers = 0 \
                 AND b.held_by IS NULL AND b.paired_in IS NULL \
                 AND (b.not_before IS NULL OR b.not_before <= now()) \
                 AND b.project_id = a.project_id \
                 AND (b.persona IS NULL OR b.persona = a.persona)) END \
      ORDER BY a.updated_at, a.id \
      LIMIT $1 \
      FOR UPDATE OF a SKIP LOCKED";

#[derive(QueryableByName)]
struct AgentRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    project_id: Option<String>,
    #[diesel(sql_type = Text)]
    persona: String,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    labels: Option<Vec<String>>,
}

/// Locks up to `limit` idle agents no one else holds and that some ready bead is for, with
/// their persona's labels, longest idle first. Call inside the transaction that claims for
/// them.
pub async fn lock_idle_agents(conn: &mut Conn, limit: i64) -> Result<Vec<IdleAgent>> {
    let rows: Vec<AgentRow> =
        Prepared(diesel::sql_query(IDLE).bind::<BigInt, _>(limit)).load(conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| IdleAgent {
            id: r.id,
            project: r.project_id,
            persona: r.persona,
            labels: r.labels.unwrap_or_default(),
        })
        .collect())
}

/// A ready bead with its place in dispatch order.
pub struct Ready {
    pub candidate: Candidate,
    pub at: Position,
}

/// A place in dispatch order `(priority, created_at, id)`.
#[derive(Debug, Clone)]
pub struct Position {
    priority: i16,
    created_at: DateTime<Utc>,
    id: String,
}

/// Ready beads in dispatch order that one of the locking dispatcher's agents could take
/// (`$1`: their projects, or null when one is unbound; `$2`: their personas), after the
/// position `$3..$5` (null on the first page), of a project an executor runs for when `$7`,
/// and of none of the projects `$8` that limits close this round. The readiness test is spelled with literals,
/// as the `beads_ready` index predicate is, so that even the plan Postgres keeps for the
/// prepared statement can read the page off that index: with bound values it could only
/// prove the predicate per call, and would settle on an index of all open beads, which
/// walks every blocked bead sorting ahead of the first ready one.
const READY: &str = "SELECT id, project_id, persona, labels, priority, created_at FROM beads \
     WHERE status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 AND held_by IS NULL \
       AND paired_in IS NULL AND (not_before IS NULL OR not_before <= now()) \
       AND ($1::text[] IS NULL OR project_id = ANY($1)) \
       AND (persona IS NULL OR persona = ANY($2)) \
       AND ($3::smallint IS NULL OR (priority, created_at, id) > ($3, $4, $5)) \
       AND (NOT $7 OR EXISTS (SELECT 1 FROM executor_leases l \
                               WHERE l.project_id = beads.project_id AND l.expires_at > now())) \
       AND project_id <> ALL($8) \
     ORDER BY priority, created_at, id LIMIT $6 \
     FOR UPDATE SKIP LOCKED";

#[derive(QueryableByName)]
struct ReadyRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    project_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    persona: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    labels: Vec<String>,
    #[diesel(sql_type = SmallInt)]
    priority: i16,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

/// Locks up to `limit` ready beads after `after`, in dispatch order, that no one else holds
/// and that one of `agents` could take. Call inside the transaction that claims them.
pub async fn lock_ready(
    conn: &mut Conn,
    agents: &[IdleAgent],
    after: Option<&Position>,
    limit: i64,
    require_executor: bool,
    closed: &[String],
) -> Result<Vec<Ready>> {
    let projects: Option<Vec<String>> = agents.iter().map(|a| a.project.clone()).collect();
    let personas: Vec<String> = agents.iter().map(|a| a.persona.clone()).collect();
    let rows: Vec<ReadyRow> = Prepared(
        diesel::sql_query(READY)
            .bind::<Nullable<Array<Text>>, _>(projects)
            .bind::<Array<Text>, _>(personas)
            .bind::<Nullable<SmallInt>, _>(after.map(|p| p.priority))
            .bind::<Nullable<Timestamptz>, _>(after.map(|p| p.created_at))
            .bind::<Nullable<Text>, _>(after.map(|p| p.id.clone()))
            .bind::<BigInt, _>(limit)
            .bind::<diesel::sql_types::Bool, _>(require_executor)
            .bind::<Array<Text>, _>(closed),
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Ready {
            at: Position { priority: r.priority, created_at: r.created_at, id: r.id.clone() },
            candidate: Candidate {
                id: r.id,
                project: r.project_id,
                persona: r.persona,
                labels: r.labels,
            },
        })
        .collect())
}
