//! A finished bead's way to `closed` (DESIGN.md, "Landing"): into `review` or the landing
//! queue when its agent is done (`enter`, from `Bead::finish`), and out of the queue, each
//! in one transaction with its activity: landed (closed, with the commit it landed in),
//! sent back to its agent (open, with why as a comment, an attempt charged when its check
//! failed) or blocked (its check could not run). Every exit checks that the bead is still
//! in the queue with the commit that was checked: a person may have taken it out meanwhile.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use super::claims::{AfterRun, Finish, RetryPolicy, release_in};
use super::comments::{Comment, NewComment};
use super::graph::lock_graph;
use super::model::Bead;
use super::runs::{Run, RunKind, RunOutcome};
use super::status::{self, Attempts, record};
use super::transitions::bump_version;
use super::types::{BeadStatus, BlockedReason};
use crate::activity::Actor;
use crate::db::Conn;
use crate::db::schema::{beads, projects, runs};
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::projects::Review;

/// What a bead sent back because its work conflicts with the project branch has as its
/// last error; its next run merges the project branch into its branch first.
pub const LANDING_CONFLICT: &str = "merge conflict with the project branch";

/// A bead in the landing queue: its id and the commit its agent finished on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: String,
    pub sha: String,
}

/// Moves a finished run's bead (locked, `in_progress`, the run's) to `review` or `landing`.
pub(super) async fn enter(
    conn: &mut Conn,
    bead: &Bead,
    run: &Run,
    finish: Finish,
) -> Result<BeadStatus> {
    let reviewed = finish.review != Review::None;
    let to = if reviewed { BeadStatus::Review } else { BeadStatus::Landing };
    diesel::update(beads::table.find(&bead.id))
        .set((
            beads::status.eq(to),
            beads::landing_sha.eq(&finish.sha),
            // The database's clock, as review runs' `started_at` (counted against it).
            beads::landing_since.eq(db_now()),
            beads::assignee_agent_id.eq(None::<Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    let actor = run.agent_id.map(Actor::Agent).unwrap_or(Actor::System);
    let (kind, data) = match finish.review {
        Review::None => (Kind::BeadLanding, json!({ "sha": finish.sha, "run": run.id })),
        // `by`: who is asked (people are notified only when it is them).
        by => (Kind::BeadReview, json!({ "sha": finish.sha, "run": run.id, "by": by.as_str() })),
    };
    record(conn, bead, kind, actor, data).await?;
    Ok(to)
}

impl Bead {
    /// Which of `projects` have beads their landing queue may take now.
    pub async fn projects_landing(conn: &mut Conn, projects: &[String]) -> Result<Vec<String>> {
        Ok(beads::table
            .filter(beads::project_id.eq_any(projects))
            .filter(beads::status.eq(BeadStatus::Landing))
            .filter(beads::open_blockers.eq(0))
            .filter(beads::held_by.is_null())
            .select(beads::project_id)
            .distinct()
            .load(conn)
            .await?)
    }

    /// The project's landing queue in the order it is served: priority first, then the time
    /// each bead entered it (never newest first), at most `limit`. A bead that gained a
    /// `blocks` dependency while its agent worked (or while it waited) stays in the queue
    /// but is not taken until every blocker has closed, nor while an ancestor holds it: its
    /// work never lands before the work it waits for.
    pub async fn landing_queue(conn: &mut Conn, project: &str, limit: i64) -> Result<Vec<Queued>> {
        let rows: Vec<(String, Option<String>)> = beads::table
            .filter(beads::project_id.eq(project))
            .filter(beads::status.eq(BeadStatus::Landing))
            .filter(beads::open_blockers.eq(0))
            .filter(beads::held_by.is_null())
            .order((beads::priority.asc(), beads::landing_since.asc(), beads::id.asc()))
            .limit(limit)
            .select((beads::id, beads::landing_sha))
            .load(conn)
            .await?;
        Ok(rows.into_iter().filter_map(|(id, sha)| Some(Queued { id, sha: sha? })).collect())
    }

    /// Closes the beads of a train that landed as `merged` on `branch`: each still waiting
    /// with the commit that was checked is closed with its agent's summary and a
    /// `git.merged` row; the others (taken out of the queue meanwhile) are told on the bead
    /// that their work landed anyway. One transaction; returns the beads closed.
    pub async fn land(
        conn: &mut Conn,
        landed: &[Queued],
        merged: &str,
        branch: &str,
        check: Uuid,
    ) -> Result<Vec<String>> {
        let (landed, merged, branch) = (landed.to_vec(), merged.to_owned(), branch.to_owned());
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            let mut closed = Vec::new();
            for q in &landed {
                let bead = Bead::lock(conn, &q.id).await?;
                if !waiting(&bead, &q.sha) {
                    let body = format!(
                        "This bead's work (`{}`) landed on `{branch}` in {merged} after it had \
                         left the landing queue. Revert it there if it is not wanted.",
                        q.sha
                    );
                    Comment::add(conn, &q.id, NewComment { body }, Actor::System).await?;
                    continue;
                }
                let summary: Option<String> = runs::table
                    .filter(runs::bead_id.eq(&q.id))
                    .filter(runs::kind.eq(RunKind::Work))
                    .filter(runs::outcome.eq(RunOutcome::Success))
                    .order(runs::ended_at.desc())
                    .select(runs::summary)
                    .first::<Option<String>>(conn)
                    .await
                    .optional()?
                    .flatten();
                diesel::update(
                    runs::table
                        .filter(runs::bead_id.eq(&q.id))
                        .filter(runs::kind.eq(RunKind::Work))
                        .filter(runs::outcome.eq(RunOutcome::Success))
                        .filter(runs::merged_sha.is_null()),
                )
                .set(runs::merged_sha.eq(&merged))
                .execute(conn)
                .await?;
                let data =
                    json!({ "sha": merged, "commit": q.sha, "branch": branch, "check": check });
                record(conn, &bead, Kind::GitMerged, Actor::System, data).await?;
                status::leave_landing(conn, &q.id).await?;
                let open_children: i64 = beads::table
                    .filter(beads::parent_id.eq(&q.id))
                    .filter(beads::status.ne(BeadStatus::Closed))
                    .count()
                    .get_result(conn)
                    .await?;
                if open_children > 0 {
                    // Children filed under it while it waited: it cannot close before them.
                    let note = format!(
                        "its work landed in {merged}, but {open_children} child bead(s) are \
                         still open"
                    );
                    let reason = BlockedReason::NeedsHuman;
                    status::block(conn, bead, reason, Some(note), Actor::System).await?;
                    bump_version(conn, &q.id).await?;
                    continue;
                }
                let reason = summary.unwrap_or_else(|| "landed".into());
                status::close_saying(conn, bead, Some(reason), Actor::System, Some(&branch))
                    .await?;
                bump_version(conn, &q.id).await?;
                closed.push(q.id.clone());
            }
            Ok(closed)
        })
        .await
    }

    /// Sends a queued bead back to its agent with `body` as a comment: open again (the next
    /// run continues on its branch and reads the comment). With `charge`, as for a red
    /// check, an attempt is counted and the bead waits out the retry back-off (blocked
    /// `too_many_attempts` once they are spent). `why` is a stable code for the
    /// `bead.sent_back` row (`check_failed`, `conflict`, `lost`). False when the bead had
    /// left the queue.
    pub async fn send_back(
        conn: &mut Conn,
        queued: &Queued,
        why: &'static str,
        (body, error): (String, String),
        charge: Option<RetryPolicy>,
    ) -> Result<bool> {
        let queued = queued.clone();
        conn.transaction::<_, Error, _>(async move |conn| {
            let Some(bead) = leave_queue(conn, &queued, body).await? else { return Ok(false) };
            let data = json!({ "why": why, "error": error, "sha": queued.sha });
            record(conn, &bead, Kind::BeadSentBack, Actor::System, data).await?;
            let attempts = bead.attempts + i32::from(charge.is_some());
            let max: i32 = projects::table
                .find(&bead.project_id)
                .select(projects::max_attempts)
                .first(conn)
                .await?;
            if charge.is_some() && attempts >= max {
                diesel::update(beads::table.find(&queued.id))
                    .set(beads::attempts.eq(attempts))
                    .execute(conn)
                    .await?;
                let note = Some(error.clone());
                status::block(conn, bead, BlockedReason::TooManyAttempts, note, Actor::System)
                    .await?;
            } else {
                let not_before = charge.map(|retry| {
                    let wait = chrono::Duration::from_std(retry.delay(attempts))
                        .unwrap_or(chrono::Duration::zero());
                    Utc::now() + wait
                });
                let reason = Some(error.clone());
                status::reopen(conn, bead, reason, Attempts::Keep, Actor::System).await?;
                diesel::update(beads::table.find(&queued.id))
                    .set((
                        beads::attempts.eq(attempts),
                        beads::not_before.eq(not_before),
                        beads::last_error.eq(Some(&error)),
                    ))
                    .execute(conn)
                    .await?;
            }
            bump_version(conn, &queued.id).await?;
            Ok(true)
        })
        .await
    }

    /// Blocks a queued bead whose landing cannot go on without a person (its check could
    /// not run), with `body` as a comment; its work stays on its branch, and reopening it
    /// sends it through its agent and the queue again. False when it had left the queue.
    pub async fn hold_landing(
        conn: &mut Conn,
        queued: &Queued,
        reason: BlockedReason,
        note: String,
        body: String,
    ) -> Result<bool> {
        let queued = queued.clone();
        conn.transaction::<_, Error, _>(async move |conn| {
            let Some(bead) = leave_queue(conn, &queued, body).await? else { return Ok(false) };
            status::block(conn, bead, reason, Some(note), Actor::System).await?;
            bump_version(conn, &queued.id).await?;
            Ok(true)
        })
        .await
    }
}

/// What a reviewer decided about a bead in `review`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// On to the landing queue, with an optional comment.
    Approve { comment: Option<String> },
    /// Back to its agent with `body` as a comment: what to change.
    RequestChanges { body: String },
}

impl Decision {
    /// What the reviewer said: the approval's comment (maybe empty) or the changes asked for.
    fn text(&self) -> &str {
        match self {
            Decision::Approve { comment } => comment.as_deref().unwrap_or_default(),
            Decision::RequestChanges { body } => body,
        }
    }
}

/// The longest review comment or request.
const REVIEW_MAX_BYTES: usize = 65_536;

/// 422 `body_too_long` past `REVIEW_MAX_BYTES`, `body_required` for a request for changes
/// that says none.
fn check(decision: &Decision) -> Result<()> {
    if decision.text().len() > REVIEW_MAX_BYTES {
        return Err(Error::invalid("body_too_long", "a review is at most 65536 bytes"));
    }
    if let Decision::RequestChanges { body } = decision
        && body.trim().is_empty()
    {
        return Err(Error::invalid("body_required", "say what should change"));
    }
    Ok(())
}

impl Bead {
    /// A reviewer's decision on a bead in `review`, in one transaction with its comment and
    /// activity: approved, it enters the landing queue; with changes requested it goes back
    /// to `open` (its next run continues on its branch and is told what to change), or,
    /// once the project's `max_review_rounds` requests have been made, waits for a person
    /// (blocked `needs_human`). 409 `not_in_review` when the bead is not in review.
    pub async fn review(
        conn: &mut Conn,
        id: &str,
        decision: Decision,
        actor: Actor,
    ) -> Result<Bead> {
        check(&decision)?;
        let id = id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            let bead = Bead::lock(conn, &id).await?;
            if bead.status != BeadStatus::Review {
                return Err(Error::conflict(
                    "not_in_review",
                    format!("{id} is {}, not in review", bead.status),
                ));
            }
            // A person decides over an agent's review under way: it ends, uncharged.
            Bead::stop_review(conn, &bead, actor).await?;
            decide_in(conn, bead, decision, actor).await?;
            bump_version(conn, &id).await
        })
        .await
    }

    /// Ends an agent's review under way on `bead` (locked, in the caller's transaction),
    /// uncharged, because a person acts on it: the run ends `cancelled`, the agent is free,
    /// and the bead stays in review, unheld. Nothing happens when no agent reviews it.
    pub(crate) async fn stop_review(conn: &mut Conn, bead: &Bead, actor: Actor) -> Result<()> {
        if bead.status != BeadStatus::Review || bead.assignee_agent_id.is_none() {
            return Ok(());
        }
        status::take_back(conn, bead, actor).await?;
        unhold(conn, &bead.id).await
    }

    /// The decision a review run ended with, in one transaction: the run succeeds with the
    /// decision's text as its summary, its agent is freed, and the decision is applied as a
    /// member's would be, by the reviewing agent. When the run no longer holds the bead (a
    /// person decided first), or the project no longer has agents review, it ends
    /// `cancelled` and nothing is decided. `None` when nothing was decided.
    pub async fn decide(
        conn: &mut Conn,
        run_id: Uuid,
        decision: Decision,
    ) -> Result<Option<AfterRun>> {
        check(&decision)?;
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            let Some(run) = Run::lock_open(conn, run_id).await? else { return Ok(None) };
            let bead = Bead::lock(conn, &run.bead_id).await?;
            let by_agent: Review =
                projects::table.find(&bead.project_id).select(projects::review).first(conn).await?;
            let agent = run.agent_id.filter(|_| holds_review(&bead, &run));
            let (Some(agent), Review::Agent) = (agent, by_agent) else {
                let why = match agent {
                    None => "a person decided the review first",
                    Some(_) => "the project no longer has agents review its work",
                };
                let cancel = RunOutcome::Cancelled;
                release_in(conn, run_id, cancel, Some(why.into()), RetryPolicy::default()).await?;
                return Ok(None);
            };
            let summary = Some(decision.text().to_owned());
            let ended =
                release_in(conn, run_id, RunOutcome::Success, summary, RetryPolicy::default())
                    .await?;
            let bead = Bead::lock(conn, &run.bead_id).await?;
            let after = match &decision {
                Decision::Approve { .. } => AfterRun::Finished(BeadStatus::Landing),
                Decision::RequestChanges { .. } => AfterRun::Retry { attempts: bead.attempts },
            };
            decide_in(conn, bead, decision, Actor::Agent(agent)).await?;
            bump_version(conn, &run.bead_id).await?;
            Ok(ended.map(|_| after))
        })
        .await
    }
}

/// Whether `run` is an agent's review that still holds `bead`, waiting in review.
fn holds_review(bead: &Bead, run: &Run) -> bool {
    run.kind == RunKind::Review
        && bead.status == BeadStatus::Review
        && bead.assignee_agent_id.is_some()
        && bead.assignee_agent_id == run.agent_id
}

/// `now()`, the database's clock, for a nullable timestamp column.
fn db_now()
-> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>> {
    diesel::dsl::sql("now()")
}

/// Reviews by agents of one bead's work that may fail (end undecided by the reviewer's
/// doing, `REVIEW_FAILURES`); after that many, the bead waits for a member's decision.
pub const AGENT_REVIEW_TRIES: i64 = 3;

/// How a review run fails: by what the reviewer did or did not do. An outage, a missing
/// sandbox or a person's action (a pause, a take-back) costs the bead none of its tries.
pub const REVIEW_FAILURES: [RunOutcome; 6] = [
    RunOutcome::Failed,
    RunOutcome::LeaseExpired,
    RunOutcome::InvalidReplies,
    RunOutcome::LoopDetected,
    RunOutcome::TurnLimit,
    RunOutcome::TokenBudget,
];

/// A review run's end on the bead it held (inside `release_in`'s transaction, the run's
/// outcome written): the bead stays in review, no longer held; one parked by an outage
/// waits out the park's back-off before its next review. The `AGENT_REVIEW_TRIES`-th
/// failed review of its work hands it to people, with a comment and a `bead.review` row
/// (`review_requested` to its filer and watchers).
pub(super) async fn end_review(
    conn: &mut Conn,
    bead: &Bead,
    outcome: RunOutcome,
    error: Option<&str>,
    retry: RetryPolicy,
) -> Result<AfterRun> {
    unhold(conn, &bead.id).await?;
    let reviews = || {
        let mut q = runs::table
            .filter(runs::bead_id.eq(&bead.id))
            .filter(runs::kind.eq(RunKind::Review))
            .into_boxed();
        if let Some(since) = bead.landing_since {
            q = q.filter(runs::started_at.ge(since));
        }
        q
    };
    if matches!(outcome, RunOutcome::GatewayUnavailable | RunOutcome::SandboxUnavailable) {
        let parks: i64 =
            reviews().filter(runs::outcome.eq(outcome)).count().get_result(conn).await?;
        let wait = chrono::Duration::from_std(retry.park_delay(parks)).unwrap_or_default();
        diesel::update(beads::table.find(&bead.id))
            .set(beads::not_before.eq(Some(Utc::now() + wait)))
            .execute(conn)
            .await?;
    }
    if !REVIEW_FAILURES.contains(&outcome) {
        return Ok(AfterRun::Finished(BeadStatus::Review));
    }
    let undecided: i64 =
        reviews().filter(runs::outcome.eq_any(REVIEW_FAILURES)).count().get_result(conn).await?;
    if undecided == AGENT_REVIEW_TRIES {
        let why = error.unwrap_or("no reason was recorded");
        let body = format!(
            "The agent review of this work failed {undecided} times (the last: {why}). A \
             member approves it or requests changes."
        );
        Comment::add(conn, &bead.id, NewComment { body }, Actor::System).await?;
        let data = json!({ "sha": bead.landing_sha, "by": "human", "reviews": undecided });
        record(conn, bead, Kind::BeadReview, Actor::System, data).await?;
    }
    Ok(AfterRun::Finished(BeadStatus::Review))
}

/// A bead in review no agent holds any more: no assignee, no lease.
pub(super) async fn unhold(conn: &mut Conn, id: &str) -> Result<()> {
    diesel::update(beads::table.find(id))
        .set((
            beads::assignee_agent_id.eq(None::<Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Applies a review decision to a bead in review, locked, under the graph lock.
async fn decide_in(conn: &mut Conn, bead: Bead, decision: Decision, actor: Actor) -> Result<()> {
    match decision {
        Decision::Approve { comment } => approve(conn, bead, comment, actor).await,
        Decision::RequestChanges { body } => request_changes(conn, bead, body, actor).await,
    }
}

async fn approve(conn: &mut Conn, bead: Bead, comment: Option<String>, actor: Actor) -> Result<()> {
    let comment = comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if let Some(c) = &comment {
        let body = format!("**Approved.** {c}");
        Comment::add(conn, &bead.id, NewComment { body }, actor).await?;
    }
    diesel::update(beads::table.find(&bead.id))
        .set((
            beads::status.eq(BeadStatus::Landing),
            beads::landing_since.eq(db_now()),
            beads::assignee_agent_id.eq(None::<Uuid>),
            beads::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    record(conn, &bead, Kind::BeadApproved, actor, json!({ "comment": comment })).await?;
    let data = json!({ "sha": bead.landing_sha, "from": "review" });
    record(conn, &bead, Kind::BeadLanding, actor, data).await
}

async fn request_changes(conn: &mut Conn, bead: Bead, body: String, actor: Actor) -> Result<()> {
    let body = body.trim().to_owned();
    let comment = format!("**Changes requested in review:**\n\n{body}");
    Comment::add(conn, &bead.id, NewComment { body: comment }, actor).await?;
    let earlier: i64 = crate::db::schema::activity::table
        .filter(crate::db::schema::activity::bead_id.eq(&bead.id))
        .filter(crate::db::schema::activity::kind.eq(Kind::BeadChangesRequested.as_str()))
        .count()
        .get_result(conn)
        .await?;
    let round = earlier + 1;
    let max: i32 = projects::table
        .find(&bead.project_id)
        .select(projects::max_review_rounds)
        .first(conn)
        .await?;
    record(conn, &bead, Kind::BeadChangesRequested, actor, json!({ "round": round })).await?;
    status::leave_landing(conn, &bead.id).await?;
    let error =
        format!("changes requested in review: {}", crate::workbench::clip::clip(&body, 2_000));
    if round >= i64::from(max) {
        let note = format!("review asked for changes {round} times; a person decides what next");
        status::block(conn, bead, BlockedReason::NeedsHuman, Some(note), actor).await?;
        return Ok(());
    }
    let id = bead.id.clone();
    status::reopen(conn, bead, Some(error.clone()), Attempts::Keep, actor).await?;
    diesel::update(beads::table.find(&id))
        .set((beads::last_error.eq(Some(&error)), beads::not_before.eq(None::<DateTime<Utc>>)))
        .execute(conn)
        .await?;
    Ok(())
}

/// The first half of every way out of the queue but landing, inside the caller's
/// transaction: under the graph lock, the bead locked and still waiting with the commit
/// that was checked, `body` said on it and its landing columns cleared. `None` (nothing
/// done) when it had left the queue.
async fn leave_queue(conn: &mut Conn, queued: &Queued, body: String) -> Result<Option<Bead>> {
    lock_graph(conn).await?;
    let bead = Bead::lock(conn, &queued.id).await?;
    if !waiting(&bead, &queued.sha) {
        return Ok(None);
    }
    Comment::add(conn, &queued.id, NewComment { body }, Actor::System).await?;
    status::leave_landing(conn, &queued.id).await?;
    Ok(Some(bead))
}

/// Still in the queue with the commit that was merged and checked.
fn waiting(bead: &Bead, sha: &str) -> bool {
    bead.status == BeadStatus::Landing && bead.landing_sha.as_deref() == Some(sha)
}
