//! A bead's page: what it is (its description rendered safely), how it connects (both ways),
//! what people said, what agents did (each run turn by turn), its review and checks, its
//! history, and the actions a member may take on it.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::bead_parts::{self as parts, CommentView, LinkView, RunView};
use super::landing::{self, CheckLine, ReviewView};
use super::markdown;
use super::page::{Layout, Nav, PageError, Viewer, html, see_other, urlencode};
use super::view::{ActivityLine, status_label};
use crate::agents::Agent;
use crate::beads::{
    Bead, BeadDetails, BeadPatch, BeadType, BlockedReason, Comment, Decision, Dependency,
    DependencyKind, NewComment, PriorityInput, RunKind, StatusChange,
};
use crate::error::Error;
use crate::git::ProjectRepo;
use crate::projects::Project;
use crate::users::Role;

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
    /// Its diff and its agent's summary, while it is in review.
    review: Option<ReviewView>,
    /// The merge queue's checks of its work, newest first.
    checks: Vec<CheckLine>,
    history: Vec<ActivityLine>,
    /// The history's live stream filter: this bead.
    feed_query: String,
    can_write: bool,
    error: Option<String>,
    /// Conversations on this bead, newest first.
    conversations: Vec<crate::chat::Conversation>,
    /// The personas a person may pair with, the bead's own first.
    personas: Vec<String>,
}

async fn render(
    viewer: &Viewer,
    id: &str,
    error: Option<Error>,
) -> Result<HttpResponse, PageError> {
    let mut conn = viewer.state.pool.get().await?;
    let details: BeadDetails = Bead::details(&mut conn, id).await?;
    let agent_ids: Vec<Uuid> = (details.runs.iter().filter_map(|r| r.agent_id))
        .chain(details.comments.iter().filter_map(|c| c.author_agent_id))
        .collect();
    let agents = Agent::names(&mut conn, &agent_ids).await?;
    let comments = parts::comments(&mut conn, &details.comments, &agents).await?;
    let project = Project::find(&mut conn, &details.bead.bead.project_id).await?;
    let by_agent = project.review == crate::projects::Review::Agent;
    let repo = ProjectRepo { id: project.id, repo: project.repo, branch: project.branch };
    let reviewer = details.runs.iter().find(|r| r.kind == RunKind::Review && r.outcome.is_none());
    let reviewer = reviewer.and_then(|r| r.agent_id).and_then(|a| agents.get(&a).cloned());
    let review = landing::review(viewer, &repo, &details.bead.bead, &details.runs).await;
    let review = review.map(|r| landing::ReviewView { by_agent, reviewer, ..r });
    let checks = landing::checks(&mut conn, id).await?;
    let runs = parts::runs(viewer, &mut conn, &repo, details.runs, &agents).await?;
    let conversations =
        crate::chat::Conversation::list(&mut conn, None, Some(id), None, 20).await?;
    let mut personas: Vec<String> =
        crate::personas::Persona::list(&mut conn).await?.into_iter().map(|p| p.name).collect();
    if let Some(own) = &details.bead.bead.persona {
        personas.sort_by_key(|p| p != own);
    }
    drop(conn);
    let layout = viewer
        .layout(format!("{} {}", details.bead.bead.id, details.bead.bead.title), Nav::Projects)
        .await?;
    let bead = details.bead.bead;
    let status = super::page::status_of(error.as_ref());
    let page = BeadPage {
        layout,
        ready: details.bead.ready,
        status: status_label(bead.status),
        description: markdown::render(&bead.description),
        dependencies: details.dependencies.into_iter().map(LinkView::from).collect(),
        dependents: details.dependents.into_iter().map(LinkView::from).collect(),
        holds: details.holds.iter().map(parts::hold_line).collect(),
        comments,
        runs,
        review,
        checks,
        history: details.history.iter().rev().map(ActivityLine::from).collect(),
        feed_query: format!("?bead={}", urlencode(&bead.id)),
        can_write: viewer.can_write(),
        error: error.map(|e| e.to_string()),
        conversations,
        personas,
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
    /// A comment, an approval's comment, or the changes a review asks for.
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
    // The pairing form.
    #[serde(default)]
    persona: String,
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

/// `POST /beads/{id}/{action}`: edit, close, reopen, block, comment, depend, approve or
/// request changes; then the page again (with the reason when it was refused).
pub async fn act(
    viewer: Viewer,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Member)?;
    let (id, action) = path.into_inner();
    if action == "pair" {
        return pair(&viewer, &id, &form.persona).await;
    }
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
        "approve" => {
            let decision = Decision::Approve { comment: Some(form.body.clone()) };
            Bead::review(&mut conn, &id, decision, actor).await.map(drop)
        }
        "request-changes" => {
            let decision = Decision::RequestChanges { body: form.body.clone() };
            Bead::review(&mut conn, &id, decision, actor).await.map(drop)
        }
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
        Err(e) if super::page::is_refusal(&e) => render(&viewer, &id, Some(e)).await,
        // A dependency on a bead that does not exist: this page, saying so.
        Err(e @ Error::NotFound(_)) if action == "depend" => {
            let missing = Error::invalid("unknown_bead", format!("{e}: check the id"));
            render(&viewer, &id, Some(missing)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /beads/{id}/pair`: a conversation on the bead with the chosen persona; then its
/// page (or this one, saying why not).
async fn pair(viewer: &Viewer, id: &str, persona: &str) -> Result<HttpResponse, PageError> {
    if viewer.state.gateway.is_none() {
        let refused = Error::conflict("gateway_unconfigured", crate::http::api::meta::NO_GATEWAY);
        return render(viewer, id, Some(refused)).await;
    }
    let mut conn = viewer.state.pool.get().await?;
    let bead = Bead::get(&mut conn, id).await?;
    let new = crate::chat::NewConversation {
        project: bead.project_id,
        agent: None,
        persona: Some(persona.trim().to_owned()).filter(|p| !p.is_empty()),
        bead: Some(id.to_owned()),
        title: None,
    };
    let started = crate::chat::Conversation::start(&mut conn, new, viewer.user.id).await;
    drop(conn);
    match started {
        Ok(c) => Ok(see_other(&format!("/conversations/{}", c.id))),
        Err(e) if super::page::is_refusal(&e) => render(viewer, id, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}
