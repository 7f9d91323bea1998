//! The runner: drives one run's `Machine`, doing the I/O it asks for (the gateway, the
//! worktree, the tracker), recording every step, and finishing the run (commit, merge, push,
//! release) when the machine says it is over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::brief::{self, Start};
use super::finish;
use super::machine::{ActionResult, Effect, Ending, Event, Limits, Machine};
use super::pickup::{self, OpenRun, StepRecord};
use super::prompt;
use crate::activity::Actor;
use crate::beads::{RetryPolicy, RunKind, RunOutcome};
use crate::db::Pool;
use crate::error::{Error, Result};
use crate::events::{Bus, Event as BusEvent, Kind};
use crate::gateway::{CallContext, Gateway, GatewayError, Health, Tool};
use crate::git::{PatchLimit, Repos};
use crate::workbench::actions::{
    Action, ReplyMode, ToolsSetting, Toolset, tool_specs, vocabulary_text,
};
use crate::workbench::{Acting, Opening, Outcome, REPOSITORY_UNREACHABLE, Sandbox, Workbench};

/// What every run of this process shares.
pub struct RunEnv {
    pub pool: Pool,
    pub gateway: Gateway,
    pub repos: Repos,
    pub limits: Limits,
    pub retry: RetryPolicy,
    /// This process, as `runs.worker`.
    pub worker: uuid::Uuid,
    /// The tools offered to the model for native calls: a work run's and a review's.
    pub tools: Offered,
    /// How replies carry actions.
    pub tools_setting: ToolsSetting,
    /// `HOME` for `run`, one directory per project, so tools' caches last between runs.
    pub homes: std::path::PathBuf,
    /// Where agents' commands run.
    pub sandbox: Sandbox,
    /// Variables `run` gets besides its basic environment (where the toolchains live).
    pub run_env: Vec<(String, String)>,
    /// Where steps are streamed, and told of what runs store.
    pub bus: Bus,
    /// The beads whose run task is alive here (conversations wait for theirs to end).
    pub active: super::ActiveBeads,
}

/// The native tools of each kind of run, made once.
pub struct Offered {
    work: Vec<Tool>,
    review: Vec<Tool>,
}

impl Offered {
    pub fn new() -> Offered {
        Offered { work: RunEnv::tools(Toolset::Work), review: RunEnv::tools(Toolset::Review) }
    }

    fn of(&self, set: Toolset) -> &[Tool] {
        match set {
            Toolset::Work => &self.work,
            Toolset::Review => &self.review,
        }
    }
}

impl Default for Offered {
    fn default() -> Self {
        Offered::new()
    }
}

impl RunEnv {
    /// The tools offered to a model for native calls in a conversation of `set`.
    pub fn tools(set: Toolset) -> Vec<Tool> {
        let specs = tool_specs(set);
        specs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let f = &t["function"];
                Some(Tool::function(
                    f["name"].as_str()?,
                    f["description"].as_str().unwrap_or_default(),
                    f["parameters"].clone(),
                ))
            })
            .collect()
    }
}

/// A run being worked: where, by whom, and what it costs.
pub(super) struct Live {
    pub open: OpenRun,
    pub start: Start,
    pub bench: Workbench,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The last reply's tokens, not yet put on a step: the first action of a reply carries
    /// what the reply cost.
    pub unbilled: (u64, u64),
}

impl Live {
    /// The actions this run is offered: a review's, or a work run's.
    pub fn toolset(&self) -> Toolset {
        match self.open.kind {
            RunKind::Review => Toolset::Review,
            RunKind::Work => Toolset::Work,
        }
    }

    /// Commits everything in the worktree with the agent as author and the `Bead:` and
    /// `Run:` trailers; the sha, or `None` when there was nothing to commit.
    pub async fn commit(&self, message: &str) -> Result<Option<String>> {
        self.bench.commit(message).await
    }

    /// Streams a step to whoever watches (not stored as activity: `run_steps` has it).
    fn stream_step(&self, env: &RunEnv, step: &StepRecord<'_>, action: &str) {
        let mut event = BusEvent::live(
            Kind::RunStep,
            Some(&self.open.project_id),
            Some(&self.open.bead_id),
            serde_json::json!({
                "run": self.open.id,
                "turn": step.turn,
                "action": action,
                "ok": step.ok,
                "duration_ms": step.duration_ms,
                "tokens": step.prompt_tokens + step.completion_tokens,
            }),
        );
        event.actor_agent_id = Some(self.open.agent_id);
        env.bus.publish(event);
    }
}

/// How a run is stopped without ending it (it stays open for its project's next owner).
pub struct Stop {
    /// Where it is: its claim moved elsewhere, or a shutdown's grace ran out.
    pub now: CancellationToken,
    /// At its next checkpoint, once the turn under way (the gateway call and the actions
    /// its answer asked for) has finished and been recorded (a shutdown).
    pub at_checkpoint: CancellationToken,
}

/// How a run's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// Ended, stopped or no longer ours: nothing more for this task to do.
    Done,
    /// The database went away under it: the run is still open and uncharged, for the
    /// supervisor to start again once the database answers.
    Open,
}

/// Works one run to its end. Returns when it ended, when its claim was lost, when it is
/// stopped (`Stop`), or when the database went away: all but the first leave the run open,
/// uncharged, for its next owner or for the supervisor to start again.
pub async fn work(env: Arc<RunEnv>, open: OpenRun, stop: Stop) -> Left {
    let cancel = stop.now;
    let _active = env.active.hold(&open.bead_id);
    let run_id = open.id;
    let bead_id = open.bead_id.clone();
    let limit = env.limits.max_duration;
    let ended = tokio::select! {
        // Cancellation first: an interrupted run stays open for the next owner, uncharged.
        biased;
        () = cancel.cancelled() => return Left::Done,
        ended = tokio::time::timeout(limit, drive(&env, open.clone(), &stop.at_checkpoint)) => ended,
    };
    if cancel.is_cancelled() {
        return Left::Done;
    }
    if matches!(ended, Ok(Err(Error::Unavailable(_)))) && stop.at_checkpoint.is_cancelled() {
        tracing::info!(run.id = %run_id, bead.id = %bead_id, "a run stopped at a checkpoint for the shutdown");
        return Left::Done;
    }
    let Ok(ended) = ended else {
        let why = format!("the run took longer than {} s and was stopped", limit.as_secs());
        tracing::warn!(run.id = %run_id, bead.id = %bead_id, "{why}");
        if let Err(e) = fail(&env, &open, &why).await {
            tracing::error!(run.id = %run_id, error = %e, "could not end a run");
        }
        return Left::Done;
    };
    let result = match ended {
        // Not the run's fault: it goes on once the database is back, uncharged.
        Err(e) if outage(&e) => {
            tracing::warn!(run.id = %run_id, bead.id = %bead_id, error = %e, "the database went away under a run; it waits to go on");
            return Left::Open;
        }
        Ok((live, ending)) => match finish::finish(&env, &live, ending).await {
            Ok(()) => Ok(()),
            Err(e) if outage(&e) => {
                tracing::warn!(run.id = %run_id, bead.id = %bead_id, error = %e, "the database went away as a run finished; it waits to go on");
                return Left::Open;
            }
            // Ending it failed (a merge error, the database): the run fails with that reason,
            // so a person sees why, rather than the lease lapsing with none.
            Err(e) => {
                tracing::warn!(run.id = %run_id, bead.id = %bead_id, error = %e, "a run could not finish");
                fail(&env, &open, &format!("finishing the run failed: {e}")).await
            }
        },
        // Someone else's now: nothing to release.
        Err(Error::Conflict { code: "claim_lost", .. }) => {
            tracing::info!(run.id = %run_id, bead.id = %bead_id, "a run's claim was lost; it stops");
            Ok(())
        }
        // The repository, not the bead: the project waits for it, the bead is not charged.
        Err(Error::Conflict { code: REPOSITORY_UNREACHABLE, message }) => {
            tracing::warn!(run.id = %run_id, bead.id = %bead_id, error = %message, "the project's repository cannot be reached; the bead goes back uncharged");
            finish::repository_unreachable(&env, &open, &message).await
        }
        // The worktree or the tracker failed under the run: an attempt, with the reason.
        Err(e) => {
            tracing::warn!(run.id = %run_id, bead.id = %bead_id, error = %e, "a run failed");
            fail(&env, &open, &format!("the run could not go on: {e}")).await
        }
    };
    if let Err(e) = result {
        // The lease will lapse and the ticker return the bead: nothing is lost.
        tracing::error!(run.id = %run_id, bead.id = %bead_id, error = %e, "could not end a run");
    }
    Left::Done
}

/// The database (not the run) failed: it could not be reached or stopped answering.
fn outage(e: &Error) -> bool {
    e.code() == "unavailable" && !matches!(e, Error::Unavailable(m) if m == INTERRUPTED)
}

/// What `drive` says when it stops at a checkpoint.
const INTERRUPTED: &str = "the run was interrupted";

/// Fails the run, trying again for a while if the database is away (failing twice is
/// harmless: the second finds the run ended), rather than letting its lease lapse, which
/// would cost the bead another attempt on top.
async fn fail(env: &RunEnv, open: &OpenRun, why: &str) -> Result<()> {
    let mut wait = Duration::from_millis(500);
    loop {
        match finish::fail(env, open, why).await {
            Err(e) if outage(&e) && wait < Duration::from_secs(10) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            done => return done,
        }
    }
}

async fn drive(
    env: &RunEnv,
    open: OpenRun,
    checkpoint: &CancellationToken,
) -> Result<(Live, Ending)> {
    let start = brief::load(&mut *env.pool.get().await?, &open).await?;
    let bench = open_bench(env, &open, &start).await?;
    let mut start = start;
    start.brief.agents_md = bench.agents_md().await;
    let mut live =
        Live { open, start, bench, prompt_tokens: 0, completion_tokens: 0, unbilled: (0, 0) };
    // An adopted run goes on counting from where it was.
    let (turns, prompt, completion) =
        pickup::totals(&mut *env.pool.get().await?, live.open.id).await?;
    live.prompt_tokens = prompt.max(0) as u64;
    live.completion_tokens = completion.max(0) as u64;
    let spent = live.prompt_tokens + live.completion_tokens;
    if let Some(work) = &mut live.start.brief.reviewing {
        // A review reads the work as it is: no setup, no merge; its diff is in the task.
        let diff = env.repos.bead_diff(&live.start.repo, &live.open.bead_id, REVIEW_DIFF).await?;
        if let Some(diff) = diff {
            (work.patch, work.files, work.omitted_lines) =
                (diff.patch, diff.files, diff.omitted_lines);
        }
    } else if turns == 0 {
        live.start.brief.on_branch = live.bench.ahead(ON_BRANCH_SHOWN).await?;
        if live.start.brief.merge_conflict {
            live.start.brief.merged_base = live.bench.merge_base().await?;
        }
        match setup(env, &live).await? {
            Setup::Refused(reason) => {
                let outcome = RunOutcome::SandboxUnavailable;
                return Ok((live, Ending::Stopped { outcome, reason }));
            }
            Setup::Ran(said) => live.start.brief.setup = said,
        }
    }
    let mode = env.tools_setting.mode(env.gateway.refuses_tools());
    let (mut machine, mut effect) = begin(env, &live, mode, turns.max(0) as u32, spent);
    loop {
        // A turn's checkpoint is before its question: the answer of the one before has been
        // acted on and every step recorded, so the next owner goes on from here.
        if checkpoint.is_cancelled() && matches!(effect, Effect::Ask) {
            return Err(Error::Unavailable(INTERRUPTED.into()));
        }
        effect = match effect {
            Effect::Finish(ending) => return Ok((live, ending)),
            Effect::Ask => {
                ensure_ours(env, &live).await?;
                let event = ask(env, &mut live, &machine).await;
                if let Event::GatewayFailed(e) = &event
                    && e.refuses_tools()
                    && machine.mode() == ReplyMode::Native
                    && env.tools_setting.falls_back()
                {
                    // The conversation starts again in JSON text (the worktree keeps what
                    // was done); its turns and tokens still count.
                    env.gateway.learn_refuses_tools(e);
                    // The machine's count includes its estimates for a gateway that reports no
                    // usage.
                    let spent = machine.tokens().max(live.prompt_tokens + live.completion_tokens);
                    (machine, effect) = begin(env, &live, ReplyMode::Text, machine.turns(), spent);
                    continue;
                }
                let effect = machine.step(event);
                pickup::record_totals(
                    &mut *env.pool.get().await?,
                    live.open.id,
                    machine.turns(),
                    live.prompt_tokens,
                    live.completion_tokens,
                )
                .await?;
                effect
            }
            Effect::Perform(action) => {
                // The rest of a reply's actions stop too when the bead was taken back.
                ensure_ours(env, &live).await?;
                let started_at = chrono::Utc::now();
                let clock = Instant::now();
                let result = perform(&live, &action).await;
                let record = StepRecord {
                    run_id: live.open.id,
                    turn: machine.turns() as i32,
                    action: clipped(serde_json::to_value(&action).unwrap_or_default()),
                    ok: result.ok,
                    result: &result.text,
                    prompt_tokens: live.unbilled.0 as i64,
                    completion_tokens: live.unbilled.1 as i64,
                    started_at,
                    duration_ms: clock.elapsed().as_millis() as i64,
                };
                pickup::record_step(&mut *env.pool.get().await?, &record).await?;
                live.stream_step(env, &record, action.name());
                // What the action stored (a bead filed, a comment) goes out now.
                env.bus.committed();
                live.unbilled = (0, 0);
                machine.step(Event::Performed(result))
            }
        };
    }
}

/// The bead's workbench: its worktree, acted in as its agent, commits tied to the bead and
/// the run.
async fn open_bench(env: &RunEnv, open: &OpenRun, start: &Start) -> Result<Workbench> {
    let acting = Acting {
        actor: Actor::Agent(open.agent_id),
        name: start.agent.name.clone(),
        byline: None,
        trailers: vec![("Bead".into(), open.bead_id.clone()), ("Run".into(), open.id.to_string())],
    };
    Workbench::open(Opening {
        repos: &env.repos,
        pool: &env.pool,
        bus: &env.bus,
        sandbox: &env.sandbox,
        project: &start.project,
        worktree: open.bead_id.clone(),
        bead: Some(open.bead_id.clone()),
        acting,
        homes: &env.homes,
        run_env: &env.run_env,
    })
    .await
}

/// How a run's `setup_command` went.
enum Setup {
    /// It ran (or there is none): what the model is told of it.
    Ran(Option<String>),
    /// No sandbox could be made for it: the run is parked.
    Refused(String),
}

/// Runs the project's `setup_command`, with the network open, before a run's first turn; it
/// is recorded as the run's first step.
async fn setup(env: &RunEnv, live: &Live) -> Result<Setup> {
    let Some(command) = live.start.project.setup_command.clone() else {
        return Ok(Setup::Ran(None));
    };
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    let outcome = live.bench.setup(&command).await;
    let record = StepRecord {
        run_id: live.open.id,
        turn: 0,
        action: serde_json::json!({ "action": "setup_command", "command": command }),
        ok: outcome.ok(),
        result: outcome.text(),
        prompt_tokens: 0,
        completion_tokens: 0,
        started_at,
        duration_ms: clock.elapsed().as_millis() as i64,
    };
    pickup::record_step(&mut *env.pool.get().await?, &record).await?;
    live.stream_step(env, &record, "setup_command");
    Ok(match outcome {
        Outcome::SandboxUnavailable(why) => Setup::Refused(why),
        Outcome::Ok(text) | Outcome::Failed(text) => Setup::Ran(Some(text)),
    })
}

/// An action as a step stores it: long strings (a whole file written) cut, since the step
/// is a record for people, not a copy of the worktree.
pub(crate) fn clipped(mut action: serde_json::Value) -> serde_json::Value {
    const MAX: usize = 2_000;
    if let Some(map) = action.as_object_mut() {
        for v in map.values_mut() {
            if let Some(text) = v.as_str().filter(|t| t.chars().count() > MAX) {
                let kept: String = text.chars().take(MAX).collect();
                let cut = text.chars().count() - MAX;
                *v = serde_json::Value::String(format!("{kept}[… {cut} more characters]"));
            }
        }
    }
    action
}

/// Fails with `claim_lost` when the run is no longer open or no longer this process's.
async fn ensure_ours(env: &RunEnv, live: &Live) -> Result<()> {
    let mut conn = env.pool.get().await?;
    if pickup::still_ours(&mut conn, live.open.id, env.worker).await? {
        return Ok(());
    }
    Err(Error::Conflict {
        code: "claim_lost",
        message: "the bead was taken back or handed to another process".into(),
    })
}

/// The conversation's start, its replies expected in `mode`, counting `turns` and `spent`
/// tokens already.
fn begin(env: &RunEnv, live: &Live, mode: ReplyMode, turns: u32, spent: u64) -> (Machine, Effect) {
    let toolset = live.toolset();
    let system = prompt::system_prompt(&live.start.brief, &vocabulary_text(mode, toolset));
    let task = prompt::task(&live.start.brief);
    let mut machine = Machine::resumed(env.limits, turns, spent).replying(mode).offering(toolset);
    let effect = machine.step(Event::Start { system, task });
    (machine, effect)
}

/// One call to the model, with the tools in native mode. While the gateway is known to be
/// down no call is made: the run parks at once rather than spend its lease waiting.
async fn ask(env: &RunEnv, live: &mut Live, machine: &Machine) -> Event {
    if env.gateway.health().get() == Health::Down {
        let why = env.gateway.health().report().reason.unwrap_or_else(|| "it is down".into());
        return Event::GatewayFailed(GatewayError::Unavailable(why));
    }
    let ctx = CallContext { run_id: Some(live.open.id), agent_id: Some(live.open.agent_id) };
    let tools = match machine.mode() {
        ReplyMode::Native => env.tools.of(live.toolset()),
        ReplyMode::Text => &[],
    };
    match env.gateway.complete(machine.messages(), tools, ctx).await {
        Ok(reply) => {
            live.prompt_tokens += reply.usage.prompt_tokens;
            live.completion_tokens += reply.usage.completion_tokens;
            live.unbilled = (reply.usage.prompt_tokens, reply.usage.completion_tokens);
            Event::Replied(reply)
        }
        Err(e) => Event::GatewayFailed(e),
    }
}

/// Performs one action; whatever happens is a result for the model to read.
async fn perform(live: &Live, action: &Action) -> ActionResult {
    match live.bench.perform(action).await {
        Some(Outcome::Ok(text)) => ActionResult::ok(text),
        Some(Outcome::Failed(text)) => ActionResult::error(text),
        Some(Outcome::SandboxUnavailable(text)) => ActionResult::sandbox_unavailable(text),
        // The machine ends the run on `done` and `block`; they never reach here.
        None => ActionResult::ok(String::new()),
    }
}

/// Commits of an earlier attempt listed in a run's task, at most.
const ON_BRANCH_SHOWN: usize = 20;

/// The most of a bead's diff a review's task shows; the reviewer reads files for the rest.
const REVIEW_DIFF: PatchLimit = PatchLimit { bytes: 60 * 1024, lines: 1_500 };

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::clipped;

    #[test]
    fn a_stored_action_keeps_short_arguments_and_cuts_a_whole_file() {
        let action = json!({"action": "write_file", "path": "a.txt", "content": "x".repeat(5_000)});
        let kept = clipped(action);
        assert_eq!(kept["path"], "a.txt");
        let content = kept["content"].as_str().unwrap_or_default();
        assert!(content.ends_with("[… 3000 more characters]"), "{}", &content[1990..]);
    }
}
