//! Pair-programming chat: a person and a persona (through one of its agents, or the persona
//! alone) talking on a project, optionally on one bead. Conversations and every message
//! persist with their author, tokens and time. `messages` posts and stops, `reply` writes
//! the agent's reply (through `writer`, acting at a `bench`, told what `context` gathers),
//! `events` stores what the stream sends and `stream` follows it; `heal` fails replies whose
//! writer died; `pairing` keeps a paired bead from agents until it is handed off; `route`
//! hands a reply to the replica whose worktrees the project's runs use.

mod bench;
mod context;
mod converse;
pub mod events;
pub mod heal;
mod messages;
mod pairing;
mod reply;
mod route;
mod stream;
mod writer;

pub use events::{ChatEvent, ChatWakers, EventKind};
pub use messages::{MAX_BODY, Posted, check_body};
pub use pairing::Transcript;
pub use reply::{Chat, ChatConfig, ChatParts};
pub use stream::ChatFollower;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::activity::{Activity, Actor, Record};
use crate::agents::Agent;
use crate::beads::Bead;
use crate::db::Conn;
use crate::db::schema::{chat_messages, conversations, personas, projects};
use crate::error::{Error, Result};
use crate::events::Kind;

crate::db_enum!(
    /// Whether a person is pairing in it, or has given its bead back to autonomous work.
    ConversationStatus, ConversationStatus, "snake_case", {
    Open => "open",
    HandedOff => "handed_off",
});

crate::db_enum!(ChatRole, ChatRole, "snake_case", {
    User => "user",
    Assistant => "assistant",
});

crate::db_enum!(
    /// A message is complete; a reply may still be streaming, or have been stopped or failed.
    ChatState, ChatState, "snake_case", {
    Complete => "complete",
    Streaming => "streaming",
    Stopped => "stopped",
    Failed => "failed",
});

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = conversations)]
pub struct Conversation {
    pub id: Uuid,
    #[serde(rename = "project")]
    pub project_id: String,
    #[serde(rename = "bead")]
    pub bead_id: Option<String>,
    #[serde(rename = "agent")]
    pub agent_id: Option<Uuid>,
    pub persona: String,
    pub title: String,
    pub status: ConversationStatus,
    pub created_by_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = chat_messages)]
pub struct ChatMessage {
    pub id: i64,
    #[serde(skip)]
    pub conversation_id: Uuid,
    pub role: ChatRole,
    pub author_user_id: Option<Uuid>,
    pub author_agent_id: Option<Uuid>,
    pub body: String,
    pub state: ChatState,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A conversation with its messages, oldest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationDetails {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<ChatMessage>,
}

/// What `POST /api/v1/conversations` receives: an agent, or a persona, or both (then the
/// agent must be of that persona).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    pub project: String,
    #[serde(default)]
    pub agent: Option<Uuid>,
    #[serde(default)]
    pub persona: Option<String>,
    #[serde(default)]
    pub bead: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

/// Messages kept per conversation page (the newest, oldest first).
const MESSAGES: i64 = 500;

fn exists<T>(found: Option<T>, code: &'static str, message: String) -> Result<T> {
    found.ok_or_else(|| Error::invalid(code, message))
}

/// Whom a conversation talks to: the agent or persona it was told, else the bead's persona,
/// else the project's agent. Returns the agent, if any, and the persona.
async fn whom(
    conn: &mut Conn,
    project: &str,
    agent: Option<Uuid>,
    persona: Option<&str>,
    bead: Option<&Bead>,
) -> Result<(Option<Uuid>, String)> {
    let agent = match (agent, persona) {
        (Some(id), _) => match Agent::find(conn, id).await {
            Err(Error::NotFound(_)) => {
                return Err(Error::invalid("unknown_agent", format!("no agent {id}")));
            }
            other => other?,
        },
        (None, Some(name)) => {
            let found: Option<String> =
                personas::table.find(name).select(personas::name).first(conn).await.optional()?;
            return Ok((None, exists(found, "unknown_persona", format!("no persona {name:?}"))?));
        }
        (None, None) => match bead.and_then(|b| b.persona.as_deref()) {
            Some(persona) => return Ok((None, persona.to_owned())),
            None => Agent::for_project(conn, project).await?.ok_or_else(|| {
                Error::invalid(
                    "agent_or_persona_required",
                    format!(
                        "name the agent or the persona to talk to: no agent works on project \
                         {project} yet (`loom agent create --name NAME --persona \
                         software-engineer`)"
                    ),
                )
            })?,
        },
    };
    if agent.project_id.as_deref().is_some_and(|p| p != project) {
        return Err(Error::invalid(
            "agent_in_other_project",
            format!("agent {} works on another project", agent.name),
        ));
    }
    if persona.is_some_and(|w| w != agent.persona) {
        return Err(Error::invalid(
            "persona_mismatch",
            format!("agent {} is a {}", agent.name, agent.persona),
        ));
    }
    Ok((Some(agent.id), agent.persona))
}

impl Conversation {
    /// Starts a conversation for `user`, checking every reference it makes.
    pub async fn start(conn: &mut Conn, new: NewConversation, user: Uuid) -> Result<Conversation> {
        let title = new.title.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if title.is_some_and(|t| t.chars().count() > 200) {
            return Err(Error::invalid("title_too_long", "a title is at most 200 characters"));
        }
        let project: Option<String> =
            projects::table.find(&new.project).select(projects::id).first(conn).await.optional()?;
        let project = exists(project, "unknown_project", format!("no project {:?}", new.project))?;
        let bead = match &new.bead {
            None => None,
            Some(id) => {
                let bead = match Bead::get(conn, id).await {
                    Err(Error::NotFound(_)) => {
                        return Err(Error::invalid("unknown_bead", format!("no bead {id:?}")));
                    }
                    other => other?,
                };
                if bead.project_id != project {
                    return Err(Error::invalid(
                        "bead_in_other_project",
                        format!("bead {id} is in project {}", bead.project_id),
                    ));
                }
                Some(bead)
            }
        };
        let (agent, persona) =
            whom(conn, &project, new.agent, new.persona.as_deref(), bead.as_ref()).await?;
        let title = title.map(str::to_owned).unwrap_or_else(|| match &bead {
            Some(b) => b.title.clone(),
            None => format!("Chat with {persona}"),
        });
        let bead_id = bead.map(|b| b.id);
        conn.transaction::<_, Error, _>(async move |conn| {
            // The bead becomes the person's: no agent works it while they pair on it.
            if let Some(bead) = &bead_id {
                pairing::take_bead(conn, bead, user).await?;
            }
            let conversation: Conversation = diesel::insert_into(conversations::table)
                .values((
                    conversations::id.eq(Uuid::now_v7()),
                    conversations::project_id.eq(&project),
                    conversations::bead_id.eq(&bead_id),
                    conversations::agent_id.eq(agent),
                    conversations::persona.eq(&persona),
                    conversations::title.eq(&title),
                    conversations::created_by_user_id.eq(user),
                ))
                .returning(Conversation::as_returning())
                .get_result(conn)
                .await
                .map_err(|e| pairing::one_open_per_bead(e, bead_id.as_deref()))?;
            if let Some(bead) = &bead_id {
                pairing::pair(conn, bead, conversation.id).await?;
            }
            Activity::record(
                conn,
                Record {
                    kind: Kind::ConversationStarted,
                    project_id: Some(&conversation.project_id),
                    bead_id: conversation.bead_id.as_deref(),
                    actor: Actor::User(user),
                    data: serde_json::json!({
                        "conversation": conversation.id,
                        "title": conversation.title,
                        "persona": conversation.persona,
                    }),
                },
            )
            .await?;
            Ok(conversation)
        })
        .await
    }

    /// Conversations of a project and/or a bead, newest first, after the cursor (an id).
    pub async fn list(
        conn: &mut Conn,
        project: Option<&str>,
        bead: Option<&str>,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Conversation>> {
        let mut q = conversations::table.select(Conversation::as_select()).into_boxed();
        if let Some(p) = project {
            q = q.filter(conversations::project_id.eq(p.to_owned()));
        }
        if let Some(b) = bead {
            q = q.filter(conversations::bead_id.eq(b.to_owned()));
        }
        if let Some(before) = before {
            q = q.filter(conversations::id.lt(before));
        }
        Ok(q.order(conversations::id.desc()).limit(limit).load(conn).await?)
    }

    pub async fn find(conn: &mut Conn, id: Uuid) -> Result<Conversation> {
        conversations::table
            .find(id)
            .select(Conversation::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("conversation {id}")))
    }

    /// A conversation with its newest messages, oldest first.
    pub async fn details(conn: &mut Conn, id: Uuid) -> Result<ConversationDetails> {
        let conversation = Conversation::find(conn, id).await?;
        let mut messages: Vec<ChatMessage> = chat_messages::table
            .filter(chat_messages::conversation_id.eq(id))
            .order(chat_messages::id.desc())
            .limit(MESSAGES)
            .select(ChatMessage::as_select())
            .load(conn)
            .await?;
        messages.reverse();
        Ok(ConversationDetails { conversation, messages })
    }
}
