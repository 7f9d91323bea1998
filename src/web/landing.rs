//! Landing as pages show it (DESIGN.md, "Landing"): a bead's review (what its branch changes
//! and what its agent said it did), the checks that judged it, and a project's landing queue
//! (on its page, and alone at `/projects/{id}/queue`, which the page fetches again on change).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::bead_parts::{DiffLine, diff_lines};
use super::page::{PageError, Viewer, html};
use super::view::ago;
use crate::beads::{Bead, BeadStatus, Run, RunKind, RunOutcome};
use crate::db::Conn;
use crate::git::{PatchLimit, ProjectRepo};
use crate::landing::{CheckView, QueueView, WaitingBead, checks_of};
use crate::projects::Project;

/// How much of a bead's diff its review shows: enough for any change a person can review.
const REVIEW_PATCH: PatchLimit = PatchLimit { bytes: 200 * 1024, lines: 4000 };
/// Checks listed on a bead's page, newest first.
const BEAD_CHECKS: i64 = 5;
/// Finished checks listed on a project's page (the API lists more).
const RECENT_CHECKS: usize = 10;

/// What a reviewer of a bead in `review` reads.
pub struct ReviewView {
    /// What its agent said it did, from its last successful run.
    pub summary: Option<String>,
    /// `None` when this replica's clone has neither its branch nor origin's.
    pub diff: Option<DiffView>,
    /// The project has agents review (`review: agent`); members may still decide first.
    pub by_agent: bool,
    /// The agent reviewing it now, by name.
    pub reviewer: Option<String>,
}

/// A bead branch's change against where it left the project branch.
pub struct DiffView {
    pub branch: String,
    pub sha: String,
    pub files: usize,
    pub lines: Vec<DiffLine>,
    /// How much the page leaves out, in words; `None` when it shows all of it.
    pub omitted: Option<String>,
}

/// The review of `bead`, when it is in review. A diff that cannot be read is logged and
/// shown as missing: the summary and the decision still matter.
pub async fn review(
    viewer: &Viewer,
    repo: &ProjectRepo,
    bead: &Bead,
    runs: &[Run],
) -> Option<ReviewView> {
    if bead.status != BeadStatus::Review {
        return None;
    }
    let summary = (runs.iter())
        .find(|r| r.kind == RunKind::Work && r.outcome == Some(RunOutcome::Success))
        .and_then(|r| r.summary.clone());
    let diff = match viewer.state.repos.bead_diff(repo, &bead.id, REVIEW_PATCH).await {
        Ok(diff) => diff.map(|d| DiffView {
            branch: format!("loom/{}", bead.id),
            sha: d.sha.clone(),
            files: d.files,
            lines: diff_lines(&d.patch),
            omitted: d.truncated().then(|| {
                format!("{} more lines ({}) not shown", d.omitted_lines, size(d.omitted_bytes))
            }),
        }),
        Err(e) => {
            tracing::warn!(error = %e, bead.id = %bead.id, "could not read a bead's diff");
            None
        }
    };
    Some(ReviewView { summary, diff, by_agent: false, reviewer: None })
}

/// One check as a page lists it.
pub struct CheckLine {
    /// `green`, `red`, `unavailable`, `interrupted`, or `running`.
    pub outcome: String,
    pub exit_code: Option<i32>,
    /// `None`: the project had no check command, so the merge was not checked.
    pub command: Option<String>,
    pub beads: Vec<String>,
    pub landed: bool,
    pub when: String,
    pub at: String,
    pub took: String,
    /// The tail of what it printed (bead pages only).
    pub output: Option<String>,
}

impl From<CheckView> for CheckLine {
    fn from(c: CheckView) -> CheckLine {
        let row = c.row;
        CheckLine {
            outcome: row.outcome.unwrap_or_else(|| "running".into()),
            exit_code: row.exit_code,
            command: row.command,
            beads: row.beads,
            landed: row.landed,
            when: ago(row.started_at),
            at: row.started_at.to_rfc3339(),
            took: duration(c.seconds),
            output: None,
        }
    }
}

/// The checks that judged `bead`, newest first, with their output.
pub async fn checks(conn: &mut Conn, bead: &str) -> Result<Vec<CheckLine>, PageError> {
    Ok(checks_of(conn, bead, BEAD_CHECKS)
        .await?
        .into_iter()
        .map(|(check, output)| CheckLine { output: Some(output), ..CheckLine::from(check) })
        .collect())
}

/// A bead waiting in the queue or in review.
pub struct QueuedLine {
    pub id: String,
    pub title: String,
    pub priority: i16,
    /// Since when it waits in review or the queue, in words.
    pub since: Option<String>,
    pub at: Option<String>,
}

impl From<WaitingBead> for QueuedLine {
    fn from(w: WaitingBead) -> QueuedLine {
        QueuedLine {
            since: w.since.map(ago),
            at: w.since.map(|t| t.to_rfc3339()),
            id: w.id,
            title: w.title,
            priority: w.priority,
        }
    }
}

/// A project's landing queue as its page shows it.
pub struct QueuePanel {
    /// What every merged tree must pass; `None`: merges land unchecked.
    pub check_command: Option<String>,
    pub review: String,
    pub depth: i64,
    pub waiting: Vec<QueuedLine>,
    pub in_review: Vec<QueuedLine>,
    pub checking: Option<CheckLine>,
    pub recent: Vec<CheckLine>,
    /// Why its steps fail: (why, since when in words, since when).
    pub error: Option<(String, String, String)>,
}

impl QueuePanel {
    pub async fn load(conn: &mut Conn, project: &Project) -> Result<QueuePanel, PageError> {
        let queue = QueueView::load(conn, &project.id).await?;
        Ok(QueuePanel {
            check_command: project.check_command.clone(),
            review: project.review.as_str().to_owned(),
            depth: queue.depth,
            waiting: queue.waiting.into_iter().map(QueuedLine::from).collect(),
            in_review: queue.in_review.into_iter().map(QueuedLine::from).collect(),
            checking: queue.checking.map(CheckLine::from),
            recent: queue.recent.into_iter().take(RECENT_CHECKS).map(CheckLine::from).collect(),
            error: queue.error.map(|e| (e.message, ago(e.since), e.since.to_rfc3339())),
        })
    }

    /// Nothing waits and nothing has been checked yet.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
            && self.error.is_none()
            && self.in_review.is_empty()
            && self.checking.is_none()
            && self.recent.is_empty()
    }
}

#[derive(Template)]
#[template(path = "landing_queue.html")]
struct QueueFragment {
    project: Project,
    queue: QueuePanel,
}

/// `GET /projects/{id}/queue`: the landing queue alone, for live updates.
pub async fn fragment(viewer: Viewer, id: web::Path<String>) -> Result<HttpResponse, PageError> {
    let mut conn = viewer.state.pool.get().await?;
    let project = Project::find(&mut conn, &id).await?;
    let queue = QueuePanel::load(&mut conn, &project).await?;
    drop(conn);
    Ok(html(StatusCode::OK, QueueFragment { project, queue }.render()))
}

/// "850 bytes", "12 KB", "3.4 MB".
fn size(bytes: usize) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{} KB", bytes / 1024),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

/// "4.2 s", "3 min 5 s".
fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{} min {} s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_a_person_says_them() {
        assert_eq!(size(850), "850 bytes");
        assert_eq!(size(12 * 1024 + 5), "12 KB");
        assert_eq!(size(3_565_158), "3.4 MB");
        assert_eq!(duration(4.23), "4.2 s");
        assert_eq!(duration(185.4), "3 min 5 s");
    }
}
