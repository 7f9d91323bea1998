//! Following one user's notifications (their SSE stream). Postgres says what was raised
//! after the `seq` the reader last saw; the stream's `Wake` (see `wakers`) only says when
//! to ask: a raise for this user from any replica, or the wakers' own poll of Postgres
//! (after a lag on the bus, and on a timer) having seen this user's latest `seq` grow.
//! Each raise reaches the reader once, in order.

use std::collections::{HashMap, VecDeque};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::Notification;
use crate::db::schema::notifications;
use crate::db::{Conn, Pool};
use crate::error::Result;
use crate::events::{Event, Kind, Wake, Wakers, Watched};

/// What notification streams follow: each user's raises, positioned by `seq`.
pub struct Raises;

/// Wakes each user's notification streams (see `events::wakers`).
pub type NotificationWakers = Wakers<Raises>;

impl Watched for Raises {
    const WHAT: &'static str = "notification";

    fn raised(event: &Event) -> Option<(Uuid, Option<i64>)> {
        if event.kind != Kind::Notification {
            return None;
        }
        let user = event.data["user_id"].as_str()?.parse().ok()?;
        Some((user, event.data["seq"].as_i64()))
    }

    fn latest<'a>(
        conn: &'a mut Conn,
        keys: &'a [Uuid],
    ) -> impl Future<Output = Result<HashMap<Uuid, i64>>> + Send + 'a {
        Notification::last_seqs(conn, keys)
    }
}

const PAGE: i64 = 200;

/// A raise, as the stream sends it: the notification and the user's unread count then.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub seq: i64,
    pub data: serde_json::Value,
}

pub struct NotificationFollower {
    pool: Pool,
    wake: Wake,
    user: Uuid,
    seen: i64,
    backlog: VecDeque<Raised>,
    catch_up: bool,
}

impl Notification {
    /// The user's notifications raised after `seq`, in the order they were raised.
    pub async fn raised_after(
        conn: &mut Conn,
        user: Uuid,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        Ok(notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::seq.gt(seq))
            .order(notifications::seq.asc())
            .limit(limit)
            .select(Notification::as_select())
            .load(conn)
            .await?)
    }

    /// The `seq` of the user's latest raise (0 when none).
    pub async fn last_seq(conn: &mut Conn, user: Uuid) -> Result<i64> {
        let last: Option<i64> = notifications::table
            .filter(notifications::user_id.eq(user))
            .select(diesel::dsl::max(notifications::seq))
            .first(conn)
            .await?;
        Ok(last.unwrap_or(0))
    }

    /// The `seq` of each user's latest raise, in one query; users with none are absent.
    pub async fn last_seqs(conn: &mut Conn, users: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
        let rows: Vec<(Uuid, Option<i64>)> = notifications::table
            .filter(notifications::user_id.eq_any(users))
            .group_by(notifications::user_id)
            .select((notifications::user_id, diesel::dsl::max(notifications::seq)))
            .load(conn)
            .await?;
        Ok(rows.into_iter().filter_map(|(user, seq)| Some((user, seq?))).collect())
    }
}

impl NotificationFollower {
    /// Follows `user`'s raises from now on, or after `after` (a `seq` they saw).
    pub async fn start(
        pool: Pool,
        wakers: &NotificationWakers,
        user: Uuid,
        after: Option<i64>,
    ) -> Result<NotificationFollower> {
        // Registered before the first read, so a raise after it wakes this stream.
        let wake = wakers.follow(user);
        let seen = match after {
            Some(seq) => seq,
            None => Notification::last_seq(&mut *pool.get().await?, user).await?,
        };
        Ok(NotificationFollower {
            pool,
            wake,
            user,
            seen,
            backlog: VecDeque::new(),
            catch_up: after.is_some(),
        })
    }

    /// Queues what was raised after `seen`. State changes only once every read is done.
    async fn read_missed(&mut self) -> Result<()> {
        let mut conn = self.pool.get().await?;
        let rows = Notification::raised_after(&mut conn, self.user, self.seen, PAGE).await?;
        let unread = if rows.is_empty() {
            0
        } else {
            Notification::unread_count(&mut conn, self.user).await?
        };
        self.catch_up = rows.len() as i64 == PAGE;
        for n in rows {
            let mut data = serde_json::to_value(&n).unwrap_or_default();
            data["unread"] = unread.into();
            self.seen = self.seen.max(n.seq);
            self.backlog.push_back(Raised { seq: n.seq, data });
        }
        Ok(())
    }

    /// The next raise for this user; `None` once the wake-ups have ended (shutdown).
    pub async fn next(&mut self) -> Result<Option<Raised>> {
        loop {
            if let Some(r) = self.backlog.pop_front() {
                return Ok(Some(r));
            }
            if self.catch_up {
                self.read_missed().await?;
                continue;
            }
            if !self.wake.wait().await {
                return Ok(None);
            }
            self.catch_up = true;
        }
    }
}
