//! The notifier: a durable reader of the activity feed that turns each final row into
//! notifications exactly once. Its place is a row of `feed_cursors`, locked, read and moved
//! in the same transaction as the notifications it writes, so any number of replicas may
//! run it (the lock takes them in turn) and a crash repeats nothing and loses nothing.
//! After each commit it publishes what it raised on the bus, for the notification streams.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Notification;
use super::rules::{Facts, Trigger, targets};
use crate::activity::Activity;
use crate::db::schema::feed_cursors;
use crate::db::{Conn, Pool};
use crate::error::{Error, Result};
use crate::events::{Bus, Event, Filter, Kind, Position, Received};

/// The notifier's row in `feed_cursors`.
const CURSOR: &str = "notifier";
/// Activity rows read per step.
const PAGE: i64 = 200;
/// Read this often without being woken (a bus that missed an event, rows held back by an
/// older transaction).
const POLL: Duration = Duration::from_secs(1);

pub struct Notifier {
    pool: Pool,
    bus: Bus,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read this many activity rows.
    Worked(usize),
    Idle,
}

impl Notifier {
    pub fn new(pool: Pool, bus: Bus) -> Notifier {
        Notifier { pool, bus }
    }

    /// Reads the next final activity rows after the cursor, raises their notifications and
    /// moves the cursor, in one transaction; then publishes what it raised.
    pub async fn step(&self) -> Result<Step> {
        let mut conn = self.pool.get().await?;
        let (read, raised) = conn
            .transaction::<_, Error, _>(async |conn| {
                let cursor = lock_cursor(conn).await?;
                let rows = Activity::replay(conn, cursor, &Filter::default(), PAGE).await?;
                let Some(last) = rows.last().map(Activity::position) else {
                    return Ok((0, Vec::new()));
                };
                let mut raised = Vec::new();
                for row in &rows {
                    let Some(trigger) = Trigger::of(row) else { continue };
                    let facts = Facts::load(conn, row, &trigger).await?;
                    let found = targets(row, &trigger, &facts);
                    raised.extend(Notification::raise(conn, row.id, &found).await?);
                }
                move_cursor(conn, last).await?;
                let events = events(conn, raised).await?;
                Ok((rows.len(), events))
            })
            .await?;
        if !raised.is_empty() {
            tracing::debug!(activity.rows = read, notifications = raised.len(), "notified");
        }
        for event in raised {
            self.bus.publish(event);
        }
        Ok(if read > 0 { Step::Worked(read) } else { Step::Idle })
    }

    /// How far the notifier has read; `None` before its first step.
    pub async fn position(&self) -> Result<Option<Position>> {
        let mut conn = self.pool.get().await?;
        let found: Option<(i64, i64)> = feed_cursors::table
            .find(CURSOR)
            .select((feed_cursors::tx, feed_cursors::id))
            .first(&mut conn)
            .await
            .optional()?;
        Ok(found.map(|(tx, id)| Position { tx, id }))
    }

    /// Steps until idle, then waits for a stored event on the bus (new activity), a lag
    /// (some were missed), the poll, or cancellation.
    pub async fn run(self, cancel: CancellationToken) {
        let mut events = self.bus.subscribe();
        let mut bus_open = true;
        let mut failures = 0u32;
        loop {
            // What arrived while stepping is covered by the step that follows.
            while let Some(Some(_)) = events.recv().now_or_never() {}
            let wait = match self.step().await {
                Ok(Step::Worked(_)) => {
                    failures = 0;
                    if cancel.is_cancelled() {
                        return;
                    }
                    continue;
                }
                Ok(Step::Idle) => {
                    failures = 0;
                    POLL
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, "the notifier could not step");
                    }
                    (POLL * failures).min(Duration::from_secs(10))
                }
            };
            let deadline = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    received = events.recv(), if bus_open => match received {
                        Some(Received::Event(e)) if e.id.is_some() => break,
                        Some(Received::Event(_)) => {}
                        Some(Received::Lagged(_)) => break,
                        None => bus_open = false,
                    },
                }
            }
        }
    }
}

/// Locks the cursor for this transaction, starting it at the end of the feed the first
/// time: what happened before the notifier first ran notifies nobody.
async fn lock_cursor(conn: &mut Conn) -> Result<Position> {
    if let Some(found) = locked(conn).await? {
        return Ok(found);
    }
    let end = Activity::feed_end(conn).await?;
    diesel::insert_into(feed_cursors::table)
        .values((
            feed_cursors::name.eq(CURSOR),
            feed_cursors::tx.eq(end.tx),
            feed_cursors::id.eq(end.id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    // Another replica may have won the insert; either way the row exists now.
    locked(conn)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the notifier's cursor vanished")))
}

async fn locked(conn: &mut Conn) -> Result<Option<Position>> {
    let found: Option<(i64, i64)> = feed_cursors::table
        .find(CURSOR)
        .select((feed_cursors::tx, feed_cursors::id))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    Ok(found.map(|(tx, id)| Position { tx, id }))
}

async fn move_cursor(conn: &mut Conn, to: Position) -> Result<()> {
    diesel::update(feed_cursors::table.find(CURSOR))
        .set((
            feed_cursors::tx.eq(to.tx),
            feed_cursors::id.eq(to.id),
            feed_cursors::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// One event per notification raised (its latest state when raised twice in a step), with
/// its user's unread count.
async fn events(conn: &mut Conn, raised: Vec<Notification>) -> Result<Vec<Event>> {
    let mut latest: Vec<Notification> = Vec::with_capacity(raised.len());
    for n in raised {
        match latest.iter_mut().find(|l| l.id == n.id) {
            Some(seen) if seen.seq < n.seq => *seen = n,
            Some(_) => {}
            None => latest.push(n),
        }
    }
    let mut users: Vec<_> = latest.iter().map(|n| n.user_id).collect();
    users.sort_unstable();
    users.dedup();
    let unread: HashMap<_, _> = Notification::unread_counts(conn, &users).await?;
    latest
        .into_iter()
        .map(|n| {
            let mut data = serde_json::to_value(&n).map_err(anyhow::Error::from)?;
            data["unread"] = unread.get(&n.user_id).copied().unwrap_or(0).into();
            Ok(Event::live(Kind::Notification, n.project_id.as_deref(), n.bead_id.as_deref(), data))
        })
        .collect()
}
