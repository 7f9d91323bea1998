//! One reply, turn by turn: the context and the worktree, then the gateway (streamed: text
//! written every `FLUSH`), the tool calls it makes performed at the bench with their results
//! fed back, and again, until it answers without acting, a limit is reached or something
//! fails; the lease renewed all the while.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use super::Conversation;
use super::bench::{self, Setup, Who};
use super::context::{Context, bead_closed};
use super::reply::Chat;
use super::writer::{Halt, Writer};
use crate::activity::Actor;
use crate::beads::{Bead, BeadStatus};
use crate::executor::history::{Answered, History};
use crate::gateway::{CallContext, Completion, Gateway, GatewayError, Health, Message};
use crate::workbench::actions::{ReplyMode, parse_reply};
use crate::workbench::clip::{self, clip};

/// Longest a reply waits for a run taken back from its bead to stop working in the worktree.
const RUN_WAIT: Duration = Duration::from_secs(120);

/// Text is written at most this often while it streams.
const FLUSH: Duration = Duration::from_millis(50);

/// Longest action output a stream's `action_result` carries.
const SHOWN_OUTPUT: usize = 16_000;

impl Chat {
    pub(super) async fn converse(&self, writer: &mut Writer, person: Uuid) -> Result<(), Halt> {
        let inner = &self.0;
        let conversation = writer.conversation().clone();
        let mut conn = inner.pool.get().await.map_err(crate::Error::from)?;
        let ctx = Context::load(&mut conn, &conversation, writer.message, person).await?;
        // Not held while waiting for a run to stop or a clone to finish.
        drop(conn);
        let Some(gateway) = inner.gateway.clone() else {
            return Err(Halt::failed("gateway_unconfigured", crate::http::api::meta::NO_GATEWAY));
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
        let opening = bench::open(Setup {
            repos: &inner.repos,
            pool: &inner.pool,
            bus: &inner.bus,
            sandbox: &inner.sandbox,
            project: &ctx.project,
            bead: conversation.bead_id.as_deref(),
            conversation: conversation.id,
            who,
            homes: &inner.homes,
            run_env: &inner.run_env,
        });
        let bench = self.renewing(writer, opening).await??;
        let agents_md = bench.agents_md().await;
        let mut mode = inner.config.tools.mode(gateway.refuses_tools());
        let branch = &bench.worktree.branch;
        let start = async |mode| -> Result<History, Halt> {
            let mut conn = inner.pool.get().await.map_err(crate::Error::from)?;
            let system = ctx.system_prompt(&mut conn, branch, agents_md.as_deref(), mode).await?;
            Ok(History::chat(ctx.messages(system)))
        };
        let mut history = start(mode).await?;
        let billed = CallContext { run_id: None, agent_id: conversation.agent_id };
        let mut replies = 0;
        while replies < inner.config.max_turns {
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
            history.fit(inner.config.max_context_chars);
            let messages = history.messages();
            let reply = match self.ask(&gateway, messages, mode, billed, writer).await? {
                Ok(reply) => reply,
                Err(e)
                    if e.refuses_tools()
                        && mode == ReplyMode::Native
                        && inner.config.tools.falls_back() =>
                {
                    // Again in JSON text, from the start of this reply (the worktree keeps
                    // whatever its actions did).
                    gateway.learn_refuses_tools(&e);
                    mode = ReplyMode::Text;
                    history = start(mode).await?;
                    continue;
                }
                Err(e) => return Err(gateway_failed(&e)),
            };
            replies += 1;
            writer.prompt_tokens += reply.usage.prompt_tokens as i64;
            writer.completion_tokens += reply.usage.completion_tokens as i64;
            let turn = history.last_turn() + 1;
            if reply.tool_calls.is_empty() {
                // Without native tools, actions come as JSON in the text; a reply with none is
                // the answer.
                let written = match mode {
                    ReplyMode::Text => parse_reply(&reply.content, &[]).ok(),
                    ReplyMode::Native => None,
                };
                let Some(actions) = written.filter(|a| !a.is_empty()) else {
                    return writer.finish().await;
                };
                history.push(Message::assistant(reply.content.clone()), turn, Vec::new());
                let (mut results, mut answered) = (Vec::new(), Vec::new());
                for (i, action) in actions.iter().enumerate() {
                    self.still_open(&conversation).await?;
                    writer.action(bench::shown(action)).await?;
                    let (ok, output) =
                        self.renewing(writer, bench::perform(&bench, action)).await?;
                    writer.action_result(ok, &clip(&output, SHOWN_OUTPUT)).await?;
                    let output = clip::result(ok, &output, inner.config.max_result_chars);
                    answered.push(Answered::new(action, ok, &output));
                    results.push(clip::numbered(i + 1, action.name(), &output));
                }
                history.push(Message::user(results.join("\n\n")), turn, answered);
                continue;
            }
            let said = Message {
                content: Some(reply.content.clone()).filter(|c| !c.is_empty()),
                tool_calls: reply.tool_calls.clone(),
                ..Message::assistant("")
            };
            history.push(said, turn, Vec::new());
            for call in &reply.tool_calls {
                self.still_open(&conversation).await?;
                let native = [(call.function.name.clone(), call.function.arguments.clone())];
                let (ok, output, action) = match parse_reply("", &native) {
                    Ok(mut actions) if !actions.is_empty() => {
                        let action = actions.remove(0);
                        writer.action(bench::shown(&action)).await?;
                        let (ok, output) =
                            self.renewing(writer, bench::perform(&bench, &action)).await?;
                        (ok, output, Some(action))
                    }
                    Ok(_) => (false, "no action".to_owned(), None),
                    Err(e) => {
                        let shown = serde_json::json!({
                            "action": call.function.name, "arguments": call.function.arguments,
                        });
                        writer.action(shown).await?;
                        (false, e.message, None)
                    }
                };
                writer.action_result(ok, &clip(&output, SHOWN_OUTPUT)).await?;
                let output = clip(&output, inner.config.max_result_chars);
                let answered = action.iter().map(|a| Answered::new(a, ok, &output)).collect();
                history.push(Message::tool(call.id.clone(), output), turn, answered);
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
    /// The tools go with it in native mode. The gateway's failure is the caller's to judge.
    async fn ask(
        &self,
        gateway: &Gateway,
        messages: &[Message],
        mode: ReplyMode,
        ctx: CallContext,
        writer: &mut Writer,
    ) -> Result<Result<Completion, GatewayError>, Halt> {
        let pending = Arc::new(Mutex::new(String::new()));
        let sink = pending.clone();
        let mut on_text =
            move |t: &str| sink.lock().unwrap_or_else(PoisonError::into_inner).push_str(t);
        let take = || std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
        let tools = match mode {
            ReplyMode::Native => self.0.tools.as_slice(),
            ReplyMode::Text => &[],
        };
        let call = gateway.stream(messages, tools, ctx, &mut on_text);
        tokio::pin!(call);
        let mut flush = tokio::time::interval(FLUSH);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renew = self.renew_interval();
        loop {
            tokio::select! {
                result = &mut call => {
                    writer.text(&take());
                    return Ok(result);
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
            format!("the LLM gateway is unavailable ({why}); try again once it is back"),
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
