//! What a reply starts from: the conversation's people and persona, its bead (checked still
//! open), the messages so far, and the system prompt built from them, with the persona's
//! instructions and the bead's context as a run of the executor gets them.

use std::fmt::Write;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::writer::Halt;
use super::{ChatMessage, ChatRole, ChatState, Conversation};
use crate::agents::Agent;
use crate::beads::{Bead, BeadStatus};
use crate::db::Conn;
use crate::db::schema::{chat_messages, users};
use crate::executor::brief;
use crate::executor::prompt::{Brief, bead_context};
use crate::gateway::Message;
use crate::personas::Persona;
use crate::projects::Project;
use crate::workbench::actions::{ReplyMode, Toolset, vocabulary_text};

/// Earlier messages put before the new one; older ones are left out.
const HISTORY: i64 = 60;

pub struct Context {
    pub project: Project,
    pub bead: Option<Bead>,
    pub persona: Persona,
    pub agent: Option<Agent>,
    /// Who the agent is, by name (the agent's, else the persona's).
    pub speaker: String,
    pub person: String,
    /// The conversation so far, oldest first, the reply being written excluded.
    pub history: Vec<ChatMessage>,
    /// Tokens earlier replies of the conversation spent.
    pub spent: u64,
}

impl Context {
    pub async fn load(
        conn: &mut Conn,
        conversation: &Conversation,
        reply: i64,
        person: Uuid,
    ) -> Result<Context, Halt> {
        let project = Project::find(conn, &conversation.project_id).await?;
        let bead = match &conversation.bead_id {
            Some(id) => Some(Bead::get(conn, id).await?),
            None => None,
        };
        if let Some(b) = bead.as_ref().filter(|b| b.status == BeadStatus::Closed) {
            return Err(bead_closed(&b.id));
        }
        let persona = Persona::find(conn, &conversation.persona).await?;
        let agent = match conversation.agent_id {
            Some(id) => Agent::find(conn, id).await.ok(),
            None => None,
        };
        let person: String = users::table
            .find(person)
            .select(users::username)
            .first(conn)
            .await
            .optional()
            .map_err(crate::Error::from)?
            .unwrap_or_else(|| "a person".into());
        let mut history: Vec<ChatMessage> = chat_messages::table
            .filter(chat_messages::conversation_id.eq(conversation.id))
            .filter(chat_messages::id.ne(reply))
            .order(chat_messages::id.desc())
            .limit(HISTORY)
            .select(ChatMessage::as_select())
            .load(conn)
            .await
            .map_err(crate::Error::from)?;
        history.reverse();
        let spent: Option<i64> = chat_messages::table
            .filter(chat_messages::conversation_id.eq(conversation.id))
            .select(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(
                "sum(prompt_tokens + completion_tokens)::bigint",
            ))
            .first(conn)
            .await
            .map_err(crate::Error::from)?;
        let speaker = agent.as_ref().map_or_else(|| persona.name.clone(), |a| a.name.clone());
        Ok(Context {
            project,
            bead,
            persona,
            agent,
            speaker,
            person,
            history,
            spent: spent.unwrap_or(0).max(0) as u64,
        })
    }

    /// The system prompt: who the agent is, with whom, where, its persona's instructions,
    /// the project's AGENTS.md, and the bead.
    pub async fn system_prompt(
        &self,
        conn: &mut Conn,
        branch: &str,
        agents_md: Option<&str>,
        mode: ReplyMode,
    ) -> Result<String, Halt> {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "You are {}, a {} ({}), pairing with {} on the project \"{}\" in Loom. You work in a \
             git worktree of the project on branch `{branch}`, cut from `{}`. {} sees your \
             replies as they stream (markdown) and every action you take with its result. \
             Use the tools to look at, change, run and commit the code when that helps; \
             otherwise just answer. Say what you did and what you found; never claim to have \
             run or changed something you did not.",
            self.speaker,
            self.persona.role,
            self.persona.name,
            self.person,
            self.project.name,
            self.project.branch,
            self.person,
        );
        if mode == ReplyMode::Text {
            // No tools travel with the request: the vocabulary and its format are told here.
            let _ = write!(
                s,
                "\n{}\nIn a conversation, done and block are not available: when you have \
                 nothing to do, answer in words without an action.\n",
                vocabulary_text(mode, Toolset::Work)
            );
        }
        let _ = write!(s, "\n# Your instructions\n\n{}\n", self.persona.instructions.trim());
        if let Some(md) = agents_md.map(str::trim).filter(|m| !m.is_empty()) {
            let _ = write!(s, "\n# The project's rules (AGENTS.md)\n\n{md}\n");
        }
        if let Some(bead) = &self.bead {
            let brief: Brief = brief::of_bead(conn, bead).await?;
            let _ = write!(
                s,
                "\n# The bead you are pairing on\n\nWhen the person hands it back, an agent \
                 goes on with it in this same worktree, with this conversation as context.\n\n{}",
                bead_context(&brief)
            );
        }
        Ok(s)
    }

    /// The conversation as the model reads it: the system prompt, then every message so
    /// far (a reply that was stopped or failed with what it had said).
    pub fn messages(&self, system: String) -> Vec<Message> {
        let mut messages = vec![Message::system(system)];
        for m in &self.history {
            match m.role {
                ChatRole::User => messages.push(Message::user(m.body.clone())),
                ChatRole::Assistant if !m.body.trim().is_empty() => {
                    let body = match m.state {
                        ChatState::Stopped => format!("{}\n\n[stopped by {}]", m.body, self.person),
                        _ => m.body.clone(),
                    };
                    messages.push(Message::assistant(body));
                }
                ChatRole::Assistant => {}
            }
        }
        messages
    }
}

pub fn bead_closed(bead: &str) -> Halt {
    Halt::failed(
        "bead_closed",
        format!("bead {bead} was closed, so the agent no longer works on it; reopen it to go on"),
    )
}
