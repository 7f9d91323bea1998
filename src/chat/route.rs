//! Which replica writes a reply. Loom's clones and worktrees are each replica's own, and a
//! project's runs are worked by the one replica that owns its executor (`executor_leases`):
//! a conversation's agent must act in that replica's worktree, or its edits would be
//! invisible to the next message taken elsewhere and lost to the run after a handoff. So a
//! reply is written by the project's executor owner when one is alive, else by the replica
//! that took the message. The hand-over is a `chat.reply` event on the bus; if it is lost,
//! the reply's lease lapses and the ticker fails it (`reply_lost`), so the person can send
//! the message again.
//!
//! The same task stops a reply this replica writes when another replica recorded its end
//! (a person stopped it there): the `done` or `error` announced for it.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Conversation;
use super::reply::Chat;
use crate::db::Conn;
use crate::db::schema::executor_leases;
use crate::error::Result;
use crate::events::{Bus, Event, Kind, Received, Subscription};

/// The live owner of the project's executor, if any.
pub async fn writer_of(conn: &mut Conn, project: &str) -> Result<Option<Uuid>> {
    Ok(executor_leases::table
        .find(project)
        .filter(executor_leases::expires_at.gt(diesel::dsl::now))
        .select(executor_leases::owner)
        .first(conn)
        .await
        .optional()?)
}

/// Asks the replica whose executors are `owner` to write the reply `message`.
pub fn hand_over(bus: &Bus, conversation: &Conversation, message: i64, person: Uuid, owner: Uuid) {
    let data = serde_json::json!({
        "conversation": conversation.id,
        "message": message,
        "person": person,
        "owner": owner,
    });
    let event = Event::live(
        Kind::ChatReply,
        Some(&conversation.project_id),
        conversation.bead_id.as_deref(),
        data,
    );
    bus.publish(event);
}

impl Chat {
    /// Reads the bus until it closes or `cancel` fires: writes the replies handed to this
    /// replica, and stops those of its own that ended elsewhere.
    pub async fn follow(self, mut events: Subscription, cancel: CancellationToken) {
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                received = events.recv() => received,
            };
            let Some(Received::Event(e)) = received else {
                if received.is_none() {
                    return;
                }
                continue;
            };
            match e.kind {
                Kind::ChatDelta if matches!(e.data["kind"].as_str(), Some("done" | "error")) => {
                    if let Some(message) = e.data["message"].as_i64() {
                        self.cancel(message);
                    }
                }
                Kind::ChatReply => self.take_over(&e).await,
                _ => {}
            }
        }
    }

    async fn take_over(&self, e: &Event) {
        let mine =
            self.executor().is_some_and(|me| e.data["owner"].as_str() == Some(&me.to_string()));
        if !mine {
            return;
        }
        let parsed = (
            e.data["conversation"].as_str().and_then(|c| c.parse::<Uuid>().ok()),
            e.data["message"].as_i64(),
            e.data["person"].as_str().and_then(|p| p.parse::<Uuid>().ok()),
        );
        let (Some(conversation), Some(message), Some(person)) = parsed else { return };
        let found = async {
            let mut conn = self.pool().get().await?;
            Conversation::find(&mut conn, conversation).await
        };
        match found.await {
            Ok(conversation) => self.reply(conversation, message, person),
            // Its lease lapses and the ticker fails it: the person sees why.
            Err(e) => {
                tracing::warn!(message.id = message, error = %e, "could not take over a chat reply")
            }
        }
    }
}
