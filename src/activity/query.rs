//! Reading the history: pages for people (newest first, with filters) and the feed in commit
//! order for streams (`(tx, id)`, final below the oldest running transaction).

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::RunQueryDsl;

use super::Activity;
use crate::db::Conn;
use crate::db::schema::activity;
use crate::error::Result;
use crate::events::{Filter, Position};

/// First of two statements reading the horizon: the newest transaction id any snapshot
/// could see now (nothing at or above it has committed), after dropping this session's
/// cached copy of the server's activity, so that the second statement reads it afresh.
const SNAPSHOT_XMAX: &str = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS x \
       FROM (SELECT pg_stat_clear_snapshot()) AS cleared";

/// Second statement: the oldest transaction of this database still running, as a 64-bit
/// id (`backend_xid` is the 32-bit form: its epoch is the one nearest `$1`), or `$1`. Read
/// after `$1`, so a transaction below `$1` that is not in the list had ended.
const OLDEST_RUNNING: &str = "SELECT coalesce(min(CASE WHEN d < 2147483648 THEN $1 - d \
       ELSE $1 + (4294967296 - d) END), $1) AS x \
     FROM (SELECT (($1 & 4294967295) - a.backend_xid::text::bigint + 4294967296) % 4294967296 AS d \
             FROM pg_stat_activity a \
            WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL) AS running";

#[derive(QueryableByName)]
struct Xid {
    #[diesel(sql_type = BigInt)]
    x: i64,
}

type Boxed<'a> = activity::BoxedQuery<'a, Pg>;

/// `GET /api/v1/activity`: which rows, and where the page starts.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Filter,
    pub since: Option<DateTime<Utc>>,
    /// Newest first, older than this id.
    pub before: Option<i64>,
    pub limit: i64,
}

fn filtered<'a>(filter: &'a Filter) -> Boxed<'a> {
    let mut q = activity::table.into_boxed();
    if let Some(p) = &filter.project {
        q = q.filter(activity::project_id.eq(p));
    }
    if let Some(b) = &filter.bead {
        q = q.filter(activity::bead_id.eq(b));
    }
    if let Some(a) = filter.agent {
        q = q.filter(activity::actor_agent_id.eq(a));
    }
    if let Some(k) = &filter.kind {
        q = q.filter(activity::kind.like(k.like_pattern()));
    }
    q
}

fn after_position(p: Position) -> Box<dyn BoxableExpression<activity::table, Pg, SqlType = Bool>> {
    Box::new(
        sql::<Bool>("(activity.tx, activity.id) > (")
            .bind::<BigInt, _>(p.tx)
            .sql(", ")
            .bind::<BigInt, _>(p.id)
            .sql(")"),
    )
}

/// The rows of `q` after `after` in feed order that are final below `horizon`.
fn final_after(q: Boxed<'_>, after: Position, horizon: i64) -> Boxed<'_> {
    q.filter(after_position(after)).filter(activity::tx.lt(horizon))
}

impl Activity {
    /// A page of history, newest first.
    pub async fn list(conn: &mut Conn, q: &ListQuery) -> Result<Vec<Activity>> {
        let mut query = filtered(&q.filter);
        if let Some(since) = q.since {
            query = query.filter(activity::created_at.ge(since));
        }
        if let Some(before) = q.before {
            query = query.filter(activity::id.lt(before));
        }
        Ok(query
            .order(activity::id.desc())
            .limit(q.limit)
            .select(Activity::as_select())
            .load(conn)
            .await?)
    }

    /// The feed after `after`, in order, that is final now: what a stream sends next.
    pub async fn replay(
        conn: &mut Conn,
        after: Position,
        filter: &Filter,
        limit: i64,
    ) -> Result<Vec<Activity>> {
        let horizon = Activity::horizon(conn).await?;
        Ok(final_after(filtered(filter), after, horizon)
            .order((activity::tx.asc(), activity::id.asc()))
            .limit(limit)
            .select(Activity::as_select())
            .load(conn)
            .await?)
    }

    /// The next rows of the whole feed after `after` that are final below `horizon` (read
    /// once by the caller, then used as a plain value: the snapshot function is costly per
    /// row), and whether rows that are not final yet follow them (an older transaction is
    /// still running).
    pub async fn feed_page(
        conn: &mut Conn,
        after: Position,
        horizon: i64,
        limit: i64,
    ) -> Result<(Vec<Activity>, bool)> {
        let rows: Vec<Activity> = final_after(activity::table.into_boxed(), after, horizon)
            .order((activity::tx.asc(), activity::id.asc()))
            .limit(limit)
            .select(Activity::as_select())
            .load(conn)
            .await?;
        if rows.len() as i64 == limit {
            return Ok((rows, false));
        }
        let last = rows.last().map_or(after, Activity::position);
        // Ordered, so that it is one step down the feed index (an unordered EXISTS may
        // scan the table when the planner expects many rows).
        let next: Option<i64> = activity::table
            .filter(after_position(last))
            .order((activity::tx.asc(), activity::id.asc()))
            .select(activity::id)
            .first(conn)
            .await
            .optional()?;
        Ok((rows, next.is_some()))
    }

    /// The horizon: every row whose `tx` is below it is final (committed or never will
    /// be), and a row that commits later sorts at or above it. Only transactions of this
    /// database hold it back (a long one elsewhere on the server does not), and only those
    /// of roles whose sessions Loom may see, which are Loom's own.
    pub async fn horizon(conn: &mut Conn) -> Result<i64> {
        let xmax: Xid = diesel::sql_query(SNAPSHOT_XMAX).get_result(conn).await?;
        let oldest: Xid =
            diesel::sql_query(OLDEST_RUNNING).bind::<BigInt, _>(xmax.x).get_result(conn).await?;
        Ok(oldest.x.min(xmax.x))
    }

    /// Where the final part of the feed ends now: a reader starting here sees only what
    /// commits from now on.
    pub async fn feed_end(conn: &mut Conn) -> Result<Position> {
        let horizon = Activity::horizon(conn).await?;
        let last: Option<(i64, i64)> =
            final_after(activity::table.into_boxed(), Position::START, horizon)
                .order((activity::tx.desc(), activity::id.desc()))
                .select((activity::tx, activity::id))
                .first(conn)
                .await
                .optional()?;
        Ok(last.map_or(Position::START, |(tx, id)| Position { tx, id }))
    }

    /// The feed position of a row, for a stream resuming after it.
    pub async fn position_of(conn: &mut Conn, id: i64) -> Result<Option<Position>> {
        let found: Option<(i64, i64)> = activity::table
            .find(id)
            .select((activity::tx, activity::id))
            .first(conn)
            .await
            .optional()?;
        Ok(found.map(|(tx, id)| Position { tx, id }))
    }
}
