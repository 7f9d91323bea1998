//! One run of a project's check on a train's merged tree, in the sandbox, recorded in
//! `checks` as it starts (so a replica that dies mid-check leaves a row its successor ends
//! `interrupted`) and as it ends, with a `check.finished` activity row.

use std::time::Instant;

use chrono::Utc;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::RunQueryDsl;
use serde_json::json;
use uuid::Uuid;

use super::Lander;
use crate::activity::{Activity, Actor, Record};
use crate::db::Conn;
use crate::db::schema::checks;
use crate::error::Result;
use crate::events::Kind;
use crate::git::{ProjectRepo, Train};
use crate::projects::Project;
use crate::workbench::sandbox::Cell;
use crate::workbench::{Ended, ToolError, Workspace};

/// How a check ended, as the queue acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exit code 0, or no check command: the train may land.
    Green,
    /// The check ran and failed: the train holds a bead that breaks it.
    Red { ended: Ended },
    /// It ran out of time: a bead may hang it, so a train of several is narrowed down like
    /// a red one; the bead found is blocked, not sent back.
    TimedOut { ended: Ended },
    /// It could not run at all (no sandbox, command not found): nothing in the train is to
    /// blame, and nothing lands.
    Unavailable { why: String },
}

impl Verdict {
    fn outcome(&self) -> &'static str {
        match self {
            Verdict::Green => "green",
            Verdict::Red { .. } => "red",
            Verdict::TimedOut { .. } | Verdict::Unavailable { .. } => "unavailable",
        }
    }
}

/// A finished check: its row and what it printed.
#[derive(Debug, Clone)]
pub struct Checked {
    pub id: Uuid,
    /// The beads of the train it judged, in queue order.
    pub beads: Vec<String>,
    pub verdict: Verdict,
    pub output: String,
}

impl Lander {
    /// Runs `project`'s check on `train` (its beads `beads`) and records it. Without a check
    /// command the train is green at once, recorded all the same. `None` when another
    /// replica's check of the project is still running (one that lost the project while
    /// its check ran): nothing is checked.
    pub(super) async fn check(
        &self,
        project: &Project,
        repo: &ProjectRepo,
        beads: &[String],
        train: &Train,
        bisecting: bool,
    ) -> Result<Option<Checked>> {
        let id = Uuid::now_v7();
        let command = project.check_command.clone();
        let started = diesel::insert_into(checks::table)
            .values((
                checks::id.eq(id),
                checks::project_id.eq(&project.id),
                checks::beads.eq(beads),
                checks::base_sha.eq(&train.base),
                checks::tip_sha.eq(&train.tip),
                checks::command.eq(&command),
                checks::worker.eq(self.worker),
            ))
            .execute(&mut *self.pool.get().await?)
            .await;
        match started {
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                tracing::info!(project.id = %project.id, "another replica's check of the project is still running");
                return Ok(None);
            }
            started => started?,
        };
        let started = Instant::now();
        let (verdict, output) = match &command {
            None => (Verdict::Green, String::new()),
            Some(command) => {
                let run = self.run_check(project, repo, &train.tip, command);
                match self.beating(id, run).await {
                    Ok(ran) => ran,
                    Err(e) => {
                        // Loom could not prepare it (the check worktree, the database): not
                        // the train's fault; the row ends and the queue tries again.
                        let why = format!("Loom could not run the check: {e}");
                        let mut conn = self.pool.get().await?;
                        finish_row(&mut conn, id, "interrupted", None, &why).await?;
                        return Err(e);
                    }
                }
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let exit_code = match &verdict {
            Verdict::Red { ended: Ended::Exited(code) } => Some(*code),
            Verdict::Green if command.is_some() => Some(0),
            _ => None,
        };
        let mut conn = self.pool.get().await?;
        finish_row(&mut conn, id, verdict.outcome(), exit_code, &output).await?;
        let data = json!({
            "check": id, "beads": beads, "outcome": verdict.outcome(), "exit_code": exit_code,
            "seconds": (seconds * 1000.0).round() / 1000.0, "tip": train.tip,
            "bisecting": bisecting, "command": command.is_some(),
        });
        let record = Record {
            kind: Kind::CheckFinished,
            project_id: Some(&project.id),
            bead_id: None,
            actor: Actor::System,
            data,
        };
        Activity::record(&mut conn, record).await?;
        self.bus.committed();
        Ok(Some(Checked { id, beads: beads.to_vec(), verdict, output }))
    }

    /// Runs `work`, beating the check's heartbeat meanwhile: a replica that is cut off or
    /// slow keeps its check its own; one that died stops beating.
    async fn beating<T>(&self, id: Uuid, work: impl Future<Output = Result<T>>) -> Result<T> {
        let every = (self.lease / 3).max(std::time::Duration::from_millis(100));
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = ticks.tick() => {
                    let beat = diesel::update(checks::table.find(id))
                        .set(checks::heartbeat_at.eq(Utc::now()));
                    match self.pool.get().await {
                        Ok(mut conn) => {
                            if let Err(e) = beat.execute(&mut conn).await {
                                tracing::warn!(error = %e, "could not beat a check's heartbeat");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "could not beat a check's heartbeat"),
                    }
                }
            }
        }
    }

    /// The check command in the project's check worktree, moved to `tip`, in the sandbox.
    async fn run_check(
        &self,
        project: &Project,
        repo: &ProjectRepo,
        tip: &str,
        command: &str,
    ) -> Result<(Verdict, String)> {
        let worktree = self.repos.check_worktree(repo, tip).await?;
        let git = self.repos.git_dirs(&project.id, crate::git::CHECK_WORKTREE);
        let cell = Cell {
            worktree: worktree.path.clone(),
            clone: git.clone,
            admin: git.admin,
            // Not the agents' cache: what an agent's commands leave in their HOME must not
            // change how the check that judges them runs.
            cache: self.homes.join(&project.id),
            network: project.network,
        };
        let workspace = Workspace::new(&worktree.path, self.sandbox.clone(), cell)
            .map_err(|e| anyhow::anyhow!("the check worktree is unusable: {e}"))?
            .with_env(self.run_env.clone());
        workspace.ready().await?;
        let timeout = u64::try_from(project.check_timeout_s).unwrap_or(1).max(1);
        Ok(match workspace.check(command, timeout).await {
            Ok(ran) if ran.ended.succeeded() => (Verdict::Green, ran.output),
            Ok(ran) if ran.ended.not_runnable() => {
                let why = format!("the check command could not be run ({})", ran.ended);
                (Verdict::Unavailable { why }, ran.output)
            }
            Ok(ran) => match ran.ended {
                ended @ Ended::TimedOut(_) => (Verdict::TimedOut { ended }, ran.output),
                Ended::Unknown(what) => (
                    Verdict::Unavailable { why: format!("the check's end is unknown: {what}") },
                    ran.output,
                ),
                ended => (Verdict::Red { ended }, ran.output),
            },
            Err(ToolError::SandboxUnavailable(why)) => {
                let why = format!("no sandbox could be made for the check: {why}");
                (Verdict::Unavailable { why }, String::new())
            }
            Err(e) => (
                Verdict::Unavailable { why: format!("the check could not start: {e}") },
                String::new(),
            ),
        })
    }
}

async fn finish_row(
    conn: &mut Conn,
    id: Uuid,
    outcome: &str,
    exit_code: Option<i32>,
    output: &str,
) -> Result<()> {
    diesel::update(checks::table.find(id))
        .set((
            checks::outcome.eq(outcome),
            checks::exit_code.eq(exit_code),
            checks::output.eq(output),
            checks::finished_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends the checks left running by this process (a queue step stopped at shutdown) or by a
/// replica whose heartbeat stopped for `stale` (it died): called by the project's queue
/// before it starts a check. A live replica's check is left to finish
/// (`checks_one_running` then keeps a second from starting).
pub(super) async fn interrupt_leftovers(
    conn: &mut Conn,
    project: &str,
    me: Uuid,
    stale: std::time::Duration,
) -> Result<usize> {
    let since = Utc::now() - chrono::Duration::from_std(stale).unwrap_or(chrono::Duration::zero());
    let n = diesel::update(
        checks::table
            .filter(checks::project_id.eq(project))
            .filter(checks::outcome.is_null())
            .filter(checks::worker.eq(me).or(checks::heartbeat_at.lt(since))),
    )
    .set((checks::outcome.eq("interrupted"), checks::finished_at.eq(Utc::now())))
    .execute(conn)
    .await?;
    if n > 0 {
        tracing::info!(
            project.id = project,
            checks = n,
            "ended checks left running by a replica that stopped"
        );
    }
    Ok(n)
}

/// Marks a check's train as landed.
pub(super) async fn mark_landed(conn: &mut Conn, id: Uuid) -> Result<()> {
    diesel::update(checks::table.find(id)).set(checks::landed.eq(true)).execute(conn).await?;
    Ok(())
}
