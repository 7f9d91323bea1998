//! The end of a run: on `done`, what is left is committed, the bead's branch published to
//! origin and the bead handed on to review or the landing queue (`Bead::finish`; the
//! queue, not the run, merges and closes it); otherwise the run is released with its
//! outcome (which counts an attempt or parks the bead, per `Bead::release`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::machine::Ending;
use super::pickup::{self, OpenRun};
use super::run::{Live, RunEnv};
use crate::activity::Actor;
use crate::beads::{AfterRun, Bead, BeadStatus, Decision, Finish, RunKind, RunOutcome};
use crate::db::schema::runs;
use crate::error::{Error, Result};
use crate::projects::{RepoState, repo_state};
use crate::workbench::tracker;

pub(super) async fn finish(env: &RunEnv, live: &Live, ending: Ending) -> Result<()> {
    match ending {
        Ending::Done { summary } => done(env, live, summary).await,
        Ending::Approved { summary } => {
            reviewed(env, live, Decision::Approve { comment: Some(summary) }).await
        }
        Ending::ChangesRequested { body } => {
            reviewed(env, live, Decision::RequestChanges { body }).await
        }
        Ending::NeedsHuman { question } => {
            let body = format!("**Question from {}:** {question}", live.start.agent.name);
            comment(env, live, body).await?;
            release(env, &live.open, RunOutcome::NeedsHuman, Some(question)).await
        }
        Ending::Stopped { outcome, reason } => {
            let (outcome, reason) = charge_repeated_parks(env, live, outcome, reason).await?;
            tracing::info!(run.id = %live.open.id, bead.id = %live.open.bead_id, outcome = %outcome, reason, "a run stopped");
            release(env, &live.open, outcome, Some(reason)).await?;
            // A parked run resumes where it was; any other starts its next attempt afresh
            // (its commits stay on the bead's branch). A review changed nothing there: the
            // next review or run takes the worktree as it is.
            let parked =
                matches!(outcome, RunOutcome::GatewayUnavailable | RunOutcome::SandboxUnavailable);
            if !parked && live.open.kind == RunKind::Work {
                env.repos.remove_worktree(&live.start.repo, &live.open.bead_id).await?;
            }
            Ok(())
        }
    }
}

/// Parks cost nothing, so a bead the gateway fails on every time (a request it cannot
/// serve, not an outage), or one resumed by a replica that can make a sandbox and parked
/// again by one that cannot, would park and resume for ever: past `MAX_PARKS` parks of one
/// kind a park is charged as a failed attempt, which the attempts rule bounds.
const MAX_PARKS: i64 = 5;

async fn charge_repeated_parks(
    env: &RunEnv,
    live: &Live,
    outcome: RunOutcome,
    reason: String,
) -> Result<(RunOutcome, String)> {
    if !matches!(outcome, RunOutcome::GatewayUnavailable | RunOutcome::SandboxUnavailable) {
        return Ok((outcome, reason));
    }
    let parked: i64 = runs::table
        .filter(runs::bead_id.eq(&live.open.bead_id))
        .filter(runs::outcome.eq(outcome))
        .count()
        .get_result(&mut *env.pool.get().await?)
        .await?;
    if parked + 1 < MAX_PARKS {
        return Ok((outcome, reason));
    }
    let what = match outcome {
        RunOutcome::SandboxUnavailable => "no sandbox could be made",
        _ => "the gateway failed",
    };
    let why = format!("{what} on this bead {} times: {reason}", parked + 1);
    Ok((RunOutcome::Failed, why))
}

/// A run that could not go on (the repository or the database failed under it).
pub(super) async fn fail(env: &RunEnv, open: &OpenRun, reason: &str) -> Result<()> {
    release(env, open, RunOutcome::Failed, Some(reason.to_owned())).await
}

/// What a run given back because the repository could not be used says first.
const UNREACHABLE: &str = "the project's repository could not be reached";

/// A run that could not fetch or clone its project's repository: the project is marked
/// unreachable (so no bead of it is dispatched until the ticker reaches the repository
/// again) and the run cancelled, which gives the bead back without charging an attempt.
/// The ticker's probe is an ls-remote, though: a repository it reaches but a fetch cannot
/// use (a corrupt object, say) would hand the bead out and back for ever, so past
/// `MAX_PARKS` such returns of one bead the run is charged as failed.
pub(super) async fn repository_unreachable(env: &RunEnv, open: &OpenRun, why: &str) -> Result<()> {
    let mut conn = env.pool.get().await?;
    repo_state::mark(&mut conn, &open.project_id, None, RepoState::Unreachable, Some(why)).await?;
    let returned: i64 = runs::table
        .filter(runs::bead_id.eq(&open.bead_id))
        .filter(runs::outcome.eq(RunOutcome::Cancelled))
        .filter(runs::error.like(format!("{UNREACHABLE}%")))
        .count()
        .get_result(&mut conn)
        .await?;
    drop(conn);
    if returned + 1 >= MAX_PARKS {
        let note = format!("{UNREACHABLE} on this bead {} times: {why}", returned + 1);
        return release(env, open, RunOutcome::Failed, Some(note)).await;
    }
    let note = format!("{UNREACHABLE}: {why}");
    release(env, open, RunOutcome::Cancelled, Some(note)).await
}

async fn done(env: &RunEnv, live: &Live, summary: String) -> Result<()> {
    live.commit(&commit_message(&summary)).await?;
    let repo = &live.start.repo;
    let bead = &live.open.bead_id;
    // A bead taken back while the agent finished keeps its commits on its branch.
    if !pickup::still_ours(&mut *env.pool.get().await?, live.open.id, env.worker).await? {
        tracing::info!(run.id = %live.open.id, bead.id = %bead, "a finished run's claim was lost; its work stays on its branch");
        return Ok(());
    }
    let branch = &live.bench.worktree.branch;
    let tip = env.repos.ahead(repo, branch, 1).await?.into_iter().next().map(|c| c.sha);
    let Some(sha) = tip else {
        // Nothing of its own to land (the work was there already): done is done.
        release(env, &live.open, RunOutcome::Success, Some(summary)).await?;
        return env.repos.remove_worktree(repo, bead).await.map_err(Into::into);
    };
    // Published before it is recorded: whichever replica runs the project's queue fetches
    // it from origin. Unpublished, the queue of this replica still has it.
    if let Err(e) = env.repos.publish(repo, bead).await {
        tracing::warn!(bead.id = %bead, error = %e, "could not publish the bead's branch; only this replica can land it");
    }
    let finish = Finish { sha, review: live.start.project.review };
    let mut conn = env.pool.get().await?;
    let after = Bead::finish(&mut conn, live.open.id, Some(summary), finish).await?;
    drop(conn);
    env.bus.committed();
    tracing::info!(run.id = %live.open.id, bead.id = %bead, after = ?after, "a run finished its bead");
    env.repos.remove_worktree(repo, bead).await?;
    Ok(())
}

/// A review run's decision: applied to the bead as a member's would be, by the reviewer.
/// A decision the bead refuses (one over 64 KiB) ends the run failed with why, and the bead
/// waits for the next review. Approved work leaves for the queue, so its worktree goes;
/// work sent back keeps it for its next run (a review changes nothing in it), and so does
/// a decision that came too late (a person's, or a new run's, by then).
async fn reviewed(env: &RunEnv, live: &Live, decision: Decision) -> Result<()> {
    let mut conn = env.pool.get().await?;
    let after = match Bead::decide(&mut conn, live.open.id, decision).await {
        Err(e @ Error::Invalid { .. }) => {
            drop(conn);
            let why = format!("the review's decision was refused: {e}");
            return release(env, &live.open, RunOutcome::Failed, Some(why)).await;
        }
        after => after?,
    };
    drop(conn);
    env.bus.committed();
    tracing::info!(run.id = %live.open.id, bead.id = %live.open.bead_id, after = ?after, "a review ended");
    if after == Some(AfterRun::Finished(BeadStatus::Landing)) {
        env.repos.remove_worktree(&live.start.repo, &live.open.bead_id).await?;
    }
    Ok(())
}

async fn comment(env: &RunEnv, live: &Live, body: String) -> Result<()> {
    let actor = Actor::Agent(live.open.agent_id);
    tracker::comment(&mut *env.pool.get().await?, &live.open.bead_id, body, actor).await?;
    Ok(())
}

async fn release(
    env: &RunEnv,
    open: &OpenRun,
    outcome: RunOutcome,
    note: Option<String>,
) -> Result<()> {
    let mut conn = env.pool.get().await?;
    let released = Bead::release(&mut conn, open.id, outcome, note, env.retry).await?;
    env.bus.committed();
    if released.is_none() {
        tracing::warn!(run.id = %open.id, bead.id = %open.bead_id, outcome = %outcome, "a run had already ended when its executor released it");
    }
    Ok(())
}

/// The summary as a commit message: a subject line of at most 72 characters, then the
/// whole summary when it did not fit.
fn commit_message(summary: &str) -> String {
    let summary = summary.trim();
    let first = summary.lines().next().unwrap_or("Work on the bead");
    if first.chars().count() <= 72 && summary.lines().count() == 1 {
        return first.to_owned();
    }
    let subject: String = first.chars().take(69).collect();
    let subject = if subject.len() < first.len() { format!("{subject}...") } else { subject };
    format!("{subject}\n\n{summary}")
}

#[cfg(test)]
mod tests {
    use super::commit_message;

    #[test]
    fn a_summary_becomes_a_subject_line_and_a_body_when_long() {
        assert_eq!(commit_message("  Fix the login form.  "), "Fix the login form.");
        let long = "x".repeat(100);
        let m = commit_message(&long);
        let subject = m.lines().next().unwrap_or_default();
        assert_eq!(subject.chars().count(), 72);
        assert!(m.ends_with(&long));
        let multi = commit_message("Fix it.\nAlso the docs.");
        assert_eq!(multi, "Fix it.\n\nFix it.\nAlso the docs.");
    }
}
