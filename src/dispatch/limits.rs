//! What holds new claims back, while running work goes on: token budgets spent over the
//! rolling spend window (the fleet's, `LOOM_FLEET_TOKEN_BUDGET`, and each project's own)
//! and each project's work-in-progress limits (beads in progress, beads waiting to merge).
//!
//! Spend is summed from `gateway_calls` at most every `refresh` by each dispatcher
//! (`refresh_holds`): a budget reached becomes a `spend_holds` row and a `spend.limited`
//! activity row (people are notified), a budget with room again loses its row with a
//! `spend.resumed`. Every round reads the holds and the limits (`Gate::load`) in its own
//! transaction; a project with a WIP limit is counted under a transaction-scoped advisory
//! lock that a competing dispatcher skips rather than waits on, so two rounds never both
//! fill the same room.

use std::collections::HashMap;
use std::time::Duration;

use diesel::sql_types::{BigInt, Bool, Integer, Interval, Nullable, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::activity::{Activity, Actor, Record};
use crate::db::{Conn, Prepared, interval};
use crate::error::{Error, Result};
use crate::events::Kind;

/// The fleet's budget and the window every budget is counted over.
#[derive(Debug, Clone)]
pub struct SpendPolicy {
    /// Tokens (prompt plus completion) the whole fleet may spend per window; `None`: no limit.
    pub fleet_budget: Option<i64>,
    pub window: Duration,
    /// How often a dispatcher sums the spend again.
    pub refresh: Duration,
}

impl Default for SpendPolicy {
    fn default() -> Self {
        SpendPolicy {
            fleet_budget: None,
            window: Duration::from_secs(24 * 3600),
            refresh: Duration::from_secs(5),
        }
    }
}

/// What one dispatch round may claim.
#[derive(Debug, Default)]
pub struct Gate {
    /// The fleet's budget is spent: nothing is claimed.
    pub fleet_held: bool,
    /// Some bead waits for an agent's review (`dispatch::review`).
    pub reviews_waiting: bool,
    /// Projects nothing is claimed for this round.
    closed: Vec<String>,
    /// Of those, the projects not even a review is claimed for: their spend is held or
    /// their repository unreachable. (WIP and awaiting-merge limits do not hold reviews
    /// back: a review moves work on towards landing.)
    held: Vec<String>,
    /// Claims left this round in projects with a WIP limit.
    room: HashMap<String, usize>,
}

#[derive(QueryableByName)]
struct Limited {
    #[diesel(sql_type = Text)]
    id: String,
    /// Claims left under `max_in_progress`; null without one.
    #[diesel(sql_type = Nullable<Integer>)]
    room: Option<i32>,
    #[diesel(sql_type = Bool)]
    merges_full: bool,
    #[diesel(sql_type = Bool)]
    spent: bool,
    /// Whether this round holds the project's WIP lock (true without a WIP limit).
    #[diesel(sql_type = Bool)]
    locked: bool,
    /// The project's repository could not be reached the last time (`repo_state`).
    #[diesel(sql_type = Bool)]
    unreachable: bool,
    /// The row that says the fleet's budget is spent, not a project's.
    #[diesel(sql_type = Bool)]
    fleet: bool,
    /// The row that says some bead waits for an agent's review.
    #[diesel(sql_type = Bool)]
    reviews: bool,
}

const LIMITED: &str = "SELECT p.id, \
       p.max_in_progress - (SELECT count(*) FROM beads b \
                             WHERE b.project_id = p.id AND b.status = 'in_progress')::int AS room, \
       (p.max_awaiting_merge IS NOT NULL AND (SELECT count(*) FROM beads b \
           WHERE b.project_id = p.id AND (b.status IN ('review', 'landing') \
             OR (b.status = 'blocked' AND b.blocked_reason IN ('merge_conflict', 'check_unavailable')))) \
           >= p.max_awaiting_merge) AS merges_full, \
       EXISTS (SELECT 1 FROM spend_holds h WHERE h.project_id = p.id) AS spent, \
       CASE WHEN p.max_in_progress IS NULL THEN true \
            ELSE pg_try_advisory_xact_lock(hashtext('loom.wip'), hashtext(p.id)) END AS locked, \
       p.repo_state = 'unreachable' AS unreachable, \
       false AS fleet, false AS reviews \
  FROM projects p \
 WHERE p.max_in_progress IS NOT NULL OR p.max_awaiting_merge IS NOT NULL \
    OR EXISTS (SELECT 1 FROM spend_holds h WHERE h.project_id = p.id) \
    OR p.repo_state = 'unreachable' \
 UNION ALL \
SELECT '', NULL, false, true, true, false, true, false FROM spend_holds WHERE scope = 'fleet' \
 UNION ALL \
SELECT '', NULL, false, false, true, false, false, true \
 WHERE EXISTS (SELECT 1 FROM beads b JOIN projects p ON p.id = b.project_id \
                WHERE b.status = 'review' AND b.assignee_agent_id IS NULL AND p.review = 'agent')";

impl Gate {
    /// The holds and limits now, in one round trip (every round pays it); call inside the
    /// round's transaction (the WIP locks last until it ends).
    pub async fn load(conn: &mut Conn) -> Result<Gate> {
        let rows: Vec<Limited> = Prepared(diesel::sql_query(LIMITED)).load(conn).await?;
        let mut gate = Gate::default();
        for r in rows {
            if r.fleet {
                gate.fleet_held = true;
                continue;
            }
            if r.reviews {
                gate.reviews_waiting = true;
                continue;
            }
            let room = r.room.map(|n| n.max(0) as usize);
            if r.spent || r.unreachable {
                gate.held.push(r.id.clone());
            }
            if r.spent || r.merges_full || r.unreachable || !r.locked || room == Some(0) {
                gate.closed.push(r.id);
            } else if let Some(n) = room {
                gate.room.insert(r.id, n);
            }
        }
        Ok(gate)
    }

    /// Projects whose beads this round must not claim.
    pub fn closed(&self) -> &[String] {
        &self.closed
    }

    /// Projects whose beads this round must not claim even for a review.
    pub fn held(&self) -> &[String] {
        &self.held
    }

    /// Takes one claim's room in `project`; false when it has none left (the project is
    /// closed for the rest of the round).
    pub fn take(&mut self, project: &str) -> bool {
        match self.room.get_mut(project) {
            None => !self.closed.iter().any(|p| p == project),
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.room.remove(project);
                    self.closed.push(project.to_owned());
                }
                true
            }
        }
    }
}

/// A budget's standing: what was spent in the window against what may be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Spend {
    /// `fleet` or a project's id.
    pub scope: String,
    pub spent: i64,
    pub budget: i64,
    /// New claims are held back.
    pub held: bool,
}

#[derive(QueryableByName)]
struct Budget {
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Nullable<Text>)]
    project_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    spent: i64,
    #[diesel(sql_type = BigInt)]
    budget: i64,
}

/// Every budget's spend over the window: the fleet's (when it has one) and each project's
/// that has one, counting the calls of the project's runs.
const BUDGETS: &str = "SELECT 'fleet' AS scope, NULL::text AS project_id, \
       coalesce(sum(c.prompt_tokens + c.completion_tokens), 0)::bigint AS spent, \
       coalesce($2::bigint, 0) AS budget \
  FROM gateway_calls c WHERE $2::bigint IS NOT NULL AND c.created_at > now() - $1 \
 UNION ALL \
SELECT p.id, p.id, coalesce((SELECT sum(c.prompt_tokens + c.completion_tokens) \
         FROM gateway_calls c JOIN runs r ON r.id = c.run_id JOIN beads b ON b.id = r.bead_id \
        WHERE b.project_id = p.id AND c.created_at > now() - $1), 0)::bigint, p.token_budget \
  FROM projects p WHERE p.token_budget IS NOT NULL";

async fn budgets(conn: &mut Conn, policy: &SpendPolicy) -> Result<Vec<Budget>> {
    let rows: Vec<Budget> = Prepared(
        diesel::sql_query(BUDGETS)
            .bind::<Interval, _>(interval(policy.window))
            .bind::<Nullable<BigInt>, _>(policy.fleet_budget),
    )
    .load(conn)
    .await?;
    // The fleet's row is there even without a fleet budget (an aggregate always answers).
    Ok(rows.into_iter().filter(|b| b.scope != "fleet" || policy.fleet_budget.is_some()).collect())
}

/// Every budget's standing now (for `/api/v1/status` and the dashboard).
pub async fn standing(conn: &mut Conn, policy: &SpendPolicy) -> Result<Vec<Spend>> {
    Ok(budgets(conn, policy)
        .await?
        .into_iter()
        .map(|b| Spend {
            held: b.spent >= b.budget,
            scope: b.scope,
            spent: b.spent,
            budget: b.budget,
        })
        .collect())
}

/// Sums the spend again and brings `spend_holds` in line with it, in one transaction: a
/// budget reached is held (and said, once, with `spend.limited`), a hold whose budget has
/// room again or is gone is lifted (`spend.resumed`). Returns whether anything changed.
pub async fn refresh_holds(conn: &mut Conn, policy: &SpendPolicy) -> Result<bool> {
    use crate::db::schema::spend_holds;
    use diesel::{ExpressionMethods, QueryDsl};
    let over: Vec<Budget> =
        budgets(conn, policy).await?.into_iter().filter(|b| b.spent >= b.budget).collect();
    let window_h = policy.window.as_secs_f64() / 3600.0;
    conn.transaction::<_, Error, _>(async move |conn| {
        let scopes: Vec<&str> = over.iter().map(|b| b.scope.as_str()).collect();
        let lifted: Vec<(String, Option<String>)> =
            diesel::delete(spend_holds::table.filter(spend_holds::scope.ne_all(&scopes)))
                .returning((spend_holds::scope, spend_holds::project_id))
                .get_results(conn)
                .await?;
        let mut changed = !lifted.is_empty();
        for (scope, project) in lifted {
            let data = serde_json::json!({ "scope": scope });
            say(conn, Kind::SpendResumed, project.as_deref(), data).await?;
        }
        for b in &over {
            let held: Option<String> = diesel::insert_into(spend_holds::table)
                .values((
                    spend_holds::scope.eq(&b.scope),
                    spend_holds::project_id.eq(&b.project_id),
                    spend_holds::spent.eq(b.spent),
                    spend_holds::budget.eq(b.budget),
                ))
                .on_conflict(spend_holds::scope)
                .do_nothing()
                .returning(spend_holds::scope)
                .get_result(conn)
                .await
                .optional()?;
            if held.is_some() {
                changed = true;
                tracing::warn!(scope = %b.scope, spent = b.spent, budget = b.budget, "a token budget is spent: new claims stop");
                let data = serde_json::json!({
                    "scope": b.scope, "spent": b.spent, "budget": b.budget, "window_hours": window_h,
                });
                say(conn, Kind::SpendLimited, b.project_id.as_deref(), data).await?;
            }
        }
        Ok(changed)
    })
    .await
}

async fn say(
    conn: &mut Conn,
    kind: Kind,
    project: Option<&str>,
    data: serde_json::Value,
) -> Result<()> {
    Activity::record(
        conn,
        Record { kind, project_id: project, bead_id: None, actor: Actor::System, data },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(closed: &[&str], room: &[(&str, usize)]) -> Gate {
        Gate {
            closed: closed.iter().map(|s| s.to_string()).collect(),
            room: room.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
            ..Gate::default()
        }
    }

    #[test]
    fn a_project_takes_claims_until_its_room_is_gone_and_is_closed_after() {
        let mut g = gate(&["full"], &[("web", 2)]);
        assert!(g.take("web") && g.take("web"));
        assert!(!g.take("web"), "the third claim has no room");
        assert!(g.closed().contains(&"web".to_owned()));
        assert!(!g.take("full"));
        assert!(g.take("free"), "a project without limits always has room");
    }
}
