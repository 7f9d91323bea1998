//! A bead's page: what it is (its description rendered safely), how it connects (both ways),
//! what people said, what agents did (each run turn by turn), its history, and the actions a
//! member may take on it.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::markdown;
use super::page::{Layout, Nav, PageError, Viewer, html, see_other, urlencode};
use super::view::{ActivityLine, ago, status_label};
use crate::agents::Agent;
use crate::beads::{
    Bead, BeadDetails, BeadPatch, BeadType, BlockedReason, Comment, Dependency, DependencyKind,
    Hold, Link, NewComment, PriorityInput, Run, StatusChange,
};
use crate::error::Error;
use crate::git::ProjectRepo;
use crate::projects::Project;
use crate::users::{Role, User};

/// Most runs shown turn by turn (the newest); older ones are listed without their steps.
const RUNS_WITH_STEPS: usize = 5;
/// Bytes of a commit's patch shown before it is cut.
const PATCH_BYTES: usize = 64 * 1024;
/// Characters of a step's result shown before it is cut.
const RESULT_CHARS: usize = 4000;

pub struct CommentView {
    pub author: String,
    pub when: String,
    pub at: String,
    pub html: String,
}

/// A dependency as the page lists it.
pub struct LinkView {
    pub id: String,
    pub title: String,
    pub status: String,
    pub kind: &'static str,
}

impl From<Link> for LinkView {
    fn from(l: Link) -> Self {
        LinkView {
            kind: match l.kind {
                DependencyKind::Blocks => "blocks",
                DependencyKind::ParentChild => "parent / child",
                DependencyKind::Related => "related",
                DependencyKind::DiscoveredFrom => "discovered from",
            },
            id: l.id,
            title: l.title,
            status: l.status.to_string(),
        }
    }
}

pub struct StepView {
    pub turn: i32,
    pub action: String,
    pub detail: String,
    pub ok: bool,
    pub result: String,
    pub cut: bool,
    pub tokens: i64,
    pub ms: i64,
}

/// One line of a patch, with how to show it.
pub struct DiffLine {
    pub class: &'static str,
    pub text: String,
}

/// The commit a run's work was merged as.
pub struct CommitView {
    pub sha: String,
    pub subject: String,
    pub author: String,
    pub files: Vec<String>,
    pub lines: Vec<DiffLine>,
    pub truncated: bool,
}

pub struct RunView {
    pub run: Run,
    /// `None` when this replica's clone does not have the merge (another one did the work).
    pub commit: Option<CommitView>,
    pub agent: String,
    pub outcome: String,
    pub when: String,
    pub steps: Option<Vec<StepView>>,
}

#[derive(Template)]
#[template(path = "bead.html")]
struct BeadPage {
    layout: Layout,
    bead: Bead,
    ready: bool,
    status: &'static str,
    description: String,
    dependencies: Vec<LinkView>,
    dependents: Vec<LinkView>,
    holds: Vec<String>,
    comments: Vec<CommentView>,
    runs: Vec<RunView>,
    history: Vec<ActivityLine>,
    /// The history's live stream filter: this bead.
    feed_query: String,
    can_write: bool,
    error: Option<String>,
}

fn hold_line(h: &Hold) -> String {
    match h {
        Hold::Blockers { blockers } => format!(
            "waits on {}",
            blockers.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
        Hold::Blocked { reason: BlockedReason::Manual, note: Some(n) } => format!("blocked: {n}"),
        Hold::Blocked { reason, note: Some(n) } => format!("blocked ({reason}): {n}"),
        Hold::Blocked { reason, note: None } => format!("blocked ({reason})"),
        Hold::Deferred { until: Some(t) } => format!("deferred until {}", t.to_rfc3339()),
        Hold::Deferred { until: None } => "deferred".into(),
        Hold::Ancestor { id, status, .. } => format!("its ancestor {id} is {status}"),
        Hold::Backoff { until } => format!("retrying after {}", until.to_rfc3339()),
        Hold::InProgress { .. } => "being worked on".into(),
        Hold::Closed => "closed".into(),
        other => format!("{other:?}"),
    }
}

fn diff_lines(patch: &str) -> Vec<DiffLine> {
    patch
        .lines()
        .map(|l| DiffLine {
            class: if l.starts_with("diff --git") || l.starts_with("+++") || l.starts_with("---") {
                "file"
            } else if l.starts_with("@@") {
                "hunk"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "ctx"
            },
            text: l.to_owned(),
        })
        .collect()
}

/// The merge of a run, read from Loom's clone of the project (a failure to read it is logged
/// and the page shows the sha alone: the page matters more than the diff).
async fn commit_view(viewer: &Viewer, project: &ProjectRepo, sha: &str) -> Option<CommitView> {
    match viewer.state.repos.show(project, sha, PATCH_BYTES).await {
        Ok(Some(c)) => Some(CommitView {
            sha: c.info.sha,
            subject: c.info.message.lines().next().unwrap_or_default().to_owned(),
            author: c.info.author.name,
            files: c.info.files,
            lines: diff_lines(&c.patch),
            truncated: c.truncated,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, sha, "could not read a run's commit");
            None
        }
    }
}

fn step_view(step: crate::beads::RunStep) -> StepView {
    let name = step.action.get("action").and_then(|a| a.as_str()).unwrap_or("?").to_owned();
    let mut rest = step.action.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("action");
    }
    let detail: String = match &rest {
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        v => v.to_string().chars().take(400).collect(),
    };
    let cut = step.result.chars().count() > RESULT_CHARS;
    StepView {
        turn: step.turn,
        action: name,
        detail,
        ok: step.ok,
        result: step.result.chars().take(RESULT_CHARS).collect(),
        cut,
        tokens: step.prompt_tokens + step.completion_tokens,
        ms: step.duration_ms,
    }
}

async fn render(
    viewer: &Viewer,
    id: &str,
    error: Option<Error>,
) -> Result<HttpResponse, PageError> {
    let mut conn = viewer.state.pool.get().await?;
    let details: BeadDetails = Bead::details(&mut conn, id).await?;
    let agents: HashMap<Uuid, String> = Agent::list(&mut conn, None, None, 1000)
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let user_ids: Vec<Uuid> = details.comments.iter().filter_map(|c| c.author_user_id).collect();
    let people = User::names(&mut conn, &user_ids).await?;
    let author = |c: &Comment| {
        c.author_user_id
            .and_then(|u| people.get(&u).cloned())
            .or_else(|| {
                c.author_agent_id.and_then(|a| agents.get(&a).map(|n| format!("{n} (agent)")))
            })
            .unwrap_or_else(|| "someone".into())
    };
    let comments = details
        .comments
        .iter()
        .map(|c| CommentView {
            author: author(c),
            when: ago(c.created_at),
            at: c.created_at.to_rfc3339(),
            html: markdown::render(&c.body),
        })
        .collect();
    let project = Project::find(&mut conn, &details.bead.bead.project_id).await?;
    let repo = ProjectRepo { id: project.id, repo: project.repo, branch: project.branch };
    let mut runs = Vec::new();
    // Newest first; the newest few with their steps and their commit.
    for (i, run) in details.runs.into_iter().enumerate() {
        let (steps, commit) = if i < RUNS_WITH_STEPS {
            let with = Run::with_steps(&mut conn, run.id).await?;
            let commit = match &run.merged_sha {
                Some(sha) => commit_view(viewer, &repo, sha).await,
                None => None,
            };
            (Some(with.steps.into_iter().map(step_view).collect()), commit)
        } else {
            (None, None)
        };
        runs.push(RunView {
            agent: run.agent_id.and_then(|a| agents.get(&a).cloned()).unwrap_or_else(|| "—".into()),
            outcome: run.outcome.map_or_else(|| "running".to_owned(), |o| o.to_string()),
            when: ago(run.started_at),
            steps,
            commit,
            run,
        });
    }
    drop(conn);
    let layout = viewer
        .layout(format!("{} {}", details.bead.bead.id, details.bead.bead.title), Nav::Projects)
        .await?;
    let bead = details.bead.bead;
    let status = error.as_ref().map_or(StatusCode::OK, actix_web::ResponseError::status_code);
    let page = BeadPage {
        layout,
        ready: details.bead.ready,
        status: status_label(bead.status),
        description: markdown::render(&bead.description),
        dependencies: details.dependencies.into_iter().map(LinkView::from).collect(),
        dependents: details.dependents.into_iter().map(LinkView::from).collect(),
        holds: details.holds.iter().map(hold_line).collect(),
        comments,
        runs,
        history: details.history.iter().rev().map(ActivityLine::from).collect(),
        feed_query: format!("?bead={}", urlencode(&bead.id)),
        can_write: viewer.can_write(),
        error: error.map(|e| e.to_string()),
        bead,
    };
    Ok(html(status, page.render()))
}

/// `GET /beads/{id}`.
pub async fn page(viewer: Viewer, id: web::Path<String>) -> Result<HttpResponse, PageError> {
    render(&viewer, &id, None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    depends_on: String,
    #[serde(default)]
    kind: String,
    // The edit form.
    #[serde(default)]
    version: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default, rename = "type")]
    bead_type: Option<String>,
    #[serde(default)]
    labels: Option<String>,
}

impl ActionForm {
    /// The edit form as a patch: every field it carries, at the version the page showed (a
    /// change made meanwhile is refused as stale rather than overwritten).
    fn patch(&self) -> Result<BeadPatch, Error> {
        let version = self.version.trim().parse::<i32>().map_err(|_| {
            Error::invalid("invalid_version", "the form lost its version: reload the page")
        })?;
        let bead_type = match self.bead_type.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(t.parse::<BeadType>().map_err(|_| {
                Error::invalid("invalid_type", format!("{t:?} is not a kind of bead"))
            })?),
        };
        Ok(BeadPatch {
            version,
            title: self.title.clone(),
            description: self.description.clone(),
            priority: self
                .priority
                .clone()
                .filter(|p| !p.trim().is_empty())
                .map(PriorityInput::Text),
            bead_type,
            labels: self.labels.as_ref().map(|l| {
                l.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
            }),
            ..BeadPatch::default()
        })
    }
}

/// `POST /beads/{id}/{action}`: edit, close, reopen, block, comment or depend; then the page
/// again (with the reason when it was refused).
pub async fn act(
    viewer: Viewer,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Member)?;
    let (id, action) = path.into_inner();
    let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
    let actor = viewer.actor();
    let mut conn = viewer.state.pool.get().await?;
    let done: Result<(), Error> = match action.as_str() {
        "close" => Bead::change_status(&mut conn, &id, StatusChange::Close { reason }, None, actor)
            .await
            .map(drop),
        "reopen" => {
            Bead::change_status(&mut conn, &id, StatusChange::Reopen { reason }, None, actor)
                .await
                .map(drop)
        }
        "block" => match reason {
            None => Err(Error::invalid("reason_required", "say why the bead is blocked")),
            Some(note) => {
                let change =
                    StatusChange::Block { reason: BlockedReason::Manual, note: Some(note) };
                Bead::change_status(&mut conn, &id, change, None, actor).await.map(drop)
            }
        },
        "edit" => match form.patch() {
            Ok(patch) => Bead::patch(&mut conn, &id, patch, actor).await.map(drop),
            Err(e) => Err(e),
        },
        "comment" => {
            let new = NewComment { body: form.body.clone() };
            Comment::add(&mut conn, &id, new, actor).await.map(drop)
        }
        "depend" => {
            let kind = match form.kind.as_str() {
                "" | "blocks" => Ok(DependencyKind::Blocks),
                "related" => Ok(DependencyKind::Related),
                "discovered-from" => Ok(DependencyKind::DiscoveredFrom),
                "parent-child" => Ok(DependencyKind::ParentChild),
                other => Err(Error::invalid(
                    "invalid_kind",
                    format!("{other:?} is not a kind of dependency"),
                )),
            };
            match kind {
                Ok(kind) => {
                    let dep = Dependency { depends_on: form.depends_on.trim().to_owned(), kind };
                    Bead::add_dependency(&mut conn, &id, dep, actor).await.map(drop)
                }
                Err(e) => Err(e),
            }
        }
        _ => return Err(Error::not_found("action").into()),
    };
    drop(conn);
    match done {
        Ok(()) => {
            viewer.state.nudge.wake();
            Ok(see_other(&format!("/beads/{}", urlencode(&id))))
        }
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. } | Error::BadRequest { .. })) => {
            render(&viewer, &id, Some(e)).await
        }
        // A dependency on a bead that does not exist: this page, saying so.
        Err(e @ Error::NotFound(_)) if action == "depend" => {
            let missing = Error::invalid("unknown_bead", format!("{e}: check the id"));
            render(&viewer, &id, Some(missing)).await
        }
        Err(e) => Err(e.into()),
    }
}
