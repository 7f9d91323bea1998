//! A project's page: its board (columns by where each bead is, cards with what a person needs
//! to see at a glance), filters, its landing queue, and filing a bead. The board is also
//! served alone (`/projects/{id}/board`), which the page's script fetches again whenever the
//! project's activity stream says something changed.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::landing::QueuePanel;
use super::page::{Layout, Nav, PageError, Viewer, html, see_other, urlencode};
use crate::agents::Agent;
use crate::beads::board::{ColumnPage, board};
use crate::beads::{
    Bead, BeadFilter, BeadStatus, BeadType, BlockedReason, Hold, NewBead, PriorityInput,
};
use crate::error::Error;
use crate::projects::Project;
use crate::users::Role;

/// Cards shown per column; the rest are counted and a click away.
const PER_COLUMN: i64 = 50;

/// The filters in the page's query string.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct BoardQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub priority: String,
}

impl BoardQuery {
    fn filter(&self, project: &str) -> Result<BeadFilter, Error> {
        let priorities = match self.priority.trim() {
            "" => Vec::new(),
            p => vec![PriorityInput::Text(p.to_owned()).parse()?],
        };
        Ok(BeadFilter {
            project: Some(project.to_owned()),
            text: Some(self.q.trim().to_owned()).filter(|t| !t.is_empty()),
            label: Some(self.label.trim().to_lowercase()).filter(|l| !l.is_empty()),
            priorities,
            ..BeadFilter::default()
        })
    }

    /// The same filters as a query string (for the board's own URL).
    fn encoded(&self) -> String {
        let parts: Vec<String> =
            [("q", &self.q), ("label", &self.label), ("priority", &self.priority)]
                .iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| format!("{k}={}", urlencode(v.trim())))
                .collect();
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }
}

/// A card, ready to render.
pub struct Card {
    pub id: String,
    pub title: String,
    pub priority: i16,
    pub kind: String,
    pub labels: Vec<String>,
    pub assignee: Option<String>,
    pub blockers: Vec<String>,
    /// Why it waits or is blocked, in words.
    pub hold: Option<String>,
    /// Which step of landing it is in (the landing column holds two).
    pub stage: Option<Stage>,
}

/// A step of landing, as a card's label and what the label means.
pub struct Stage {
    pub key: &'static str,
    pub means: &'static str,
}

pub struct ColumnView {
    pub key: &'static str,
    pub label: &'static str,
    pub cards: Vec<Card>,
    pub total: i64,
}

fn hold_text(h: &Hold) -> Option<String> {
    match h {
        Hold::Blocked { reason: BlockedReason::Manual, note: Some(n) } => Some(n.clone()),
        Hold::Blocked { reason, note } => Some(match note {
            Some(n) => format!("{reason}: {n}"),
            None => reason.to_string(),
        }),
        Hold::Deferred { until: Some(t) } => {
            Some(format!("deferred until {}", t.format("%Y-%m-%d %H:%M")))
        }
        Hold::Deferred { until: None } => Some("deferred".into()),
        Hold::Ancestor { id, status, .. } => Some(format!("parent {id} is {status}")),
        Hold::Backoff { until } => Some(format!("retrying after {}", until.format("%H:%M"))),
        Hold::Paired { .. } => Some("a person is pairing on it".into()),
        _ => None,
    }
}

fn card(held: crate::beads::HeldBead, agents: &HashMap<Uuid, String>) -> Card {
    let blockers = held
        .holds
        .iter()
        .flat_map(|h| match h {
            Hold::Blockers { blockers } => blockers.iter().map(|l| l.id.clone()).collect(),
            _ => Vec::new(),
        })
        .collect();
    let hold = held.holds.iter().find_map(hold_text);
    let b: Bead = held.bead;
    Card {
        stage: match b.status {
            BeadStatus::Review => Some(Stage { key: "review", means: "Waiting for a review" }),
            BeadStatus::Landing => Some(Stage { key: "landing", means: "In the merge queue" }),
            _ => None,
        },
        assignee: b.assignee_agent_id.and_then(|a| agents.get(&a).cloned()),
        id: b.id,
        title: b.title,
        priority: b.priority.get(),
        kind: b.bead_type.to_string(),
        labels: b.labels,
        blockers,
        hold,
    }
}

async fn columns(
    viewer: &Viewer,
    project: &str,
    query: &BoardQuery,
) -> Result<Vec<ColumnView>, PageError> {
    let filter = query.filter(project)?;
    let mut conn = viewer.state.pool.get().await?;
    let pages: Vec<ColumnPage> = board(&mut conn, &filter, PER_COLUMN).await?;
    let assignees: Vec<Uuid> = (pages.iter())
        .flat_map(|p| p.cards.iter().filter_map(|c| c.bead.assignee_agent_id))
        .collect();
    let agents: HashMap<Uuid, String> = Agent::names(&mut conn, &assignees).await?;
    Ok(pages
        .into_iter()
        .map(|p| ColumnView {
            key: p.column.key(),
            label: p.column.label(),
            total: p.total,
            cards: p.cards.into_iter().map(|c| card(c, &agents)).collect(),
        })
        .collect())
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardFragment {
    columns: Vec<ColumnView>,
    project_id: String,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    layout: Layout,
    project_id: String,
    project: Project,
    query: BoardQuery,
    board_url: String,
    columns: Vec<ColumnView>,
    queue: QueuePanel,
    can_write: bool,
    is_admin: bool,
    form: BeadForm,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct BeadForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    priority: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    labels: String,
}

async fn render(
    viewer: &Viewer,
    id: &str,
    query: BoardQuery,
    form: BeadForm,
    error: Option<Error>,
) -> Result<HttpResponse, PageError> {
    let project = Project::find(&mut *viewer.state.pool.get().await?, id).await?;
    let layout = viewer.layout(project.name.clone(), Nav::Projects).await?;
    let (columns, error) = match (columns(viewer, id, &query).await, error) {
        (Ok(c), e) => (c, e),
        // A bad filter shows an empty board with the reason, not an error page.
        (Err(PageError::Failed(e @ Error::Invalid { .. })), None) => (Vec::new(), Some(e)),
        (Err(e), _) => return Err(e),
    };
    let queue = QueuePanel::load(&mut *viewer.state.pool.get().await?, &project).await?;
    let status = super::page::status_of(error.as_ref());
    let page = ProjectPage {
        layout,
        board_url: format!("/projects/{}/board{}", urlencode(&project.id), query.encoded()),
        project_id: project.id.clone(),
        project,
        query,
        columns,
        queue,
        can_write: viewer.can_write(),
        is_admin: viewer.is_admin(),
        form,
        error: error.map(|e| e.to_string()),
    };
    Ok(html(status, page.render()))
}

/// The project's page with a refused change's reason (from the settings forms).
pub async fn refused(viewer: &Viewer, id: &str, e: Error) -> Result<HttpResponse, PageError> {
    render(viewer, id, BoardQuery::default(), BeadForm::default(), Some(e)).await
}

/// `GET /projects/{id}`.
pub async fn page(
    viewer: Viewer,
    id: web::Path<String>,
    query: web::Query<BoardQuery>,
) -> Result<HttpResponse, PageError> {
    render(&viewer, &id, query.into_inner(), BeadForm::default(), None).await
}

/// `GET /projects/{id}/board`: the board alone, for live updates.
pub async fn fragment(
    viewer: Viewer,
    id: web::Path<String>,
    query: web::Query<BoardQuery>,
) -> Result<HttpResponse, PageError> {
    Project::find(&mut *viewer.state.pool.get().await?, &id).await?;
    let columns = columns(&viewer, &id, &query).await?;
    let page = BoardFragment { columns, project_id: id.into_inner() };
    Ok(html(StatusCode::OK, page.render()))
}

/// `POST /projects/{id}/beads`: files a bead and goes back to the board; on bad input the
/// form again, filled in, with the reason.
pub async fn file_bead(
    viewer: Viewer,
    id: web::Path<String>,
    form: web::Form<BeadForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Member)?;
    let form = form.into_inner();
    let kind = match form.kind.trim() {
        "" => Ok(None),
        k => k
            .parse::<BeadType>()
            .map(Some)
            .map_err(|_| Error::invalid("invalid_type", format!("{k:?} is not a kind of bead"))),
    };
    let filed = match kind {
        Ok(bead_type) => {
            let new = NewBead {
                project: id.to_string(),
                title: form.title.clone(),
                description: Some(form.description.clone()).filter(|d| !d.trim().is_empty()),
                bead_type,
                priority: Some(form.priority.trim())
                    .filter(|p| !p.is_empty())
                    .map(|p| PriorityInput::Text(p.to_owned())),
                labels: Some(
                    form.labels
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                persona: None,
                parent: None,
                depends_on: None,
            };
            let mut conn = viewer.state.pool.get().await?;
            Bead::create(&mut conn, new, viewer.actor()).await
        }
        Err(e) => Err(e),
    };
    match filed {
        Ok(_) => {
            viewer.state.nudge.wake();
            Ok(see_other(&format!("/projects/{}", urlencode(&id))))
        }
        Err(e) if super::page::is_refusal(&e) => {
            render(&viewer, &id, BoardQuery::default(), form, Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}
