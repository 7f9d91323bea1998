//! Agent reviews (`review: agent`, DESIGN.md "Landing"): a bead whose work waits in `review`
//! is handed to an idle agent of the reviewing persona that did none of its work, in a
//! review run. The bead stays in review, held by the reviewer under a lease; the run ends
//! with the reviewer's decision (`Bead::decide`) or, undecided, leaves the bead for the next
//! review (people decide after `AGENT_REVIEW_TRIES`). Locks are taken as the work claim
//! takes them (`FOR UPDATE SKIP LOCKED`), so dispatchers never wait on each other.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::beads::{AGENT_REVIEW_TRIES, REVIEW_FAILURES, RunOutcome};
use crate::db::{Conn, Prepared};
use crate::error::Result;

/// The persona whose agents review work.
pub const REVIEWER: &str = "code-reviewer";

/// Beads waiting for an agent's review, in the landing queue's order (priority, then the
/// time they entered review), of projects an executor runs for when `$1`, not in `$2`, not
/// being paired on, past any back-off, with fewer than `$3` reviews of their work that the
/// reviewer failed (outcomes `$5`), and with some idle reviewer (persona `$6`) free to take
/// them, so a page is never filled by beads no one may review; with the agents that did
/// their work, who may not review it.
const WAITING: &str = "SELECT b.id, b.project_id, b.attempts, \
        ARRAY(SELECT DISTINCT r.agent_id FROM runs r \
               WHERE r.bead_id = b.id AND r.kind = 'work' AND r.agent_id IS NOT NULL) AS authors \
   FROM beads b JOIN projects p ON p.id = b.project_id \
  WHERE b.status = 'review' AND b.assignee_agent_id IS NULL AND p.review = 'agent' \
    AND b.paired_in IS NULL AND (b.not_before IS NULL OR b.not_before <= now()) \
    AND (NOT $1 OR EXISTS (SELECT 1 FROM executor_leases l \
                            WHERE l.project_id = b.project_id AND l.expires_at > now())) \
    AND b.project_id <> ALL($2) \
    AND (SELECT count(*) FROM runs r \
          WHERE r.bead_id = b.id AND r.kind = 'review' AND r.outcome::text = ANY($5) \
            AND r.started_at >= coalesce(b.landing_since, '-infinity')) < $3 \
    AND EXISTS (SELECT 1 FROM agents a \
                 WHERE a.status = 'idle' AND a.persona = $6 \
                   AND (a.project_id IS NULL OR a.project_id = b.project_id) \
                   AND NOT EXISTS (SELECT 1 FROM runs w WHERE w.bead_id = b.id \
                                    AND w.kind = 'work' AND w.agent_id = a.id)) \
  ORDER BY b.priority, b.landing_since, b.id \
  LIMIT $4 \
  FOR UPDATE OF b SKIP LOCKED";

#[derive(QueryableByName)]
struct Waiting {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    project_id: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Array<SqlUuid>)]
    authors: Vec<Uuid>,
}

/// Idle reviewers, longest idle first.
const REVIEWERS: &str = "SELECT id, project_id FROM agents \
  WHERE status = 'idle' AND persona = $1 \
  ORDER BY updated_at, id LIMIT $2 \
  FOR UPDATE SKIP LOCKED";

#[derive(QueryableByName)]
struct Reviewer {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    project_id: Option<String>,
}

/// Opens each pair's review run: the bead held by the reviewer under the lease (still in
/// review), the reviewer working, `bead.claimed` with `review: true`.
const CLAIM: &str = "WITH want AS (SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::int[]) \
                          AS w(bead, agent, run, attempt)), \
     held AS (UPDATE beads SET assignee_agent_id = want.agent, lease_expires_at = $5, \
                     version = beads.version + 1, updated_at = statement_timestamp() \
                FROM want WHERE beads.id = want.bead \
              RETURNING beads.id, beads.project_id), \
     busy AS (UPDATE agents SET status = 'working', last_heartbeat_at = statement_timestamp(), \
                     updated_at = statement_timestamp() \
                FROM want WHERE agents.id = want.agent), \
     opened AS (INSERT INTO runs (id, bead_id, agent_id, attempt, started_at, kind) \
                SELECT run, bead, agent, attempt, statement_timestamp(), 'review' FROM want), \
     history AS (INSERT INTO activity (kind, project_id, bead_id, actor_agent_id, data) \
                 SELECT 'bead.claimed', held.project_id, want.bead, want.agent, \
                        jsonb_build_object('agent', want.agent, 'run', want.run, \
                                           'attempt', want.attempt, 'review', true) \
                   FROM want JOIN held ON held.id = want.bead) \
   SELECT count(*) AS n FROM want";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Claims reviews for idle reviewers, inside the dispatcher's round transaction: the beads
/// of projects in `held` wait. Returns how many review runs were opened.
pub async fn claim(
    conn: &mut Conn,
    held: &[String],
    require_executor: bool,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<usize> {
    let waiting: Vec<Waiting> = Prepared(
        diesel::sql_query(WAITING)
            .bind::<Bool, _>(require_executor)
            .bind::<Array<Text>, _>(held)
            .bind::<BigInt, _>(AGENT_REVIEW_TRIES)
            .bind::<BigInt, _>(limit)
            .bind::<Array<Text>, _>(REVIEW_FAILURES.map(RunOutcome::as_str).to_vec())
            .bind::<Text, _>(REVIEWER),
    )
    .load(conn)
    .await?;
    if waiting.is_empty() {
        return Ok(0);
    }
    let reviewers: Vec<Reviewer> =
        Prepared(diesel::sql_query(REVIEWERS).bind::<Text, _>(REVIEWER).bind::<BigInt, _>(limit))
            .load(conn)
            .await?;
    let pairs = pair(&waiting, reviewers);
    if pairs.is_empty() {
        return Ok(0);
    }
    let (mut beads, mut agents, mut runs, mut attempts) = (vec![], vec![], vec![], vec![]);
    for (bead, agent) in pairs {
        beads.push(bead.id.clone());
        agents.push(agent);
        runs.push(Uuid::now_v7());
        attempts.push(bead.attempts);
    }
    let opened: Count = Prepared(
        diesel::sql_query(CLAIM)
            .bind::<Array<Text>, _>(beads)
            .bind::<Array<SqlUuid>, _>(agents)
            .bind::<Array<SqlUuid>, _>(runs)
            .bind::<Array<Integer>, _>(attempts)
            .bind::<diesel::sql_types::Timestamptz, _>(until),
    )
    .get_result(conn)
    .await?;
    Ok(opened.n as usize)
}

/// Pairs each waiting bead, in order, with the longest-idle reviewer free to take it: of its
/// project (or of none) and not one of its authors.
fn pair(waiting: &[Waiting], mut free: Vec<Reviewer>) -> Vec<(&Waiting, Uuid)> {
    let mut pairs = Vec::new();
    for bead in waiting {
        let fits = |r: &Reviewer| {
            r.project_id.as_ref().is_none_or(|p| *p == bead.project_id)
                && !bead.authors.contains(&r.id)
        };
        if let Some(i) = free.iter().position(fits) {
            pairs.push((bead, free.remove(i).id));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(id: &str, project: &str, authors: &[u128]) -> Waiting {
        let authors = authors.iter().map(|n| Uuid::from_u128(*n)).collect();
        Waiting { id: id.into(), project_id: project.into(), attempts: 0, authors }
    }

    fn reviewer(n: u128, project: Option<&str>) -> Reviewer {
        Reviewer { id: Uuid::from_u128(n), project_id: project.map(Into::into) }
    }

    fn ids(pairs: Vec<(&Waiting, Uuid)>) -> Vec<(String, u128)> {
        pairs.into_iter().map(|(w, a)| (w.id.clone(), a.as_u128())).collect()
    }

    #[test]
    fn a_reviewer_never_reviews_work_it_did_and_stays_in_its_project() {
        let beads = [waiting("b1", "web", &[1]), waiting("b2", "api", &[2])];
        // 1 did b1's work; 3 is bound to web, so only unbound 1 can take api's b2.
        let free = vec![reviewer(1, None), reviewer(3, Some("web"))];
        assert_eq!(ids(pair(&beads, free)), [("b1".into(), 3), ("b2".into(), 1)]);
    }

    #[test]
    fn a_bead_whose_only_reviewer_is_its_author_waits_and_holds_no_one_else_up() {
        let beads = [waiting("b1", "web", &[1]), waiting("b2", "web", &[])];
        assert_eq!(ids(pair(&beads, vec![reviewer(1, None)])), [("b2".into(), 1)]);
        assert!(pair(&beads[..1], vec![reviewer(1, None)]).is_empty());
    }
}
