//! Replies whose writer died (its replica crashed or lost the database) would stream for
//! ever: once a reply's lease has lapsed, the ticker fails it with an `error` event, so its
//! readers see why and the person can send the message again. Each is a `ticker.healed`
//! activity row too, like every other healing.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::json;

use super::events::{ChatEvent, EventKind};
use super::messages::end;
use super::{ChatState, Conversation};
use crate::activity::{Activity, Actor, Record};
use crate::db::Conn;
use crate::db::schema::chat_messages;
use crate::error::{Error, Result};
use crate::events::Kind;

/// What the ticker tells a person whose reply was lost.
pub const LOST: &str = "the reply was lost: the Loom process writing it stopped; send the \
                        message again";

/// Streaming replies whose lease has lapsed: (conversation, message), oldest first.
pub async fn lapsed(conn: &mut Conn, limit: i64) -> Result<Vec<(uuid::Uuid, i64)>> {
    Ok(chat_messages::table
        .filter(chat_messages::state.eq(ChatState::Streaming))
        .filter(chat_messages::lease_expires_at.lt(diesel::dsl::now))
        .order(chat_messages::id.asc())
        .limit(limit)
        .select((chat_messages::conversation_id, chat_messages::id))
        .load(conn)
        .await?)
}

/// Fails one lapsed reply, re-checked under the conversation's lock (a renewal that
/// committed first wins). The conversation and the error event's id, when it failed it.
pub async fn fail_lapsed(
    conn: &mut Conn,
    conversation: uuid::Uuid,
    message: i64,
) -> Result<Option<(Conversation, i64)>> {
    conn.transaction::<_, Error, _>(async move |conn| {
        let locked = Conversation::lock(conn, conversation).await?;
        let still: Option<i64> = chat_messages::table
            .find(message)
            .filter(chat_messages::state.eq(ChatState::Streaming))
            .filter(chat_messages::lease_expires_at.lt(diesel::dsl::now))
            .select(chat_messages::id)
            .first(conn)
            .await
            .optional()?;
        if still.is_none() {
            return Ok(None);
        }
        end(conn, message, ChatState::Failed, Some(LOST)).await?;
        let data = json!({ "code": "reply_lost", "message": LOST, "message_id": message });
        let event =
            ChatEvent::append(conn, conversation, Some(message), EventKind::Error, data).await?;
        let record = Record {
            kind: Kind::TickerHealed,
            project_id: Some(&locked.project_id),
            bead_id: locked.bead_id.as_deref(),
            actor: Actor::System,
            data: json!({ "job": "fail_lost_replies", "conversation": conversation, "message": message }),
        };
        Activity::record(conn, record).await?;
        Ok(Some((locked, event)))
    })
    .await
}
