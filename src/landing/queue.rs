//! One project's merge queue, run by the replica that owns the project's executor (so one
//! at a time across replicas). A step takes the waiting beads in queue order, up to the
//! project's `max_train`, and lands what it can of them:
//!
//! 1. The train: their commits merged in order onto origin's tip (`Repos::train`). A bead
//!    whose commit conflicts with what is before it goes back to its agent with the paths;
//!    one whose work origin has already (a replica pushed it and died before recording
//!    it) is recorded as landed; one whose commit no replica published goes back to be
//!    done again. Any of these ends the step: the next one starts on a clean train.
//! 2. The check on the train's tip, in the sandbox. Green: the train is pushed (a
//!    fast-forward of the tip it was built on, never forced) and only then its beads
//!    closed. Red: `Bisection` narrows the batch down to the bead that breaks it, landing
//!    the green part on the way; that bead goes back to its agent with the check's output,
//!    an attempt charged. A check that timed out is narrowed the same way and its bead
//!    blocked `check_unavailable`; one that could not run at all blocks every bead it was
//!    to judge. Nothing lands unchecked, unless the project has no check command.
//! 3. Origin moved on between the train and its push: nothing is recorded, and the next
//!    step builds the train again on the new tip (the check is run again too: a green
//!    check on another base proves nothing).
//!
//! Crash safety: a bead is closed only after its train was pushed; a train pushed but not
//! recorded is found by the next step (its commits are in origin's branch) and recorded
//! then; a check left running is ended `interrupted` and run again.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::Lander;
use super::bisect::Bisection;
use super::check::{Checked, Verdict, interrupt_leftovers, mark_landed};
use crate::activity::Actor;
use crate::beads::{Bead, BlockedReason, Comment, NewComment, Queued};
use crate::db::schema::checks;
use crate::error::Result;
use crate::git::{Car, Landed, ProjectRepo, Train, Waiting};
use crate::projects::{Project, RepoState, repo_state};

/// How much of a failed check's output goes into the comment on the bead.
const COMMENT_OUTPUT_CHARS: usize = 4_000;

/// What a queue step did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stepped {
    /// Beads closed, their work on the project branch.
    pub landed: Vec<String>,
    /// Beads sent back to their agents or blocked.
    pub returned: usize,
    /// Checks run.
    pub checks: usize,
    /// Something changed, and the queue may have more to do at once.
    pub progressed: bool,
}

impl Lander {
    /// One step of `project`'s queue (see the module's documentation).
    pub async fn step(&self, project: &str) -> Result<Stepped> {
        let mut conn = self.pool.get().await?;
        let project = Project::find(&mut conn, project).await?;
        interrupt_leftovers(&mut conn, &project.id, self.worker, self.lease).await?;
        let limit = i64::from(project.max_train.max(1));
        let queue = Bead::landing_queue(&mut conn, &project.id, limit).await?;
        drop(conn);
        let mut stepped = Stepped::default();
        if queue.is_empty() {
            return Ok(stepped);
        }
        let repo = ProjectRepo {
            id: project.id.clone(),
            repo: project.repo.clone(),
            branch: project.branch.clone(),
        };
        let mut bisection = Bisection::new(queue);
        let mut bisecting = false;
        // The narrowest red check so far: what the red bead, once found, is told. (It may
        // be found by a green check, of the beads before it.)
        let mut last_red: Option<Checked> = None;
        while let Some(batch) = bisection.next_check().map(<[Queued]>::to_vec) {
            if !self.owns(&project.id).await? {
                tracing::info!(project.id = %project.id, "the project's queue moved to another replica");
                break;
            }
            let train = match self.repos.train(&repo, &waiting(&batch)).await {
                Ok(train) => train,
                Err(e) => return Err(self.unreachable(&project, e).await),
            };
            if self.settle_odd_cars(&project, &batch, &train, &mut stepped).await? {
                break;
            }
            let ids: Vec<String> = batch.iter().map(|q| q.id.clone()).collect();
            let Some(checked) = self.check(&project, &repo, &ids, &train, bisecting).await? else {
                break;
            };
            stepped.checks += 1;
            stepped.progressed = true;
            let green = match &checked.verdict {
                Verdict::Green => true,
                Verdict::Red { .. } | Verdict::TimedOut { .. } => false,
                Verdict::Unavailable { why } => {
                    for q in &batch {
                        self.unavailable(&project, q, &checked, why).await?;
                        stepped.returned += 1;
                    }
                    break;
                }
            };
            if green {
                match self.repos.land(&repo, &train).await? {
                    Landed::Moved => break,
                    Landed::Pushed { sha } => {
                        let closed = self.record(&project, &batch, &sha, &checked).await?;
                        stepped.landed.extend(closed);
                    }
                    Landed::Kept { reason } => {
                        tracing::info!(project.id = %project.id, reason, "landed in Loom's clone only");
                        let closed = self.record(&project, &batch, &train.tip, &checked).await?;
                        self.say_kept(&closed, &reason).await?;
                        stepped.landed.extend(closed);
                    }
                }
            }
            bisecting = !green || bisecting;
            if !green {
                last_red = Some(checked.clone());
            }
            let decision = bisection.verdict(green);
            if let Some(red) = decision.reject {
                let judged = last_red.as_ref().unwrap_or(&checked);
                match &judged.verdict {
                    Verdict::TimedOut { ended } => {
                        let why = format!("the check {ended} with this bead's work in the train");
                        self.unavailable(&project, &red, judged, &why).await?;
                    }
                    verdict => self.red(&project, &red, judged, verdict).await?,
                }
                stepped.returned += 1;
            }
            // Beads set aside while narrowing stay in the queue, at their place in it.
        }
        if let Err(e) = self.unpublish(&repo, &stepped.landed).await {
            tracing::debug!(error = %e, "could not tidy the landed beads' branches");
        }
        Ok(stepped)
    }

    /// Handles the cars that cannot be checked; true when there were any (the step ends).
    async fn settle_odd_cars(
        &self,
        project: &Project,
        batch: &[Queued],
        train: &Train,
        stepped: &mut Stepped,
    ) -> Result<bool> {
        let mut odd = false;
        for (q, car) in batch.iter().zip(&train.cars) {
            let mut conn = self.pool.get().await?;
            match car {
                Car::Merged { .. } => continue,
                Car::Landed { .. } => {
                    // Pushed by a queue that stopped before recording it: record it now,
                    // with the check that passed it.
                    let check = last_green(&mut conn, &q.id).await?;
                    let closed = Bead::land(
                        &mut conn,
                        std::slice::from_ref(q),
                        &train.base,
                        &project.branch,
                        check.unwrap_or_default(),
                    )
                    .await?;
                    tracing::info!(bead.id = %q.id, "recorded a landing a stopped queue had pushed");
                    stepped.landed.extend(closed);
                }
                Car::Conflict { paths, .. } => {
                    let body = format!(
                        "Merging this bead's work onto `{}` conflicts in:\n{}\n\nThe next run \
                         merges the project branch into the bead's branch and resolves the \
                         conflict there.",
                        project.branch,
                        paths.iter().map(|p| format!("- `{p}`")).collect::<Vec<_>>().join("\n")
                    );
                    let error =
                        format!("{} in {}", crate::beads::LANDING_CONFLICT, paths.join(", "));
                    Bead::send_back(&mut conn, q, "conflict", (body, error), None).await?;
                    stepped.returned += 1;
                }
                Car::Missing { .. } => {
                    let body = format!(
                        "Loom could not find this bead's work (commit `{}`) to land it: the \
                         replica that finished it stopped before publishing it. The next run \
                         does the work again.",
                        q.sha
                    );
                    let error = "its finished work was lost before it was published".to_owned();
                    Bead::send_back(&mut conn, q, "lost", (body, error), None).await?;
                    stepped.returned += 1;
                }
            }
            odd = true;
        }
        if odd {
            stepped.progressed = true;
            self.bus.committed();
        }
        Ok(odd)
    }

    /// Closes a landed train's beads and marks its check landed.
    async fn record(
        &self,
        project: &Project,
        batch: &[Queued],
        sha: &str,
        checked: &Checked,
    ) -> Result<Vec<String>> {
        let mut conn = self.pool.get().await?;
        mark_landed(&mut conn, checked.id).await?;
        let closed = Bead::land(&mut conn, batch, sha, &project.branch, checked.id).await?;
        self.bus.committed();
        Ok(closed)
    }

    /// Beads that landed in Loom's clone only are told so, with where to pull them from.
    async fn say_kept(&self, closed: &[String], reason: &str) -> Result<()> {
        let mut conn = self.pool.get().await?;
        for id in closed {
            let body = format!(
                "Landed in Loom's clone only, not pushed: {reason}. Pull it from Loom's clone \
                 of the project (`repos/<project>` under Loom's data directory)."
            );
            Comment::add(&mut conn, id, NewComment { body }, Actor::System).await?;
        }
        Ok(())
    }

    /// A red check's bead goes back to its agent with the end of the output.
    async fn red(
        &self,
        project: &Project,
        q: &Queued,
        checked: &Checked,
        verdict: &Verdict,
    ) -> Result<()> {
        let ended = match verdict {
            Verdict::Red { ended } => ended.to_string(),
            _ => String::new(),
        };
        let others: Vec<&str> =
            checked.beads.iter().map(String::as_str).filter(|b| *b != q.id).collect();
        let train = match others.as_slice() {
            [] => String::new(),
            others => format!(
                " It failed on a train of this bead's work with {}; narrowing that train down \
                 showed this bead's work is what breaks it.",
                others.join(", ")
            ),
        };
        let body = format!(
            "The project's check failed on this bead's work merged onto `{}` {ended}; \
             nothing of it landed.{train} The end of the check's output:\n\n```\n{}\n```",
            project.branch,
            tail(&checked.output, COMMENT_OUTPUT_CHARS)
        );
        let error = format!("the project's check failed {ended}");
        let mut conn = self.pool.get().await?;
        Bead::send_back(&mut conn, q, "check_failed", (body, error), Some(self.retry)).await?;
        self.bus.committed();
        Ok(())
    }

    /// A bead whose check could not run: blocked `check_unavailable`, its work kept.
    async fn unavailable(
        &self,
        project: &Project,
        q: &Queued,
        checked: &Checked,
        why: &str,
    ) -> Result<()> {
        let mut body = format!(
            "The project's check could not judge this bead's work on `{}`: {why}. Nothing \
             landed. Fix the check (or the sandbox), then reopen the bead.",
            project.branch
        );
        if !checked.output.trim().is_empty() {
            body.push_str(&format!(
                "\n\nThe end of its output:\n\n```\n{}\n```",
                tail(&checked.output, COMMENT_OUTPUT_CHARS)
            ));
        }
        let mut conn = self.pool.get().await?;
        let reason = BlockedReason::CheckUnavailable;
        Bead::hold_landing(&mut conn, q, reason, why.to_owned(), body).await?;
        self.bus.committed();
        Ok(())
    }

    /// A train that could not be built: when the repository itself cannot be reached, the
    /// project is marked `unreachable` with why (as a run that cannot fetch marks it), so
    /// people see it and the ticker tries it again.
    async fn unreachable(&self, project: &Project, e: crate::git::GitError) -> crate::Error {
        if e.is_source_unusable() {
            let why = e.to_string();
            let marked = match self.pool.get().await {
                Ok(mut conn) => {
                    let (id, repo) = (&project.id, Some(project.repo.as_str()));
                    repo_state::mark(&mut conn, id, repo, RepoState::Unreachable, Some(&why)).await
                }
                Err(e) => Err(e.into()),
            };
            if let Err(e) = marked {
                tracing::warn!(project.id = %project.id, error = %e, "could not mark the repository unreachable");
            }
        }
        e.into()
    }

    /// Records how a step of `project`'s queue went, for people: a failure's reason (kept
    /// with when the failing began), or, after a step that went through, nothing.
    pub async fn note(&self, project: &str, stepped: &Result<Stepped>) -> Result<()> {
        use crate::db::schema::projects;
        let mut conn = self.pool.get().await?;
        let row = projects::table.find(project);
        match stepped {
            Err(e) => {
                const FAILED: &str = "UPDATE projects SET landing_error = $2, \
                     landing_error_since = coalesce(landing_error_since, now()) WHERE id = $1";
                diesel::sql_query(FAILED)
                    .bind::<diesel::sql_types::Text, _>(project)
                    .bind::<diesel::sql_types::Text, _>(e.to_string())
                    .execute(&mut conn)
                    .await?;
            }
            Ok(_) => {
                diesel::update(row.filter(projects::landing_error.is_not_null()))
                    .set((
                        projects::landing_error.eq(None::<String>),
                        projects::landing_error_since.eq(None::<chrono::DateTime<chrono::Utc>>),
                    ))
                    .execute(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether this process still holds the project's executor lease (and so its queue).
    async fn owns(&self, project: &str) -> Result<bool> {
        use crate::db::schema::executor_leases as leases;
        let held = leases::table
            .filter(leases::project_id.eq(project))
            .filter(leases::owner.eq(self.worker))
            .filter(leases::expires_at.gt(diesel::dsl::now));
        let mut conn = self.pool.get().await?;
        Ok(diesel::select(diesel::dsl::exists(held)).get_result(&mut conn).await?)
    }

    /// Origin keeps no `loom/<id>` branch of a bead that landed.
    async fn unpublish(&self, repo: &ProjectRepo, landed: &[String]) -> Result<()> {
        for id in landed {
            self.repos.unpublish(repo, id).await?;
        }
        Ok(())
    }
}

fn waiting(batch: &[Queued]) -> Vec<Waiting> {
    batch.iter().map(|q| Waiting { bead_id: q.id.clone(), sha: q.sha.clone() }).collect()
}

/// The last green check that judged `bead`, if any.
async fn last_green(conn: &mut crate::db::Conn, bead: &str) -> Result<Option<uuid::Uuid>> {
    Ok(checks::table
        .filter(checks::beads.contains(vec![bead.to_owned()]))
        .filter(checks::outcome.eq("green"))
        .order(checks::started_at.desc())
        .select(checks::id)
        .first(conn)
        .await
        .optional()?)
}

/// The last `max` characters of `text`, from a line start when one is near.
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim_end();
    let total = text.chars().count();
    if total <= max {
        return text;
    }
    let start = text.char_indices().nth(total - max).map_or(0, |(i, _)| i);
    match text[start..].find('\n') {
        Some(n) if n < 200 => &text[start + n + 1..],
        _ => &text[start..],
    }
}
