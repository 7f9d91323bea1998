//! A person's side of a conversation: posting a message (which opens the agent's reply) and
//! stopping a reply. Each is one transaction under the conversation's lock, with the
//! events it makes, so a reader sees the message, and later the reply, in commit order.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::events::{ChatEvent, EventKind};
use super::{ChatMessage, ChatRole, ChatState, Conversation, ConversationStatus};
use crate::db::Conn;
use crate::db::schema::{chat_messages, conversations};
use crate::error::{Error, Result};

/// The longest message a person may post, in characters.
pub const MAX_BODY: usize = 32_000;

/// What posting a message made: the stored message, the reply it opened (streaming), and
/// the id of the message's event, after which a reader sees the whole reply.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Posted {
    pub message: ChatMessage,
    pub reply: ChatMessage,
    pub event_id: i64,
}

fn reply_in_progress() -> Error {
    Error::conflict(
        "reply_in_progress",
        "the agent is still replying; wait for it to finish or stop it, then send this again",
    )
}

/// Checks a message's text: not blank, not too long.
pub fn check_body(body: &str) -> Result<&str> {
    let body = body.trim();
    if body.is_empty() {
        return Err(Error::invalid("empty_message", "write something to send"));
    }
    if body.chars().count() > MAX_BODY {
        return Err(Error::invalid(
            "message_too_long",
            format!("a message is at most {MAX_BODY} characters; send it in parts"),
        ));
    }
    Ok(body)
}

impl Conversation {
    /// Stores `user`'s message and opens the agent's reply under a lease of `lease`; the
    /// caller starts the reply once this has committed. Refused while a reply streams.
    pub async fn post(
        conn: &mut Conn,
        id: Uuid,
        body: &str,
        user: Uuid,
        lease: std::time::Duration,
    ) -> Result<(Conversation, Posted)> {
        let body = check_body(body)?.to_owned();
        let lease = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        let posted = conn
            .transaction::<_, Error, _>(async move |conn| {
                let conversation = Conversation::lock(conn, id).await?;
                if conversation.status == ConversationStatus::HandedOff {
                    return Err(Error::conflict(
                        "conversation_handed_off",
                        "this conversation's bead was handed back to autonomous work; start a \
                         new conversation to pair on it again",
                    ));
                }
                if streaming(conn, id).await?.is_some() {
                    return Err(reply_in_progress());
                }
                let message: ChatMessage = diesel::insert_into(chat_messages::table)
                    .values((
                        chat_messages::conversation_id.eq(id),
                        chat_messages::role.eq(ChatRole::User),
                        chat_messages::author_user_id.eq(user),
                        chat_messages::body.eq(&body),
                        chat_messages::finished_at.eq(diesel::dsl::now),
                    ))
                    .returning(ChatMessage::as_returning())
                    .get_result(conn)
                    .await?;
                let data = serde_json::to_value(&message).unwrap_or_default();
                let event_id =
                    ChatEvent::append(conn, id, Some(message.id), EventKind::Message, data).await?;
                let reply: ChatMessage = diesel::insert_into(chat_messages::table)
                    .values((
                        chat_messages::conversation_id.eq(id),
                        chat_messages::role.eq(ChatRole::Assistant),
                        chat_messages::author_agent_id.eq(conversation.agent_id),
                        chat_messages::state.eq(ChatState::Streaming),
                        chat_messages::lease_expires_at.eq(lease),
                    ))
                    .returning(ChatMessage::as_returning())
                    .get_result(conn)
                    .await
                    .map_err(|e| {
                        let e = Error::from(e);
                        if e.is_unique_violation() { reply_in_progress() } else { e }
                    })?;
                touch(conn, id).await?;
                Ok((conversation, Posted { message, reply, event_id }))
            })
            .await?;
        Ok(posted)
    }

    /// Stops the reply that is streaming: it ends `stopped` with what it had said, and its
    /// writer, here or on another replica, stops at its next write. Returns the stopped
    /// reply and the id of its `done` event.
    pub async fn stop(conn: &mut Conn, id: Uuid) -> Result<(Conversation, ChatMessage, i64)> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let conversation = Conversation::lock(conn, id).await?;
            let Some(reply) = streaming(conn, id).await? else {
                return Err(Error::conflict("not_replying", "no reply is streaming"));
            };
            let reply = end(conn, reply.id, ChatState::Stopped, None).await?;
            let event =
                ChatEvent::append(conn, id, Some(reply.id), EventKind::Done, done(&reply)).await?;
            Ok((conversation, reply, event))
        })
        .await
        .inspect(|_| crate::metrics::get().chat_reply("stopped"))
    }
}

/// The conversation's streaming reply, if any.
pub(super) async fn streaming(conn: &mut Conn, conversation: Uuid) -> Result<Option<ChatMessage>> {
    Ok(chat_messages::table
        .filter(chat_messages::conversation_id.eq(conversation))
        .filter(chat_messages::state.eq(ChatState::Streaming))
        .select(ChatMessage::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Ends a streaming reply in `state` (with `error` when it failed).
pub(super) async fn end(
    conn: &mut Conn,
    message: i64,
    state: ChatState,
    error: Option<&str>,
) -> Result<ChatMessage> {
    Ok(diesel::update(chat_messages::table.find(message))
        .set((
            chat_messages::state.eq(state),
            chat_messages::error.eq(error),
            chat_messages::lease_expires_at.eq(None::<chrono::DateTime<Utc>>),
            chat_messages::finished_at.eq(diesel::dsl::now),
        ))
        .returning(ChatMessage::as_returning())
        .get_result(conn)
        .await?)
}

/// A `done` event's data.
pub(super) fn done(reply: &ChatMessage) -> serde_json::Value {
    serde_json::json!({
        "message_id": reply.id,
        "state": reply.state,
        "tokens": {"prompt": reply.prompt_tokens, "completion": reply.completion_tokens},
    })
}

/// Marks the conversation as active now (lists are newest first).
pub(super) async fn touch(conn: &mut Conn, id: Uuid) -> Result<()> {
    diesel::update(conversations::table.find(id))
        .set(conversations::updated_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}
