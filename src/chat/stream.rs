//! Following one conversation (its SSE stream): Postgres says what was written after the id
//! the reader last saw; the stream's `Wake` only says when to ask (an event announced by
//! any replica, or the wakers' poll having seen the conversation's latest id grow). Each
//! event reaches the reader once, in order (see `events` for why ids are commit order).

use std::collections::VecDeque;

use uuid::Uuid;

use super::events::{ChatEvent, ChatWakers, PAGE};
use crate::db::Pool;
use crate::error::Result;
use crate::events::Wake;

pub struct ChatFollower {
    pool: Pool,
    wake: Wake,
    conversation: Uuid,
    seen: i64,
    backlog: VecDeque<ChatEvent>,
    catch_up: bool,
}

impl ChatFollower {
    /// Follows `conversation` from now on, or after the event `after`.
    pub async fn start(
        pool: Pool,
        wakers: &ChatWakers,
        conversation: Uuid,
        after: Option<i64>,
    ) -> Result<ChatFollower> {
        // Registered before the first read, so an event after it wakes this stream.
        let wake = wakers.follow(conversation);
        let seen = match after {
            Some(id) => id,
            None => ChatEvent::last_id(&mut *pool.get().await?, conversation).await?,
        };
        Ok(ChatFollower {
            pool,
            wake,
            conversation,
            seen,
            backlog: VecDeque::new(),
            catch_up: after.is_some(),
        })
    }

    /// The next event; `None` once the wake-ups have ended (shutdown).
    pub async fn next(&mut self) -> Result<Option<ChatEvent>> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Ok(Some(e));
            }
            if self.catch_up {
                let mut conn = self.pool.get().await?;
                let rows = ChatEvent::after(&mut conn, self.conversation, self.seen, PAGE).await?;
                self.catch_up = rows.len() as i64 == PAGE;
                if let Some(last) = rows.last() {
                    self.seen = last.id;
                }
                self.backlog.extend(rows);
                continue;
            }
            if !self.wake.wait().await {
                return Ok(None);
            }
            self.catch_up = true;
        }
    }
}
