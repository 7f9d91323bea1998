//! The agent's replies of this process (`Chat`): posting a message opens one and starts its
//! task here, or hands it to the replica the project's runs are on (`route`); a stop ends
//! it at once; at shutdown each records that it was interrupted. What a reply does, turn by
//! turn, is in `converse`. A reply whose replica died is failed by the ticker once its lease
//! lapses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::bench;
use super::events::{ChatWakers, EventKind, announce};
use super::writer::{Halt, Writer};
use super::{ChatMessage, Conversation, messages::Posted, route};
use crate::db::{Conn, Pool};
use crate::error::Result;
use crate::events::Bus;
use crate::executor::ActiveBeads;
use crate::gateway::{Gateway, Tool};
use crate::git::Repos;
use crate::workbench::actions::ToolsSetting;

/// How conversations behave.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Prompt plus completion tokens one conversation may spend, all replies together.
    pub token_budget: u64,
    /// Gateway calls one reply may make (each tool round is one).
    pub max_turns: u32,
    /// How long a reply lives without its writer renewing it.
    pub lease: Duration,
    /// How often streams ask Postgres for events whose bus wake-up was lost.
    pub poll: Duration,
    /// Longest action result given back to the model, in characters.
    pub max_result_chars: usize,
    /// A reply's conversation is kept inside this many characters (the model's context
    /// window, `LOOM_GATEWAY_CONTEXT_TOKENS`, as for runs).
    pub max_context_chars: usize,
    /// Variables of Loom's environment that `run` gets too (as for runs).
    pub run_pass_env: Vec<String>,
    /// How replies carry actions: native tool calls, JSON in the text, or native until the
    /// gateway refuses tools (as for runs).
    pub tools: ToolsSetting,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            token_budget: 500_000,
            max_turns: 20,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            max_result_chars: 12_000,
            max_context_chars: crate::executor::Limits::default().max_context_chars,
            run_pass_env: Vec::new(),
            tools: ToolsSetting::Auto,
        }
    }
}

/// What replies of this process share. Cheap to clone.
#[derive(Clone)]
pub struct Chat(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) pool: Pool,
    pub(super) bus: Bus,
    pub(super) gateway: Option<Gateway>,
    pub(super) repos: Repos,
    pub(super) config: ChatConfig,
    pub(super) homes: std::path::PathBuf,
    pub(super) run_env: Vec<(String, String)>,
    pub(super) sandbox: crate::workbench::Sandbox,
    pub(super) tools: Vec<Tool>,
    pub(super) wakers: ChatWakers,
    /// The replies this process writes, to stop at once when a person asks here.
    pub(super) running: Mutex<HashMap<i64, CancellationToken>>,
    pub(super) shutdown: CancellationToken,
    /// This process's executors, when it runs them (see `route`).
    pub(super) executor: Option<Uuid>,
    /// The runtime replies run on: the process's own, not the HTTP worker's that took the
    /// message (actix's workers have runtimes of their own, stopped with the server, which
    /// would take a reply down before it could record how it ended).
    pub(super) runtime: tokio::runtime::Handle,
    /// Beads whose run task is alive here: a reply waits for its bead's to end.
    pub(super) active: ActiveBeads,
}

/// Where a conversation service lives and what it talks to.
pub struct ChatParts {
    pub pool: Pool,
    pub bus: Bus,
    pub gateway: Option<Gateway>,
    pub repos: Repos,
    pub data_dir: std::path::PathBuf,
    pub wakers: ChatWakers,
    pub shutdown: CancellationToken,
    /// The owner id of this process's executors, when it runs them.
    pub executor: Option<Uuid>,
    /// Their beads with a run task alive.
    pub active: ActiveBeads,
    /// Where the agents' commands run.
    pub sandbox: crate::workbench::Sandbox,
}

impl Chat {
    /// Called on the runtime the replies are to run on.
    pub fn new(parts: ChatParts, config: ChatConfig) -> Chat {
        let run_env = crate::workbench::toolchain_env(&config.run_pass_env);
        Chat(Arc::new(Inner {
            pool: parts.pool,
            bus: parts.bus,
            gateway: parts.gateway,
            repos: parts.repos,
            homes: std::path::absolute(parts.data_dir.join("homes"))
                .unwrap_or_else(|_| parts.data_dir.join("homes")),
            run_env,
            sandbox: parts.sandbox,
            tools: bench::tools(),
            wakers: parts.wakers,
            running: Mutex::default(),
            shutdown: parts.shutdown,
            executor: parts.executor,
            active: parts.active,
            runtime: tokio::runtime::Handle::current(),
            config,
        }))
    }

    pub fn config(&self) -> &ChatConfig {
        &self.0.config
    }

    /// Waits, after shutdown began, for the replies written here to record how they ended
    /// (`limit` at most: a reply left streaming is failed by a ticker once its lease lapses).
    pub async fn drain(&self, limit: Duration) {
        let ended = async {
            while self.writing() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(limit, ended).await.is_err() {
            tracing::warn!("chat replies did not end within {} s", limit.as_secs());
        }
    }

    /// Replies this process is writing now.
    pub fn writing(&self) -> usize {
        self.running().len()
    }

    pub fn wakers(&self) -> &ChatWakers {
        &self.0.wakers
    }

    /// Posts `person`'s message and starts the agent's reply; readers everywhere are woken.
    pub async fn post(
        &self,
        conn: &mut Conn,
        id: Uuid,
        body: &str,
        person: Uuid,
    ) -> Result<Posted> {
        let lease = self.0.config.lease;
        let (conversation, posted) = Conversation::post(conn, id, body, person, lease).await?;
        let message = posted.message.id;
        announce(&self.0.bus, &conversation, posted.event_id, EventKind::Message, message);
        match route::writer_of(conn, &conversation.project_id).await {
            Ok(Some(owner)) if Some(owner) != self.0.executor => {
                route::hand_over(&self.0.bus, &conversation, posted.reply.id, person, owner);
            }
            Ok(_) => self.reply(conversation, posted.reply.id, person),
            Err(e) => {
                tracing::warn!(error = %e, "could not tell which replica runs the project; replying here");
                self.reply(conversation, posted.reply.id, person);
            }
        }
        Ok(posted)
    }

    /// Stops the conversation's streaming reply, at once when this process writes it (and
    /// at once on the replica that does, which hears of the `done`).
    pub async fn stop(&self, conn: &mut Conn, id: Uuid) -> Result<ChatMessage> {
        let (conversation, reply, event) = Conversation::stop(conn, id).await?;
        self.cancel(reply.id);
        announce(&self.0.bus, &conversation, event, EventKind::Done, reply.id);
        Ok(reply)
    }

    /// Stops this process's writer of `message`, if it has one.
    pub(super) fn cancel(&self, message: i64) {
        if let Some(token) = self.running().get(&message) {
            token.cancel();
        }
    }

    pub(super) fn executor(&self) -> Option<Uuid> {
        self.0.executor
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.0.pool
    }

    /// Starts writing the reply `message`, for `person`.
    pub(super) fn reply(&self, conversation: Conversation, message: i64, person: Uuid) {
        let token = self.0.shutdown.child_token();
        self.running().insert(message, token.clone());
        let this = self.clone();
        self.0.runtime.spawn(async move {
            let writer = Writer::new(
                this.0.pool.clone(),
                this.0.bus.clone(),
                conversation,
                message,
                this.0.config.lease,
            );
            this.write(writer, person, token).await;
            this.running().remove(&message);
        });
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, CancellationToken>> {
        self.0.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn write(&self, mut writer: Writer, person: Uuid, token: CancellationToken) {
        let id = writer.message;
        let halted = tokio::select! {
            biased;
            () = token.cancelled() => {
                if self.0.shutdown.is_cancelled() {
                    Some(Halt::failed("interrupted", "Loom was shut down during the reply; send the message again"))
                } else {
                    None
                }
            }
            result = self.converse(&mut writer, person) => result.err(),
        };
        match halted {
            None | Some(Halt::Stopped) => {}
            Some(Halt::Failed { code, message }) => {
                tracing::info!(message.id = id, code, "a chat reply failed: {message}");
                if let Err(Halt::Failed { message, .. }) = writer.fail(code, &message).await {
                    tracing::warn!(
                        message.id = id,
                        "could not record a failed chat reply: {message}"
                    );
                }
            }
        }
    }
}
