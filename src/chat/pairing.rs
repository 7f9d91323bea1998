//! Pairing: while a person talks with an agent on a bead, the bead is theirs. Starting a
//! conversation on a bead takes it from any agent working it and keeps it out of the ready
//! queue (`beads.paired_in`); handing the conversation off gives the bead back to autonomous
//! work, and the next run reads the conversation (`handed_off_on`).

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::{ChatMessage, ChatState, Conversation, ConversationStatus};
use crate::activity::{Activity, Actor, Record};
use crate::beads::{Bead, BeadStatus, StatusChange, apply_status_change, lock_graph};
use crate::db::Conn;
use crate::db::schema::{beads, chat_messages, conversations};
use crate::error::{Error, Result};
use crate::events::Kind;

/// The partial unique index that allows one open conversation per bead.
const ONE_OPEN_PER_BEAD: &str = "conversations_one_open_per_bead";

fn already_pairing(bead: &str, open: Option<Uuid>) -> Error {
    let message = match open {
        Some(open) => format!("a person is already pairing on bead {bead}, in conversation {open}"),
        None => format!("a person is already pairing on bead {bead}, in another conversation"),
    };
    Error::conflict("already_pairing", message)
}

/// Readies a bead for a person to pair on, first in the transaction that starts the
/// conversation: under the graph lock (the bead may change status) and the bead's row lock,
/// a bead with an open conversation is refused, and one an agent is working is taken back as
/// a person's reopening would (the run ends `cancelled`, the agent is idle, the bead open);
/// an agent's review under way ends the same way, the bead staying in review.
pub(super) async fn take_bead(conn: &mut Conn, id: &str, user: Uuid) -> Result<()> {
    lock_graph(conn).await?;
    let bead = Bead::lock(conn, id).await?;
    if bead.status == BeadStatus::Closed {
        return Err(Error::conflict("bead_closed", format!("bead {id} is closed")));
    }
    let open: Option<Uuid> = conversations::table
        .filter(conversations::bead_id.eq(id))
        .filter(conversations::status.eq(ConversationStatus::Open))
        .select(conversations::id)
        .first(conn)
        .await
        .optional()?;
    if open.is_some() {
        return Err(already_pairing(id, open));
    }
    if bead.status == BeadStatus::InProgress {
        let reason = Some("a person is pairing on it".to_owned());
        apply_status_change(conn, bead, StatusChange::Reopen { reason }, Actor::User(user)).await?;
    } else {
        Bead::stop_review(conn, &bead, Actor::User(user)).await?;
    }
    Ok(())
}

/// Marks the bead paired in the conversation just inserted. The version moves too: this
/// row update is also what a dispatcher's locked re-check of readiness waits for.
pub(super) async fn pair(conn: &mut Conn, bead: &str, conversation: Uuid) -> Result<()> {
    diesel::update(beads::table.find(bead))
        .set((
            beads::paired_in.eq(conversation),
            beads::version.eq(beads::version + 1),
            beads::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The insert of a conversation failing on the one-open-per-bead index (two starts that
/// got past `take_bead` together) is the same refusal as the check's.
pub(super) fn one_open_per_bead(e: DieselError, bead: Option<&str>) -> Error {
    match (&e, bead) {
        (DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info), Some(bead))
            if info.constraint_name() == Some(ONE_OPEN_PER_BEAD) =>
        {
            already_pairing(bead, None)
        }
        _ => e.into(),
    }
}

/// The conversation a bead was last handed back from, with its newest messages.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub conversation: Conversation,
    /// Oldest first.
    pub messages: Vec<ChatMessage>,
    /// Older messages were left out.
    pub earlier: bool,
}

impl Conversation {
    /// Gives the conversation's bead back to autonomous work, in one transaction: the
    /// conversation is `handed_off` and the bead no longer paired (so ready again, when
    /// nothing else holds it), and reopened if it was blocked. Refused while a reply is
    /// still streaming.
    pub async fn handoff(conn: &mut Conn, id: Uuid, user: Uuid) -> Result<Conversation> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let conversation = Conversation::lock(conn, id).await?;
            if conversation.status == ConversationStatus::HandedOff {
                return Err(Error::conflict(
                    "already_handed_off",
                    format!("conversation {id} was already handed off"),
                ));
            }
            let Some(bead) = conversation.bead_id else {
                return Err(Error::conflict(
                    "no_bead",
                    "this conversation is not on a bead; there is nothing to hand back",
                ));
            };
            let streaming = chat_messages::table
                .filter(chat_messages::conversation_id.eq(id))
                .filter(chat_messages::state.eq(ChatState::Streaming));
            if diesel::select(diesel::dsl::exists(streaming)).get_result(conn).await? {
                return Err(Error::conflict(
                    "reply_in_progress",
                    "stop the reply or wait for it before handing the bead back",
                ));
            }
            let handed: Conversation = diesel::update(conversations::table.find(id))
                .set((
                    conversations::status.eq(ConversationStatus::HandedOff),
                    conversations::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Conversation::as_returning())
                .get_result(conn)
                .await?;
            diesel::update(beads::table.find(&bead).filter(beads::paired_in.eq(id)))
                .set((
                    beads::paired_in.eq(None::<Uuid>),
                    beads::version.eq(beads::version + 1),
                    beads::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            // A bead blocked for a person (the question they paired to answer, say) goes
            // back to work too: that is what handing it back means.
            let status: BeadStatus =
                beads::table.find(&bead).select(beads::status).first(conn).await?;
            if status == BeadStatus::Blocked {
                lock_graph(conn).await?;
                let locked = Bead::lock(conn, &bead).await?;
                let reason = Some("handed back after pairing".to_owned());
                let change = StatusChange::Reopen { reason };
                apply_status_change(conn, locked, change, Actor::User(user)).await?;
            }
            Activity::record(
                conn,
                Record {
                    kind: Kind::ConversationHandedOff,
                    project_id: Some(&handed.project_id),
                    bead_id: Some(&bead),
                    actor: Actor::User(user),
                    data: serde_json::json!({ "conversation": id, "title": handed.title }),
                },
            )
            .await?;
            Ok(handed)
        })
        .await
    }

    /// The bead's most recently handed-off conversation with its newest `limit` messages.
    pub async fn handed_off_on(
        conn: &mut Conn,
        bead: &str,
        limit: i64,
    ) -> Result<Option<Transcript>> {
        let Some(conversation) = conversations::table
            .filter(conversations::bead_id.eq(bead))
            .filter(conversations::status.eq(ConversationStatus::HandedOff))
            .order((conversations::updated_at.desc(), conversations::id.desc()))
            .select(Conversation::as_select())
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        let mut messages: Vec<ChatMessage> = chat_messages::table
            .filter(chat_messages::conversation_id.eq(conversation.id))
            .order(chat_messages::id.desc())
            .limit(limit + 1)
            .select(ChatMessage::as_select())
            .load(conn)
            .await?;
        let earlier = messages.len() as i64 > limit;
        messages.truncate(usize::try_from(limit).unwrap_or(0));
        messages.reverse();
        Ok(Some(Transcript { conversation, messages, earlier }))
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::DatabaseErrorInformation;

    use super::*;

    struct Violated(&'static str);

    impl DatabaseErrorInformation for Violated {
        fn message(&self) -> &str {
            "duplicate key value violates unique constraint"
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            Some("conversations")
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            Some(self.0)
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn violation(constraint: &'static str) -> DieselError {
        DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new(Violated(constraint)),
        )
    }

    #[test]
    fn two_starts_that_race_past_the_check_are_refused_as_already_pairing() {
        let raced = one_open_per_bead(violation(ONE_OPEN_PER_BEAD), Some("web-1"));
        assert_eq!(raced.code(), "already_pairing");
        assert!(raced.to_string().contains("web-1"), "{raced}");
        assert_eq!(
            one_open_per_bead(violation("conversations_pkey"), Some("web-1")).code(),
            "internal"
        );
    }
}
