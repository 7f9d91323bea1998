//! A project's landing queue as people read it (`GET /api/v1/projects/{id}/queue`, the
//! project page): the beads waiting in queue order, the check under way, and the last
//! checks with how they ended. Read from the database, so every replica shows the same.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use crate::db::Conn;
use crate::db::schema::{beads, checks, projects};
use crate::error::Result;

/// Recent checks shown.
const RECENT: i64 = 20;
/// Waiting beads listed at most (the count is exact).
const WAITING_SHOWN: i64 = 200;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    pub project: String,
    /// How many beads wait in the queue.
    pub depth: i64,
    /// In the order the queue serves them: priority first, then the time they came.
    pub waiting: Vec<WaitingBead>,
    /// Beads done by their agents, waiting for a review before they enter the queue.
    pub in_review: Vec<WaitingBead>,
    /// The check under way, if any.
    pub checking: Option<CheckView>,
    /// Why the queue is stuck: its last step failed (a push refused, the repository gone),
    /// and every step since; null once a step goes through.
    pub error: Option<QueueError>,
    /// The last checks, newest first.
    pub recent: Vec<CheckView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, Queryable, Selectable)]
#[diesel(table_name = beads)]
pub struct WaitingBead {
    pub id: String,
    pub title: String,
    pub priority: i16,
    /// The commit its agent finished on.
    #[diesel(column_name = landing_sha)]
    pub sha: Option<String>,
    /// When it entered review or the queue.
    #[diesel(column_name = landing_since)]
    pub since: Option<DateTime<Utc>>,
    /// Blockers not closed yet: the queue does not take it until they are.
    #[diesel(column_name = open_blockers)]
    pub waiting_on: i32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, Queryable, Selectable)]
#[diesel(table_name = checks)]
pub struct CheckRow {
    pub id: Uuid,
    pub beads: Vec<String>,
    pub base_sha: String,
    pub tip_sha: String,
    pub command: Option<String>,
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    pub landed: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What stops a project's queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueueError {
    pub message: String,
    /// When its steps began to fail.
    pub since: DateTime<Utc>,
}

/// One check: the train it judged and how it ended (`outcome` null while it runs).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckView {
    #[serde(flatten)]
    pub row: CheckRow,
    /// How long it ran, or has been running.
    pub seconds: f64,
}

impl From<CheckRow> for CheckView {
    fn from(row: CheckRow) -> CheckView {
        let end = row.finished_at.unwrap_or_else(Utc::now);
        let seconds = (end - row.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        CheckView { row, seconds }
    }
}

impl QueueView {
    pub async fn load(conn: &mut Conn, project: &str) -> Result<QueueView> {
        let depth: i64 = beads::table
            .filter(beads::project_id.eq(project))
            .filter(beads::status.eq(crate::beads::BeadStatus::Landing))
            .count()
            .get_result(conn)
            .await?;
        let waiting = listed(conn, project, crate::beads::BeadStatus::Landing).await?;
        let in_review = listed(conn, project, crate::beads::BeadStatus::Review).await?;
        let rows: Vec<CheckRow> = checks::table
            .filter(checks::project_id.eq(project))
            .order(checks::started_at.desc())
            .limit(RECENT + 1)
            .select(CheckRow::as_select())
            .load(conn)
            .await?;
        let (running, done): (Vec<CheckRow>, Vec<CheckRow>) =
            rows.into_iter().partition(|r| r.outcome.is_none());
        let error: (Option<String>, Option<DateTime<Utc>>) = projects::table
            .find(project)
            .select((projects::landing_error, projects::landing_error_since))
            .first(conn)
            .await?;
        let error = match error {
            (Some(message), Some(since)) => Some(QueueError { message, since }),
            _ => None,
        };
        Ok(QueueView {
            project: project.to_owned(),
            depth,
            waiting,
            in_review,
            checking: running.into_iter().next().map(CheckView::from),
            error,
            recent: done.into_iter().take(RECENT as usize).map(CheckView::from).collect(),
        })
    }
}

async fn listed(
    conn: &mut Conn,
    project: &str,
    status: crate::beads::BeadStatus,
) -> Result<Vec<WaitingBead>> {
    Ok(beads::table
        .filter(beads::project_id.eq(project))
        .filter(beads::status.eq(status))
        .order((beads::priority.asc(), beads::landing_since.asc(), beads::id.asc()))
        .limit(WAITING_SHOWN)
        .select(WaitingBead::as_select())
        .load(conn)
        .await?)
}

/// The checks that judged `bead`, newest first, with what they printed: for the bead page.
pub async fn checks_of(conn: &mut Conn, bead: &str, n: i64) -> Result<Vec<(CheckView, String)>> {
    let rows: Vec<(CheckRow, String)> = checks::table
        .filter(checks::beads.contains(vec![bead.to_owned()]))
        .order(checks::started_at.desc())
        .limit(n)
        .select((CheckRow::as_select(), checks::output))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(row, output)| (CheckView::from(row), output)).collect())
}
