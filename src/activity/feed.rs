//! The feed: reads activity rows as they become final, in commit order, and hands each to
//! the bus once. A row is final when every transaction older than its own has ended, so a
//! row that commits late is never skipped and none is read twice. Replicas each run their
//! own feed; each sends only the rows it wrote to the others, so every event leaves once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Activity;
use crate::db::Pool;
use crate::error::Result;
use crate::events::{Bus, Position};

/// Rows read per step.
const PAGE: i64 = 500;
/// First wait when the next row is held back by an older transaction still running.
const HELD_BACK: Duration = Duration::from_millis(10);

pub struct Feed {
    pool: Pool,
    bus: Bus,
    position: Position,
    /// The horizon of the last read, when rows were held back behind it: until it moves,
    /// nothing new can be final, so a step reads only the horizon.
    held_below: Option<i64>,
    /// Read this often without being woken (another replica's write when the bus cannot
    /// say so, a transaction that ended without waking anyone).
    poll: Duration,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStep {
    /// Read this many rows (an unknown kind is read and skipped, not delivered).
    Read(usize),
    /// Committed rows wait for an older transaction to end.
    HeldBack,
    Idle,
}

impl Feed {
    /// A feed that starts with what commits from now on.
    pub async fn start(pool: Pool, bus: Bus, poll: Duration) -> Result<Feed> {
        let position = Activity::feed_end(&mut *pool.get().await?).await?;
        Ok(Feed { pool, bus, position, held_below: None, poll })
    }

    pub fn position(&self) -> Position {
        self.position
    }

    pub async fn step(&mut self) -> Result<FeedStep> {
        let (rows, held) = {
            let mut conn = self.pool.get().await?;
            let horizon = Activity::horizon(&mut conn).await?;
            if self.held_below == Some(horizon) {
                return Ok(FeedStep::HeldBack);
            }
            let (rows, held) = Activity::feed_page(&mut conn, self.position, horizon, PAGE).await?;
            self.held_below = held.then_some(horizon);
            (rows, held)
        };
        let read = rows.len();
        for row in rows {
            self.position = row.position();
            let own = row.origin == self.bus.origin();
            let (id, kind) = (row.id, row.kind.clone());
            match row.into_event() {
                Some(event) => {
                    let metrics = crate::metrics::get();
                    if own {
                        metrics.observe_own(&event);
                    }
                    metrics.delivered(if own { "own" } else { "peer" }, &event);
                    self.bus.deliver(Arc::new(event), own)
                }
                None => tracing::warn!(activity.id = id, kind, "skipping an unknown kind of event"),
            }
        }
        Ok(if read > 0 {
            FeedStep::Read(read)
        } else if held {
            FeedStep::HeldBack
        } else {
            FeedStep::Idle
        })
    }

    /// Steps until cancelled: at once after a delivery, soon when held back, otherwise
    /// when woken (`Bus::committed`, another replica's event) or at the poll.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut held_wait = HELD_BACK;
        let mut failures = 0u32;
        loop {
            let wait = match self.step().await {
                Ok(FeedStep::Read(_)) => {
                    held_wait = HELD_BACK;
                    failures = 0;
                    if cancel.is_cancelled() {
                        break;
                    }
                    continue;
                }
                Ok(FeedStep::HeldBack) => {
                    let wait = held_wait;
                    held_wait = (held_wait * 2).min(self.poll);
                    wait
                }
                Ok(FeedStep::Idle) => {
                    held_wait = HELD_BACK;
                    failures = 0;
                    self.poll
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, "the activity feed could not read");
                    }
                    (self.poll * failures.min(20)).min(Duration::from_secs(5))
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.bus.committed_notify().notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // At shutdown, what the stages stopped before it wrote (runs handed over, replies
        // interrupted) goes out before the bus flushes; a bounded drain, not a wait.
        for _ in 0..PAGE {
            if !matches!(self.step().await, Ok(FeedStep::Read(_))) {
                break;
            }
        }
    }
}
