//! Wake-ups from other processes: a connection of its own that `LISTEN`s on the channel every
//! run's end notifies (`Claim::WAKE_CHANNEL`). Best effort: when it cannot connect or the
//! connection drops, the dispatcher still sweeps on its interval, and the next wait tries
//! again.

use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures_util::{FutureExt, StreamExt};

use crate::beads::Claim;
use crate::db::Pool;

/// After a failed attempt to listen, wait this long before trying again.
const RETRY: Duration = Duration::from_secs(5);

pub struct Wakes {
    pool: Pool,
    conn: Option<AsyncPgConnection>,
    retry_at: Option<Instant>,
}

impl Wakes {
    pub fn new(pool: Pool) -> Self {
        Wakes { pool, conn: None, retry_at: None }
    }

    /// Resolves when at least one notification arrived, taking every one already queued
    /// (so a burst is one wake). Pending forever while there is no listening connection.
    pub async fn next(&mut self) {
        if self.conn.is_none() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
            self.conn = self.connect().await;
            self.retry_at = self.conn.is_none().then(|| Instant::now() + RETRY);
        }
        let Some(conn) = self.conn.as_mut() else {
            return std::future::pending().await;
        };
        let failed = {
            let mut stream = std::pin::pin!(conn.notifications_stream());
            let mut failed = matches!(stream.next().await, Some(Err(_)) | None);
            while let Some(Some(more)) = stream.next().now_or_never() {
                failed |= more.is_err();
            }
            failed
        };
        if failed {
            tracing::warn!("the dispatch wake-up connection failed; sweeping on the interval");
            self.conn = None;
            self.retry_at = Some(Instant::now() + RETRY);
        }
    }

    /// A connection taken out of the pool for good (it must not go back with a `LISTEN` on
    /// it, nor hold a pool slot while it waits).
    async fn connect(&self) -> Option<AsyncPgConnection> {
        let conn = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no connection to listen for dispatch wake-ups");
                return None;
            }
        };
        let mut conn = deadpool::managed::Object::take(conn);
        match conn.batch_execute(&format!("LISTEN {}", Claim::WAKE_CHANNEL)).await {
            Ok(()) => Some(conn),
            Err(e) => {
                tracing::warn!(error = %e, "could not listen for dispatch wake-ups");
                None
            }
        }
    }
}
