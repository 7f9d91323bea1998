//! The agent's reply to a person's message: a task of the replica that took the message.
//! It asks the gateway (streamed), writes the text as it comes a batch at a time, performs
//! the tool calls the model makes in the conversation's worktree, feeds their results back,
//! and asks again, until the model answers without acting (`done`), a limit is reached, or
//! something fails (`error`, with a message a person understands). The reply's lease is
//! renewed all the while; a reply whose replica died is failed by the ticker once it lapses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::bench::{self, Bench, Setup, Who};
use super::context::{Context, bead_closed};
use super::events::{ChatWakers, EventKind, announce};
use super::writer::{Halt, Writer};
use super::{ChatMessage, Conversation, messages::Posted, route};
use crate::activity::Actor;
use crate::beads::{Bead, BeadStatus};
use crate::db::{Conn, Pool};
use crate::error::Result;
use crate::events::Bus;
use crate::executor::ActiveBeads;
use crate::executor::actions::parse_reply;
use crate::gateway::{CallContext, Completion, Gateway, GatewayError, Health, Message, Tool};
use crate::git::Repos;

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
    /// Variables of Loom's environment that `run` gets too (as for runs).
    pub run_pass_env: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            token_budget: 500_000,
            max_turns: 20,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(2),
            max_result_chars: 12_000,
            run_pass_env: Vec::new(),
        }
    }
}

/// Longest a reply waits for a run taken back from its bead to stop working in the worktree.
const RUN_WAIT: Duration = Duration::from_secs(120);

/// Text is written at most this often while it streams.
const FLUSH: Duration = Duration::from_millis(50);

/// What replies of this process share. Cheap to clone.
#[derive(Clone)]
pub struct Chat(Arc<Inner>);

struct Inner {
    pool: Pool,
    bus: Bus,
    gateway: Option<Gateway>,
    repos: Repos,
    config: ChatConfig,
    homes: std::path::PathBuf,
    run_env: Vec<(String, String)>,
    tools: Vec<Tool>,
    wakers: ChatWakers,
    /// The replies this process writes, to stop at once when a person asks here.
    running: Mutex<HashMap<i64, CancellationToken>>,
    shutdown: CancellationToken,
    /// This process's executors, when it runs them (see `route`).
    executor: Option<Uuid>,
    /// The runtime replies run on: the process's own, not the HTTP worker's that took the
    /// message (actix's workers have runtimes of their own, stopped with the server, which
    /// would take a reply down before it could record how it ended).
    runtime: tokio::runtime::Handle,
    /// Beads whose run task is alive here: a reply waits for its bead's to end.
    active: ActiveBeads,
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
}

impl Chat {
    /// Called on the runtime the replies are to run on.
    pub fn new(parts: ChatParts, config: ChatConfig) -> Chat {
        let run_env = crate::executor::run::RunEnv::toolchain_env(&config.run_pass_env);
        Chat(Arc::new(Inner {
            pool: parts.pool,
            bus: parts.bus,
            gateway: parts.gateway,
            repos: parts.repos,
            homes: parts.data_dir.join("homes"),
            run_env,
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

    async fn converse(&self, writer: &mut Writer, person: Uuid) -> Result<(), Halt> {
        let inner = &self.0;
        let conversation = writer.conversation().clone();
        let mut conn = inner.pool.get().await.map_err(crate::Error::from)?;
        let ctx = Context::load(&mut conn, &conversation, writer.message, person).await?;
        let Some(gateway) = inner.gateway.clone() else {
            return Err(Halt::failed(
                "gateway_unconfigured",
                "no LLM gateway is configured (LOOM_GATEWAY_URL), so no agent can reply",
            ));
        };
        let who = match &ctx.agent {
            Some(a) => Who { actor: Actor::Agent(a.id), name: a.name.clone(), byline: None },
            // A persona alone has no row to name: Loom acts, and its comments say for whom,
            // never passing the model's words off as the person's.
            None => Who {
                actor: Actor::System,
                name: ctx.speaker.clone(),
                byline: Some(format!("{}, pairing with {}", ctx.speaker, ctx.person)),
            },
        };
        if let Some(bead) = &conversation.bead_id {
            self.run_gone(writer, bead).await?;
        }
        // A first clone can take a while: the lease is renewed meanwhile.
        let opening = Bench::open(Setup {
            repos: &inner.repos,
            pool: &inner.pool,
            bus: &inner.bus,
            project: &ctx.project,
            bead: conversation.bead_id.as_deref(),
            conversation: conversation.id,
            who,
            homes: &inner.homes,
            run_env: &inner.run_env,
        });
        let bench = self.renewing(writer, opening).await??;
        let system = ctx
            .system_prompt(&mut conn, &bench.worktree.branch, bench.agents_md.as_deref())
            .await?;
        drop(conn);
        let mut messages = ctx.messages(system);
        let call = CallContext { run_id: None, agent_id: conversation.agent_id };
        for _ in 0..inner.config.max_turns {
            let spent = ctx.spent + (writer.prompt_tokens + writer.completion_tokens).max(0) as u64;
            if spent >= inner.config.token_budget {
                return Err(Halt::failed(
                    "token_budget_exceeded",
                    format!(
                        "this conversation has used {spent} tokens of its budget of {}; start a \
                         new conversation to go on",
                        inner.config.token_budget
                    ),
                ));
            }
            if gateway.health().get() == Health::Down {
                let why = gateway.health().report().reason.unwrap_or_else(|| "it is down".into());
                return Err(gateway_failed(&GatewayError::Unavailable(why)));
            }
            if writer.said {
                writer.text("\n\n");
            }
            let reply = self.ask(&gateway, &messages, call, writer).await?;
            writer.prompt_tokens += reply.usage.prompt_tokens as i64;
            writer.completion_tokens += reply.usage.completion_tokens as i64;
            if reply.tool_calls.is_empty() {
                return writer.finish().await;
            }
            messages.push(Message {
                content: Some(reply.content.clone()).filter(|c| !c.is_empty()),
                tool_calls: reply.tool_calls.clone(),
                ..Message::assistant("")
            });
            for call in &reply.tool_calls {
                self.still_open(&conversation).await?;
                let native = [(call.function.name.clone(), call.function.arguments.clone())];
                let (ok, output) = match parse_reply("", &native) {
                    Ok(mut actions) if !actions.is_empty() => {
                        let action = actions.remove(0);
                        writer.action(bench::shown(&action)).await?;
                        self.renewing(writer, bench.perform(&action)).await?
                    }
                    Ok(_) => (false, "no action".to_owned()),
                    Err(e) => {
                        let shown = serde_json::json!({
                            "action": call.function.name, "arguments": call.function.arguments,
                        });
                        writer.action(shown).await?;
                        (false, e.message)
                    }
                };
                writer.action_result(ok, &clip(&output, 16_000)).await?;
                let max = inner.config.max_result_chars;
                messages.push(Message::tool(call.id.clone(), clip(&output, max)));
            }
        }
        Err(Halt::failed(
            "too_many_turns",
            format!(
                "the agent acted {} times without finishing its reply; say how to go on",
                inner.config.max_turns
            ),
        ))
    }

    /// One streamed call: text is written every `FLUSH` while it comes, the lease renewed.
    async fn ask(
        &self,
        gateway: &Gateway,
        messages: &[Message],
        ctx: CallContext,
        writer: &mut Writer,
    ) -> Result<Completion, Halt> {
        let pending = Arc::new(Mutex::new(String::new()));
        let sink = pending.clone();
        let mut on_text =
            move |t: &str| sink.lock().unwrap_or_else(PoisonError::into_inner).push_str(t);
        let take = || std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
        let call = gateway.stream(messages, &self.0.tools, ctx, &mut on_text);
        tokio::pin!(call);
        let mut flush = tokio::time::interval(FLUSH);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renew = self.renew_interval();
        loop {
            tokio::select! {
                result = &mut call => {
                    writer.text(&take());
                    return result.map_err(|e| gateway_failed(&e));
                }
                _ = flush.tick() => {
                    writer.text(&take());
                    writer.flush().await?;
                }
                _ = renew.tick() => writer.renew().await?,
            }
        }
    }

    /// Runs `work` (an action) while renewing the reply's lease; stops it when the reply
    /// was stopped meanwhile.
    async fn renewing<T>(
        &self,
        writer: &mut Writer,
        work: impl Future<Output = T>,
    ) -> Result<T, Halt> {
        tokio::pin!(work);
        let mut renew = self.renew_interval();
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = renew.tick() => writer.renew().await?,
            }
        }
    }

    /// Waits (renewing the lease) for a run of `bead` still working in its worktree here,
    /// taken back by the pairing but not stopped yet, so the two never edit it together.
    async fn run_gone(&self, writer: &mut Writer, bead: &str) -> Result<(), Halt> {
        let gone = async {
            while self.0.active.contains(bead) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        match tokio::time::timeout(RUN_WAIT, self.renewing(writer, gone)).await {
            Ok(waited) => waited,
            Err(_) => Err(Halt::failed(
                "workspace_busy",
                "the agent that was working on the bead has not stopped yet; send the message \
                 again in a minute",
            )),
        }
    }

    fn renew_interval(&self) -> tokio::time::Interval {
        let every = self.0.config.lease / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        renew
    }

    /// Fails the reply when its bead was closed since it started: its actions would change
    /// work that is over.
    async fn still_open(&self, conversation: &Conversation) -> Result<(), Halt> {
        let Some(id) = &conversation.bead_id else { return Ok(()) };
        let mut conn = self.0.pool.get().await.map_err(crate::Error::from)?;
        let bead = Bead::get(&mut conn, id).await?;
        if bead.status == BeadStatus::Closed {
            return Err(bead_closed(id));
        }
        Ok(())
    }
}

fn gateway_failed(e: &GatewayError) -> Halt {
    match e {
        GatewayError::Unavailable(why) => Halt::failed(
            "gateway_unavailable",
            format!("the LLM gateway is not answering ({why}); try again once it is back"),
        ),
        GatewayError::Rejected { status, message } => Halt::failed(
            "gateway_rejected",
            format!("the LLM gateway refused the request ({status}): {message}"),
        ),
        GatewayError::Malformed(why) => Halt::failed(
            "gateway_malformed",
            format!("the LLM gateway sent a reply Loom could not read: {why}"),
        ),
    }
}

/// `text` cut to `max` characters, saying how much was left out.
fn clip(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}\n[… {} more characters]", n - max)
}
