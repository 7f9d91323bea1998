//! The action loop as a pure state machine: an `Event` (the model replied, an action was
//! performed, the gateway failed) goes in, the `Effect` to carry out next comes out (ask the
//! model, perform an action, finish with a typed ending). No I/O happens here; the runner
//! around it calls the gateway and the worktree, so every limit and every turn of the
//! conversation is unit-tested without either.

use std::collections::VecDeque;

use super::history::{Answered, History};

use crate::beads::RunOutcome;
use crate::gateway::{Completion, GatewayError, Message, Role, ToolCall};

use crate::workbench::actions::{Action, ReplyMode, Toolset, parse_reply};
use crate::workbench::clip::{self, RESULT_MAX_CHARS, clip};

/// When a run is stopped whatever the model says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Replies from the model.
    pub max_turns: u32,
    /// Replies in a row that carry no valid action.
    pub max_invalid: u32,
    /// The same action with the same result, this many times among the last `REPEAT_WINDOW`
    /// actions, is a loop.
    pub max_repeats: usize,
    /// Prompt plus completion tokens over the whole run.
    pub token_budget: u64,
    /// `create_bead` actions performed per run; more are refused to the model.
    pub max_created_beads: u32,
    /// Actions one reply may ask for (a reply is one turn, whatever it holds).
    pub max_actions_per_reply: usize,
    /// Longest a run may take, wall clock: a stalled remote or command cannot hold a bead
    /// (its lease renewed all the while) for ever. Enforced by the runner.
    pub max_duration: std::time::Duration,
    /// Longest action result put into the conversation, in characters.
    pub max_result_chars: usize,
    /// When the conversation grows past this many characters, the oldest results are elided.
    pub max_context_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_turns: 40,
            max_invalid: 3,
            max_repeats: 4,
            token_budget: 1_000_000,
            max_created_beads: 5,
            max_actions_per_reply: 20,
            max_duration: std::time::Duration::from_secs(2 * 3600),
            max_result_chars: RESULT_MAX_CHARS,
            max_context_chars: Limits::context_chars(DEFAULT_CONTEXT_TOKENS),
        }
    }
}

/// The context window assumed of a model when none is configured
/// (`LOOM_GATEWAY_CONTEXT_TOKENS`).
pub const DEFAULT_CONTEXT_TOKENS: u64 = 65_536;
/// Of a context window, the tokens left for the tools' descriptions and the reply.
const REPLY_RESERVE_TOKENS: u64 = 8_192;

impl Limits {
    /// The conversation's size limit, in characters, for a model whose context window holds
    /// `tokens`: about three characters a token (code and JSON run denser than prose), less
    /// room for the tools' descriptions and the reply.
    pub fn context_chars(tokens: u64) -> usize {
        let usable = tokens.saturating_sub(REPLY_RESERVE_TOKENS).max(4_096);
        usize::try_from(usable * 3).unwrap_or(usize::MAX)
    }
}

/// Actions looked back over when spotting a loop.
const REPEAT_WINDOW: usize = 12;

/// What happened, for the machine to decide what comes next.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run begins: its system prompt and the task.
    Start { system: String, task: String },
    /// The model answered.
    Replied(Completion),
    /// The last action asked for was performed: what the model is to read about it.
    Performed(ActionResult),
    /// The gateway could not answer (after its own retries).
    GatewayFailed(GatewayError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    pub ok: bool,
    pub text: String,
    /// The action could not be performed for want of a sandbox: once the model has been
    /// told, the run is parked (`sandbox_unavailable`) rather than charged.
    pub parks: bool,
}

impl ActionResult {
    pub fn ok(text: impl Into<String>) -> Self {
        ActionResult { ok: true, text: text.into(), parks: false }
    }

    pub fn error(text: impl Into<String>) -> Self {
        ActionResult { ok: false, text: text.into(), parks: false }
    }

    pub fn sandbox_unavailable(text: impl Into<String>) -> Self {
        ActionResult { ok: false, text: text.into(), parks: true }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Call the model with the conversation so far (`Machine::messages`).
    Ask,
    /// Perform this action in the worktree, then send `Event::Performed`.
    Perform(Action),
    /// The run is over.
    Finish(Ending),
}

/// How a run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The agent called `done`: commit what is left, merge, close the bead.
    Done { summary: String },
    /// The agent called `block`: a person must answer.
    NeedsHuman { question: String },
    /// A reviewer called `approve`: the work goes on to land.
    Approved { summary: String },
    /// A reviewer called `request_changes`: the work goes back to its author.
    ChangesRequested { body: String },
    /// Stopped: the outcome to record and why, in words a person can act on.
    Stopped { outcome: RunOutcome, reason: String },
}

/// An action waiting to be performed, with the native call it answers, if any.
#[derive(Debug, Clone)]
struct Pending {
    action: Action,
    call_id: Option<String>,
}

/// The run's conversation and counters.
#[derive(Debug, Clone)]
pub struct Machine {
    limits: Limits,
    history: History,
    turns: u32,
    invalid_in_a_row: u32,
    tokens: u64,
    created_beads: u32,
    queue: VecDeque<Pending>,
    /// The action being performed.
    current: Option<Pending>,
    /// Results of this reply's actions in plain-text mode, sent back together.
    results: Vec<String>,
    /// (fingerprint, result) of the latest actions, newest last.
    recent: VecDeque<(String, String)>,
    /// The actions of this reply performed so far, in text mode (their results go back in one
    /// message).
    answering: Vec<Answered>,
    /// The model's latest `update_plan`, shown at the end of every turn's results.
    plan: Vec<String>,
    /// How replies carry actions, which decides what an invalid one is told.
    mode: ReplyMode,
    /// The actions this run is offered; others are refused.
    toolset: Toolset,
    finished: bool,
}

impl Machine {
    pub fn new(limits: Limits) -> Machine {
        Machine {
            limits,
            history: History::default(),
            turns: 0,
            invalid_in_a_row: 0,
            tokens: 0,
            created_beads: 0,
            queue: VecDeque::new(),
            current: None,
            results: Vec::new(),
            recent: VecDeque::new(),
            answering: Vec::new(),
            plan: Vec::new(),
            mode: ReplyMode::Native,
            toolset: Toolset::Work,
            finished: false,
        }
    }

    /// A run adopted after its process died: its turns and tokens so far still count
    /// against its limits (its conversation is gone; the worktree holds its work).
    pub fn resumed(limits: Limits, turns: u32, tokens: u64) -> Machine {
        Machine { turns, tokens, ..Machine::new(limits) }
    }

    /// The same machine, its replies expected as `mode` says (native tool calls by default).
    pub fn replying(self, mode: ReplyMode) -> Machine {
        Machine { mode, ..self }
    }

    /// The conversation to send with `Effect::Ask`.
    pub fn messages(&self) -> &[Message] {
        self.history.messages()
    }

    /// The same machine, offering the actions of `toolset` (a work run's by default).
    pub fn offering(self, toolset: Toolset) -> Machine {
        Machine { toolset, ..self }
    }

    /// How replies are expected to carry actions.
    pub fn mode(&self) -> ReplyMode {
        self.mode
    }

    pub fn turns(&self) -> u32 {
        self.turns
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Feeds one event; returns what to do next. After a `Finish`, every event finishes again
    /// the same way a stopped run would (nothing more is performed).
    pub fn step(&mut self, event: Event) -> Effect {
        if self.finished {
            return Effect::Finish(stopped(RunOutcome::Failed, "the run had already ended"));
        }
        let effect = match event {
            Event::Start { system, task } => {
                self.history = History::start(system, task);
                Effect::Ask
            }
            Event::Replied(reply) => self.replied(reply),
            Event::Performed(result) => self.performed(result),
            Event::GatewayFailed(e) => Effect::Finish(gateway_ending(e)),
        };
        if matches!(effect, Effect::Finish(_)) {
            self.finished = true;
        }
        effect
    }

    fn replied(&mut self, reply: Completion) -> Effect {
        self.turns += 1;
        self.tokens += match reply.usage.prompt_tokens + reply.usage.completion_tokens {
            // A gateway that reports no usage must not make the budget unlimited: count
            // about four characters a token of what was sent and received.
            0 => self.estimate_tokens(&reply),
            n => n,
        };
        self.history.push(assistant_message(&reply), self.turns, Vec::new());
        if self.tokens > self.limits.token_budget {
            let reason = format!(
                "the run used {} tokens, over its budget of {}",
                self.tokens, self.limits.token_budget
            );
            return Effect::Finish(stopped(RunOutcome::TokenBudget, reason));
        }
        let native: Vec<(String, String)> = reply
            .tool_calls
            .iter()
            .map(|c| (c.function.name.clone(), c.function.arguments.clone()))
            .collect();
        match parse_reply(&reply.content, &native) {
            Ok(actions) if actions.len() > self.limits.max_actions_per_reply => {
                let m = format!(
                    "the reply holds {} actions; send at most {} at a time",
                    actions.len(),
                    self.limits.max_actions_per_reply
                );
                self.invalid(&reply.tool_calls, m)
            }
            Ok(actions) if let Some(name) = ends_early(&actions) => {
                let m = format!(
                    "{name} ends the run, so it must be the last action of a reply (or stand \
                     alone); nothing in this reply was performed"
                );
                self.invalid(&reply.tool_calls, m)
            }
            Ok(actions) if !actions.is_empty() => {
                self.invalid_in_a_row = 0;
                let ids = reply.tool_calls.iter().map(|c| Some(c.id.clone()));
                let ids = ids.chain(std::iter::repeat(None));
                self.queue = actions
                    .into_iter()
                    .zip(ids)
                    .map(|(action, call_id)| Pending { action, call_id })
                    .collect();
                self.next_action()
            }
            Ok(_) => self.invalid(&reply.tool_calls, "the reply holds no action".into()),
            Err(e) if self.mode == ReplyMode::Native => {
                self.invalid(&reply.tool_calls, e.for_native_tools().message)
            }
            Err(e) => self.invalid(&reply.tool_calls, e.message),
        }
    }

    /// A reply with no valid action: say why, and ask again unless that was one too many.
    fn invalid(&mut self, calls: &[ToolCall], message: String) -> Effect {
        self.invalid_in_a_row += 1;
        if self.invalid_in_a_row >= self.limits.max_invalid {
            let reason = format!(
                "{} replies in a row carried no valid action; the last: {message}",
                self.invalid_in_a_row
            );
            return Effect::Finish(stopped(RunOutcome::InvalidReplies, reason));
        }
        let text = format!("Your reply could not be used: {message}");
        if calls.is_empty() {
            self.history.push(Message::user(text), self.turns, Vec::new());
        } else {
            // Every native call must be answered, or the next request is malformed.
            for c in calls {
                let answer = Message::tool(c.id.clone(), text.clone());
                self.history.push(answer, self.turns, Vec::new());
            }
        }
        self.ask_again()
    }

    /// Performs the next queued action, or, when the reply's actions are all done, sends the
    /// results back.
    fn next_action(&mut self) -> Effect {
        let Some(next) = self.queue.pop_front() else {
            if !self.results.is_empty() {
                let results = std::mem::take(&mut self.results);
                // However many results one reply asked for, together they leave room for the
                // rest of the conversation.
                let each = (self.limits.max_context_chars / 2 / results.len()).max(200);
                let text = results.iter().map(|r| clip(r, each)).collect::<Vec<_>>().join("\n\n");
                let answered = std::mem::take(&mut self.answering);
                self.history.push(Message::user(text), self.turns, answered);
            }
            return self.ask_again();
        };
        if !self.toolset.offers(next.action.name()) {
            let refusal = ActionResult::error(self.toolset.refusal(next.action.name()));
            self.current = Some(next);
            return self.performed(refusal);
        }
        match &next.action {
            Action::Approve { summary } => {
                return Effect::Finish(Ending::Approved { summary: summary.clone() });
            }
            Action::RequestChanges { body } if body.trim().is_empty() => {
                let refusal = ActionResult::error(
                    "request_changes needs a body: say what must change, specific enough to act on",
                );
                self.current = Some(next);
                return self.performed(refusal);
            }
            Action::RequestChanges { body } => {
                return Effect::Finish(Ending::ChangesRequested { body: body.clone() });
            }
            Action::Done { summary } => {
                return Effect::Finish(Ending::Done { summary: summary.clone() });
            }
            Action::Block { question } => {
                return Effect::Finish(Ending::NeedsHuman { question: question.clone() });
            }
            Action::CreateBead { .. } if self.created_beads >= self.limits.max_created_beads => {
                let refusal = ActionResult::error(format!(
                    "not filed: a run may file at most {} beads; mention further work in your \
                     summary instead",
                    self.limits.max_created_beads
                ));
                self.current = Some(next);
                return self.performed(refusal);
            }
            Action::CreateBead { .. } => self.created_beads += 1,
            Action::UpdatePlan { plan } => {
                self.plan = plan.clone();
                let noted = format!(
                    "Plan updated ({} steps); it is shown at the end of every turn's results.",
                    plan.len()
                );
                self.current = Some(next);
                return self.performed(ActionResult::ok(noted));
            }
            _ => {}
        }
        let action = next.action.clone();
        self.current = Some(next);
        Effect::Perform(action)
    }

    fn performed(&mut self, result: ActionResult) -> Effect {
        let Some(done) = self.current.take() else {
            return Effect::Finish(stopped(RunOutcome::Failed, "a result came with no action"));
        };
        let fingerprint = done.action.fingerprint();
        self.recent.push_back((fingerprint.clone(), result.text.clone()));
        if self.recent.len() > REPEAT_WINDOW {
            self.recent.pop_front();
        }
        let repeats = self.recent.iter().filter(|(f, r)| *f == fingerprint && *r == result.text);
        if repeats.count() >= self.limits.max_repeats {
            let reason = format!(
                "the agent repeated `{}` {} times with the same result",
                done.action.name(),
                self.limits.max_repeats
            );
            return Effect::Finish(stopped(RunOutcome::LoopDetected, reason));
        }
        let text = self.clip(&result);
        let answered = Answered::new(&done.action, result.ok, &text);
        match done.call_id {
            Some(id) => self.history.push(Message::tool(id, text), self.turns, vec![answered]),
            None => {
                let n = self.results.len() + 1;
                self.results.push(clip::numbered(n, done.action.name(), &text));
                self.answering.push(answered);
            }
        }
        if result.parks {
            return Effect::Finish(stopped(RunOutcome::SandboxUnavailable, result.text));
        }
        if !result.ok {
            self.skip_the_rest(done.action.name());
        }
        self.next_action()
    }

    /// A batch stops at its first failed action: the actions after it are not performed, and
    /// the model is told so, each in its place (every native call gets its answer).
    fn skip_the_rest(&mut self, failed: &str) {
        for pending in std::mem::take(&mut self.queue) {
            let name = pending.action.name();
            let text = match pending.action {
                ref ending if Toolset::ends(ending) => format!(
                    "skipped: {name} was not performed because {failed} before it failed, so \
                     the run goes on; deal with the failure, then call {name} again"
                ),
                _ => format!(
                    "skipped: not performed because {failed} before it failed; send it again \
                     if it still makes sense"
                ),
            };
            match pending.call_id {
                Some(id) => self.history.push(Message::tool(id, text), self.turns, Vec::new()),
                None => {
                    let k = self.results.len() + 1;
                    self.results.push(clip::numbered(k, name, &text));
                }
            }
        }
    }

    fn estimate_tokens(&self, reply: &Completion) -> u64 {
        let sent: usize =
            self.messages().iter().map(|m| m.content.as_ref().map_or(0, String::len)).sum();
        let args: usize = reply.tool_calls.iter().map(|c| c.function.arguments.len()).sum();
        ((sent + reply.content.len() + args) / 4) as u64
    }

    fn ask_again(&mut self) -> Effect {
        if self.turns >= self.limits.max_turns {
            let reason = format!("the run reached its limit of {} turns", self.limits.max_turns);
            return Effect::Finish(stopped(RunOutcome::TurnLimit, reason));
        }
        self.note_what_is_left();
        self.history.fit(self.limits.max_context_chars);
        Effect::Ask
    }

    /// Ends the turn's last result with the turns and tokens left, and the plan: the model
    /// paces itself by them.
    fn note_what_is_left(&mut self) {
        let Some(text) = self.history.last_result_mut() else { return };
        let turns_left = self.limits.max_turns - self.turns;
        let tokens_left = self.limits.token_budget.saturating_sub(self.tokens);
        let hurry = match turns_left <= 3 {
            true => format!(" {}", self.toolset.hurry()),
            false => String::new(),
        };
        text.push_str(&format!(
            "\n\n[{turns_left} turns and about {tokens_left} tokens left in this run.{hurry}]"
        ));
        if !self.plan.is_empty() {
            text.push_str("\n[Your plan:");
            for (i, step) in self.plan.iter().enumerate() {
                text.push_str(&format!("\n{}. {step}", i + 1));
            }
            text.push(']');
        }
    }

    /// A result as the model will read it: marked when it failed, cut when long.
    fn clip(&self, result: &ActionResult) -> String {
        clip::result(result.ok, &result.text, self.limits.max_result_chars)
    }
}

/// The name of an action that ends the run (`done`, `approve`...) but is not the last of
/// its reply: it would end the run before the actions after it.
fn ends_early(actions: &[Action]) -> Option<&'static str> {
    let (_, before_last) = actions.split_last()?;
    before_last.iter().find(|a| Toolset::ends(a)).map(Action::name)
}

fn stopped(outcome: RunOutcome, reason: impl Into<String>) -> Ending {
    Ending::Stopped { outcome, reason: reason.into() }
}

/// An outage, or a gateway refusing Loom itself (its key, its model), parks the bead without
/// cost; a refusal of this request (a prompt too long) is the run's failure.
fn gateway_ending(e: GatewayError) -> Ending {
    match e {
        GatewayError::Unavailable(m) => stopped(RunOutcome::GatewayUnavailable, m),
        // Refused for its tools with `native` required (`auto` asks again without them):
        // whatever its status, no later run would fare better.
        e if e.refuses_tools() => stopped(RunOutcome::Failed, e.to_string()),
        e @ GatewayError::Rejected { status: 401 | 403 | 404, .. } => {
            stopped(RunOutcome::GatewayUnavailable, e.to_string())
        }
        other => stopped(RunOutcome::Failed, other.to_string()),
    }
}

/// The reply as it goes back into the conversation.
fn assistant_message(reply: &Completion) -> Message {
    Message {
        role: Role::Assistant,
        content: (!reply.content.is_empty() || reply.tool_calls.is_empty())
            .then(|| reply.content.clone()),
        tool_calls: reply.tool_calls.clone(),
        tool_call_id: None,
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
