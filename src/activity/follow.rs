//! Following the feed for one reader (an SSE client): live events from the bus, after a
//! replay of what it missed (from the hub's ring when it still holds it, else Postgres), and
//! again after it fell behind. Each stored event reaches it once, in feed order.

use std::collections::VecDeque;
use std::sync::Arc;

use super::Activity;
use crate::db::Pool;
use crate::error::{Error, Result};
use crate::events::{Bus, Event, Filter, Position, Received, Subscription};

/// Rows read from Postgres at a time while catching up.
const PAGE: i64 = 500;

pub struct Follower {
    pool: Pool,
    bus: Bus,
    sub: Subscription,
    filter: Filter,
    /// The last stored event this reader is past.
    seen: Position,
    /// Events to send before listening again.
    backlog: VecDeque<Arc<Event>>,
    /// Still catching up from Postgres after this position.
    replaying: Option<Position>,
}

impl Follower {
    /// Follows from now on, or after the event `after` (an activity id the reader saw).
    pub async fn start(
        pool: Pool,
        bus: Bus,
        filter: Filter,
        after: Option<i64>,
    ) -> Result<Follower> {
        // Subscribe first: whatever the feed sends from here on is in the subscription, and
        // the replay covers everything before it.
        let sub = bus.subscribe();
        let seen = match after {
            // The id of an empty feed's opening: everything.
            Some(0) => Position::START,
            Some(id) => match bus.hub().position_of(id) {
                Some(p) => p,
                None => {
                    Activity::position_of(&mut *pool.get().await?, id).await?.ok_or_else(|| {
                        Error::invalid(
                            "unknown_last_event_id",
                            format!("no event {id} to resume after"),
                        )
                    })?
                }
            },
            // Everything final now happened before the reader came, even what the feed
            // has not sent yet.
            None => Activity::feed_end(&mut *pool.get().await?).await?,
        };
        let mut f =
            Follower { pool, bus, sub, filter, seen, backlog: VecDeque::new(), replaying: None };
        if after.is_some() {
            f.catch_up();
        }
        Ok(f)
    }

    /// Queues what came after `seen`: from the ring when it holds it all, else Postgres.
    fn catch_up(&mut self) {
        match self.bus.hub().replay_after(self.seen) {
            Some(events) => {
                for e in events {
                    self.take(e);
                }
            }
            None => self.replaying = Some(self.seen),
        }
    }

    /// The id to resume after, for a reader that has seen nothing yet.
    pub fn resume_id(&self) -> i64 {
        self.seen.id
    }

    /// Keeps an event for the reader unless it is past it or filtered out. Notifications
    /// and chat replies share the bus but go only on their own streams.
    fn take(&mut self, e: Arc<Event>) {
        if e.kind.has_own_stream() {
            return;
        }
        if let Some(p) = e.position {
            if p <= self.seen {
                return;
            }
            self.seen = p;
        }
        if self.filter.matches(&e) {
            self.backlog.push_back(e);
        }
    }

    async fn replay_page(&mut self, after: Position) -> Result<()> {
        let rows = {
            let mut conn = self.pool.get().await?;
            Activity::replay(&mut conn, after, &self.filter, PAGE).await?
        };
        let full = rows.len() as i64 == PAGE;
        let mut last = after;
        for row in rows {
            last = row.position();
            if let Some(e) = row.into_event() {
                self.take(Arc::new(e));
            }
        }
        // A short page reached the end of what is final; the bus has the rest.
        self.replaying = full.then_some(last);
        Ok(())
    }

    /// The next event for this reader; `None` when the bus has gone.
    pub async fn next(&mut self) -> Result<Option<Arc<Event>>> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Ok(Some(e));
            }
            if let Some(after) = self.replaying {
                self.replay_page(after).await?;
                continue;
            }
            match self.sub.recv().await {
                Some(Received::Event(e)) => self.take(e),
                Some(Received::Lagged(missed)) => {
                    tracing::debug!(missed, "a stream fell behind; catching up");
                    self.catch_up();
                }
                None => return Ok(None),
            }
        }
    }
}
