//! What the recorded data says about how work goes: beads closed per day, lead time,
//! attempts and run outcomes, and the gateway's tokens and latency per day and per agent.
//! All over a window of recent days (UTC), straight from the tables that record it.

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Double, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::db::Conn;
use crate::error::{Error, Result};

/// Days a window may span.
pub const MAX_DAYS: i32 = 365;

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Day {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    /// Beads closed that day.
    #[diesel(sql_type = BigInt)]
    pub closed: i64,
    /// Gateway tokens (prompt plus completion) spent that day.
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = BigInt)]
    pub calls: i64,
    /// Median gateway latency that day, when there were calls.
    #[diesel(sql_type = Nullable<Double>)]
    pub latency_p50_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct LeadTime {
    #[diesel(sql_type = BigInt)]
    pub closed: i64,
    /// From filing to closing, in hours.
    #[diesel(sql_type = Nullable<Double>)]
    pub p50_hours: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub p90_hours: Option<f64>,
    /// Attempts the closed beads took, on average.
    #[diesel(sql_type = Nullable<Double>)]
    pub mean_attempts: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Outcome {
    #[diesel(sql_type = Text)]
    pub outcome: String,
    #[diesel(sql_type = BigInt)]
    pub runs: i64,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct AgentUse {
    #[diesel(sql_type = Text)]
    pub agent: String,
    #[diesel(sql_type = BigInt)]
    pub calls: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub tokens: i64,
    #[diesel(sql_type = Nullable<Double>)]
    pub latency_p50_ms: Option<f64>,
}

/// Everything the analytics page shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub days: Vec<Day>,
    pub lead: LeadTime,
    pub outcomes: Vec<Outcome>,
    pub agents: Vec<AgentUse>,
}

const PER_DAY: &str = "\
WITH days AS (
    SELECT d::date AS day FROM generate_series(
        (now() AT TIME ZONE 'UTC')::date - ($1 - 1), (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d),
closed AS (
    SELECT (closed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM beads
     WHERE closed_at >= (SELECT min(day) FROM days) AND ($2::text IS NULL OR project_id = $2)
     GROUP BY 1),
calls AS (
    SELECT (g.created_at AT TIME ZONE 'UTC')::date AS day,
           sum(g.prompt_tokens + g.completion_tokens)::bigint AS tokens, count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY g.latency_ms) AS p50
      FROM gateway_calls g LEFT JOIN runs r ON r.id = g.run_id LEFT JOIN beads b ON b.id = r.bead_id
     WHERE g.created_at >= (SELECT min(day) FROM days) AND ($2::text IS NULL OR b.project_id = $2)
     GROUP BY 1)
SELECT days.day, coalesce(closed.n, 0) AS closed, coalesce(calls.tokens, 0) AS tokens,
       coalesce(calls.n, 0) AS calls, calls.p50 AS latency_p50_ms
  FROM days LEFT JOIN closed USING (day) LEFT JOIN calls USING (day) ORDER BY days.day";

const LEAD: &str = "\
SELECT count(*) AS closed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - created_at)) / 3600 AS p50_hours,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM closed_at - created_at)) / 3600 AS p90_hours,
       avg(attempts)::float8 AS mean_attempts
  FROM beads
 WHERE closed_at >= now() - make_interval(days => $1) AND ($2::text IS NULL OR project_id = $2)";

const OUTCOMES: &str = "\
SELECT coalesce(r.outcome::text, 'running') AS outcome, count(*) AS runs
  FROM runs r JOIN beads b ON b.id = r.bead_id
 WHERE r.started_at >= now() - make_interval(days => $1) AND ($2::text IS NULL OR b.project_id = $2)
 GROUP BY 1 ORDER BY 2 DESC";

const AGENTS: &str = "\
SELECT coalesce(a.name, '(none)') AS agent, count(*) AS calls, count(*) FILTER (WHERE NOT g.ok) AS failed,
       sum(g.prompt_tokens + g.completion_tokens)::bigint AS tokens,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY g.latency_ms) AS latency_p50_ms
  FROM gateway_calls g LEFT JOIN agents a ON a.id = g.agent_id
       LEFT JOIN runs r ON r.id = g.run_id LEFT JOIN beads b ON b.id = r.bead_id
 WHERE g.created_at >= now() - make_interval(days => $1) AND ($2::text IS NULL OR b.project_id = $2)
 GROUP BY 1 ORDER BY 4 DESC NULLS LAST LIMIT 50";

/// The report over the last `days` days, of one project or all.
pub async fn report(conn: &mut Conn, days: i32, project: Option<&str>) -> Result<Report> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::invalid("invalid_days", format!("a window is 1 to {MAX_DAYS} days")));
    }
    let project = project.map(str::to_owned);
    let q = |sql: &'static str| {
        diesel::sql_query(sql).bind::<Integer, _>(days).bind::<Nullable<Text>, _>(project.clone())
    };
    Ok(Report {
        days: q(PER_DAY).load(conn).await?,
        lead: q(LEAD).get_result(conn).await?,
        outcomes: q(OUTCOMES).load(conn).await?,
        agents: q(AGENTS).load(conn).await?,
    })
}
