//! What a conversation's stream is made of: every event a reply sends (the person's message,
//! text deltas, actions and their results, the end) is a `chat_events` row first, so a reader
//! resumes after the last id it saw, from Postgres, on any replica.
//!
//! One writer at a time per conversation: every transaction that appends locks the
//! conversation's row first, so an event's id is taken after the previous event committed,
//! and a larger id is a later commit. A reader that has read up to id `n` has therefore seen
//! everything with a smaller id, and never has to look back. (`Wakers` relies on this too.)

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::Conversation;
use crate::db::Conn;
use crate::db::schema::{chat_events, conversations};
use crate::error::{Error, Result};
use crate::events::{Bus, Event, Kind, Wakers, Watched};

/// The kinds of event a conversation's stream sends (the SSE `event:` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The person's message, as stored.
    Message,
    /// Text of the reply as the gateway streams it: `{text}`.
    Delta,
    /// An action the agent is about to perform: `{action}`.
    Action,
    /// What it did: `{ok, output}`.
    ActionResult,
    /// The reply ended: `{message_id, state, tokens}`.
    Done,
    /// The reply failed: `{code, message}`, written for a person.
    Error,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Delta => "delta",
            EventKind::Action => "action",
            EventKind::ActionResult => "action_result",
            EventKind::Done => "done",
            EventKind::Error => "error",
        }
    }
}

/// One stored event.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = chat_events)]
pub struct ChatEvent {
    pub id: i64,
    #[serde(skip)]
    pub conversation_id: Uuid,
    pub message_id: Option<i64>,
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Events read per query by a stream catching up.
pub const PAGE: i64 = 500;

impl ChatEvent {
    /// Appends an event. The caller's transaction must hold the conversation's lock
    /// (`lock`), which is what orders ids by commit.
    pub async fn append(
        conn: &mut Conn,
        conversation: Uuid,
        message: Option<i64>,
        kind: EventKind,
        data: serde_json::Value,
    ) -> Result<i64> {
        Ok(diesel::insert_into(chat_events::table)
            .values((
                chat_events::conversation_id.eq(conversation),
                chat_events::message_id.eq(message),
                chat_events::kind.eq(kind.as_str()),
                chat_events::data.eq(data),
            ))
            .returning(chat_events::id)
            .get_result(conn)
            .await?)
    }

    /// The conversation's events after `after`, oldest first.
    pub async fn after(
        conn: &mut Conn,
        conversation: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChatEvent>> {
        Ok(chat_events::table
            .filter(chat_events::conversation_id.eq(conversation))
            .filter(chat_events::id.gt(after))
            .order(chat_events::id.asc())
            .limit(limit)
            .select(ChatEvent::as_select())
            .load(conn)
            .await?)
    }

    /// The id of the conversation's latest event (0 when it has none).
    pub async fn last_id(conn: &mut Conn, conversation: Uuid) -> Result<i64> {
        let last: Option<i64> = chat_events::table
            .filter(chat_events::conversation_id.eq(conversation))
            .select(diesel::dsl::max(chat_events::id))
            .first(conn)
            .await?;
        Ok(last.unwrap_or(0))
    }

    /// The newest `limit` events of the given kinds of a conversation, oldest first (what a
    /// page shows of past replies' actions).
    pub async fn latest_of(
        conn: &mut Conn,
        conversation: Uuid,
        kinds: &[EventKind],
        limit: i64,
    ) -> Result<Vec<ChatEvent>> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let mut rows: Vec<ChatEvent> = chat_events::table
            .filter(chat_events::conversation_id.eq(conversation))
            .filter(chat_events::kind.eq_any(kinds))
            .order(chat_events::id.desc())
            .limit(limit)
            .select(ChatEvent::as_select())
            .load(conn)
            .await?;
        rows.reverse();
        Ok(rows)
    }
}

impl Conversation {
    /// Locks the conversation's row for the rest of the transaction: every writer of its
    /// messages and events takes this first.
    pub async fn lock(conn: &mut Conn, id: Uuid) -> Result<Conversation> {
        conversations::table
            .find(id)
            .for_update()
            .select(Conversation::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("conversation {id}")))
    }
}

/// Tells every replica's readers of a conversation that it has events up to `id` (the last
/// of `kind`, about the message `message`): a wake-up only, the events themselves are read
/// from Postgres. The replica writing that message stops on its `done` or `error`.
pub fn announce(bus: &Bus, conversation: &Conversation, id: i64, kind: EventKind, message: i64) {
    let data = serde_json::json!({
        "conversation": conversation.id,
        "id": id,
        "kind": kind.as_str(),
        "message": message,
    });
    let event = Event::live(
        Kind::ChatDelta,
        Some(&conversation.project_id),
        conversation.bead_id.as_deref(),
        data,
    );
    bus.publish(event);
}

/// What conversation streams follow: each conversation's events, positioned by id.
pub struct Replies;

/// Wakes the streams of a conversation when it has new events (see `events::wakers`).
pub type ChatWakers = Wakers<Replies>;

impl Watched for Replies {
    const WHAT: &'static str = "chat";

    fn raised(event: &Event) -> Option<(Uuid, Option<i64>)> {
        if event.kind != Kind::ChatDelta {
            return None;
        }
        let conversation = event.data["conversation"].as_str()?.parse().ok()?;
        Some((conversation, event.data["id"].as_i64()))
    }

    async fn latest(conn: &mut Conn, keys: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
        let rows: Vec<(Uuid, Option<i64>)> = chat_events::table
            .filter(chat_events::conversation_id.eq_any(keys))
            .group_by(chat_events::conversation_id)
            .select((chat_events::conversation_id, diesel::dsl::max(chat_events::id)))
            .load(conn)
            .await?;
        Ok(rows.into_iter().filter_map(|(c, id)| Some((c, id?))).collect())
    }
}
