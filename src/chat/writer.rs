//! The one writer of a reply: every event it sends is stored (under the conversation's lock,
//! with the reply's text and tokens so far and a renewed lease) and then announced on the
//! bus. Text is buffered and written a batch at a time. A write that finds the reply no
//! longer streaming (a person stopped it, or the ticker failed it after a lost lease) tells
//! the reply to stop: nothing more is written.

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};

use super::events::{self, ChatEvent, EventKind};
use super::messages::{done, end};
use super::{ChatState, Conversation};
use crate::db::schema::chat_messages;
use crate::db::{Conn, Pool};
use crate::error::Error;
use crate::events::Bus;

/// Why a reply stops early.
#[derive(Debug)]
pub enum Halt {
    /// It is no longer streaming: stopped by a person, or failed by the ticker.
    Stopped,
    /// It failed: the code and the message a person reads.
    Failed { code: &'static str, message: String },
}

impl Halt {
    pub fn failed(code: &'static str, message: impl Into<String>) -> Halt {
        Halt::Failed { code, message: message.into() }
    }
}

impl From<Error> for Halt {
    /// What a person reads says what happened, not Loom's internals (those are logged).
    fn from(e: Error) -> Halt {
        tracing::warn!(error = %e, "a chat reply could not go on");
        match e {
            Error::NotFound(what) => {
                Halt::failed("not_found", format!("the reply needs {what}, which no longer exists"))
            }
            Error::Unavailable(_) | Error::Database(_) | Error::Internal(_) => Halt::failed(
                "internal",
                "Loom could not go on with the reply (its database or storage failed); send \
                 the message again, and tell an admin if it keeps happening",
            ),
            other => Halt::failed("internal", other.to_string()),
        }
    }
}

pub struct Writer {
    pool: Pool,
    bus: Bus,
    conversation: Conversation,
    pub message: i64,
    lease: Duration,
    /// Text not written yet.
    pending: String,
    /// Whether any text was said (so the next turn's text starts a new paragraph).
    pub said: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl Writer {
    pub fn new(
        pool: Pool,
        bus: Bus,
        conversation: Conversation,
        message: i64,
        lease: Duration,
    ) -> Writer {
        Writer {
            pool,
            bus,
            conversation,
            message,
            lease,
            pending: String::new(),
            said: false,
            prompt_tokens: 0,
            completion_tokens: 0,
        }
    }

    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Buffers text for the next write.
    pub fn text(&mut self, text: &str) {
        if !text.is_empty() {
            self.said = true;
            self.pending.push_str(text);
        }
    }

    /// Writes the buffered text as one `delta`.
    pub async fn flush(&mut self) -> Result<(), Halt> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.pending);
        self.write(EventKind::Delta, json!({ "text": text }), &text).await
    }

    /// An action the agent is about to perform (after the text before it).
    pub async fn action(&mut self, action: Value) -> Result<(), Halt> {
        self.flush().await?;
        self.write(EventKind::Action, json!({ "action": action }), "").await
    }

    pub async fn action_result(&mut self, ok: bool, output: &str) -> Result<(), Halt> {
        self.write(EventKind::ActionResult, json!({ "ok": ok, "output": output }), "").await
    }

    /// Renews the lease; says so when the reply is no longer streaming.
    pub async fn renew(&mut self) -> Result<(), Halt> {
        let until = self.lease_end();
        let renewed = diesel::update(
            chat_messages::table
                .find(self.message)
                .filter(chat_messages::state.eq(ChatState::Streaming)),
        )
        .set(chat_messages::lease_expires_at.eq(until))
        .execute(&mut *self.pool.get().await.map_err(Error::from)?)
        .await
        .map_err(Error::from)?;
        if renewed == 0 { Err(Halt::Stopped) } else { Ok(()) }
    }

    /// The reply is complete: the rest of the text, then `done`.
    pub async fn finish(&mut self) -> Result<(), Halt> {
        self.flush().await?;
        self.end(ChatState::Complete, None).await
    }

    /// The reply failed: what it said stays; an `error` event says why.
    pub async fn fail(&mut self, code: &str, message: &str) -> Result<(), Halt> {
        // What was streamed before the failure is kept, when it can be.
        let _ = self.flush().await;
        self.end(ChatState::Failed, Some((code, message))).await
    }

    async fn end(&mut self, state: ChatState, error: Option<(&str, &str)>) -> Result<(), Halt> {
        let (id, message) = (self.conversation.id, self.message);
        let tokens = (self.prompt_tokens, self.completion_tokens);
        let error = error.map(|(c, m)| (c.to_owned(), m.to_owned()));
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let written = conn
            .transaction::<_, Error, _>(async move |conn| {
                Conversation::lock(conn, id).await?;
                if !still_streaming(conn, message).await? {
                    return Ok(None);
                }
                set_tokens(conn, message, tokens).await?;
                let reply = end(conn, message, state, error.as_ref().map(|e| e.1.as_str())).await?;
                let (kind, data) = match &error {
                    None => (EventKind::Done, done(&reply)),
                    Some((code, text)) => (
                        EventKind::Error,
                        json!({ "code": code, "message": text, "message_id": message }),
                    ),
                };
                Ok(Some((ChatEvent::append(conn, id, Some(message), kind, data).await?, kind)))
            })
            .await?;
        let Some((event, kind)) = written else { return Err(Halt::Stopped) };
        crate::metrics::get().chat_reply(&state.to_string());
        events::announce(&self.bus, &self.conversation, event, kind, self.message);
        Ok(())
    }

    /// One event, with `text` added to the reply's body, the tokens so far and a renewed
    /// lease, in one transaction under the conversation's lock.
    async fn write(&mut self, kind: EventKind, data: Value, text: &str) -> Result<(), Halt> {
        let (id, message, until) = (self.conversation.id, self.message, self.lease_end());
        let tokens = (self.prompt_tokens, self.completion_tokens);
        let text = text.to_owned();
        let mut conn = self.pool.get().await.map_err(Error::from)?;
        let written = conn
            .transaction::<_, Error, _>(async move |conn| {
                Conversation::lock(conn, id).await?;
                if !still_streaming(conn, message).await? {
                    return Ok(None);
                }
                diesel::update(chat_messages::table.find(message))
                    .set((
                        chat_messages::body.eq(chat_messages::body.concat(text)),
                        chat_messages::lease_expires_at.eq(until),
                        chat_messages::prompt_tokens.eq(tokens.0),
                        chat_messages::completion_tokens.eq(tokens.1),
                    ))
                    .execute(conn)
                    .await?;
                Ok(Some(ChatEvent::append(conn, id, Some(message), kind, data).await?))
            })
            .await?;
        let Some(event) = written else { return Err(Halt::Stopped) };
        events::announce(&self.bus, &self.conversation, event, kind, self.message);
        Ok(())
    }

    fn lease_end(&self) -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(self.lease).unwrap_or_default()
    }
}

async fn still_streaming(conn: &mut Conn, message: i64) -> crate::Result<bool> {
    let state: ChatState =
        chat_messages::table.find(message).select(chat_messages::state).first(conn).await?;
    Ok(state == ChatState::Streaming)
}

async fn set_tokens(
    conn: &mut Conn,
    message: i64,
    (prompt, completion): (i64, i64),
) -> crate::Result<()> {
    diesel::update(chat_messages::table.find(message))
        .set((
            chat_messages::prompt_tokens.eq(prompt),
            chat_messages::completion_tokens.eq(completion),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
