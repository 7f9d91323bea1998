//! The agents page: every agent with its persona, project, status, the bead it works on and
//! when it last reported; members pause, resume and create agents through the same domain
//! calls as the API.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, Nav, PageError, Viewer, html, see_other};
use super::view::{ago, query_string};
use crate::agents::{Agent, AgentStatus, CurrentBead, NewAgent};
use crate::db::Page;
use crate::error::Error;
use crate::personas::Persona;
use crate::projects::Project;
use crate::users::Role;

/// Agents per page (by name); the rest are a link away.
const PER_PAGE: i64 = 100;
/// Projects offered in the new-agent form.
const PROJECTS: i64 = 500;

/// An agent, ready to render.
pub struct AgentRow {
    pub id: Uuid,
    pub name: String,
    pub persona: String,
    pub project: Option<String>,
    pub status: &'static str,
    /// Paused or offline: it can be resumed (anything else can be paused).
    pub resumable: bool,
    pub bead: Option<CurrentBead>,
    /// When it last reported, as words and as a timestamp.
    pub heartbeat: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentsPage {
    layout: Layout,
    rows: Vec<AgentRow>,
    /// The next page of agents, if there is one.
    more: Option<String>,
    paged: bool,
    personas: Vec<Persona>,
    projects: Vec<Project>,
    can_write: bool,
    form: AgentForm,
    error: Option<String>,
}

/// `GET /agents?after=<name>`: the page after that name.
#[derive(Debug, Default, Deserialize)]
pub struct AgentsQuery {
    #[serde(default)]
    after: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct AgentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    persona: String,
    #[serde(default)]
    project: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn rows(viewer: &Viewer, after: Option<&str>) -> Result<Page<AgentRow>, PageError> {
    let mut conn = viewer.state.pool.get().await?;
    let agents = Agent::list(&mut conn, None, after, PER_PAGE + 1).await?;
    let page = Page::from_rows(agents, PER_PAGE, |a| a.name.clone());
    let ids: Vec<Uuid> = page.items.iter().map(|a| a.id).collect();
    let mut beads = Agent::current_beads(&mut conn, &ids).await?;
    Ok(page.map(|a| AgentRow {
        bead: beads.remove(&a.id),
        heartbeat: a.last_heartbeat_at.map(|t| (ago(t), t.to_rfc3339())),
        resumable: matches!(a.status, AgentStatus::Paused | AgentStatus::Offline),
        status: a.status.as_str(),
        id: a.id,
        name: a.name,
        persona: a.persona,
        project: a.project_id,
    }))
}

async fn render(
    viewer: &Viewer,
    query: AgentsQuery,
    form: AgentForm,
    error: Option<Error>,
) -> Result<HttpResponse, PageError> {
    let layout = viewer.layout("Agents", Nav::Agents).await?;
    let after = Some(query.after.trim()).filter(|a| !a.is_empty());
    let page = rows(viewer, after).await?;
    let can_write = viewer.can_write();
    let (personas, projects) = if can_write {
        let mut conn = viewer.state.pool.get().await?;
        (Persona::list(&mut conn).await?, Project::list(&mut conn, None, PROJECTS).await?)
    } else {
        (Vec::new(), Vec::new())
    };
    let status = super::page::status_of(error.as_ref());
    let page = AgentsPage {
        layout,
        more: page.next_cursor.map(|c| format!("/agents{}", query_string(&[("after", &c)]))),
        paged: after.is_some(),
        rows: page.items,
        personas,
        projects,
        can_write,
        form,
        error: error.map(|e| e.to_string()),
    };
    Ok(html(status, page.render()))
}

/// `GET /agents`.
pub async fn list(
    viewer: Viewer,
    query: web::Query<AgentsQuery>,
) -> Result<HttpResponse, PageError> {
    render(&viewer, query.into_inner(), AgentForm::default(), None).await
}

/// `POST /agents`: creates an idle agent and shows the list; on bad input the form again,
/// filled in, with the reason.
pub async fn create(viewer: Viewer, form: web::Form<AgentForm>) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Member)?;
    let form = form.into_inner();
    let new = NewAgent {
        name: form.name.trim().to_owned(),
        persona: form.persona.trim().to_owned(),
        project: Some(form.project.trim().to_owned()).filter(|p| !p.is_empty()),
    };
    let created = Agent::create(&mut *viewer.state.pool.get().await?, new, viewer.actor()).await;
    match created {
        Ok(_) => {
            viewer.state.nudge.wake();
            Ok(see_other("/agents"))
        }
        Err(e) if super::page::is_refusal(&e) => {
            render(&viewer, AgentsQuery::default(), form, Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// An agent id from a path: anything that is not one names no agent.
fn agent_id(raw: &str) -> Result<Uuid, PageError> {
    raw.parse().map_err(|_| PageError::from(Error::not_found("agent")))
}

/// `POST /agents/{id}/pause`: a bead it works on goes back to open, costing no attempt.
pub async fn pause(
    viewer: Viewer,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    switch(viewer, &id, &form.csrf, true).await
}

/// `POST /agents/{id}/resume`: it is idle and takes work again.
pub async fn resume(
    viewer: Viewer,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    switch(viewer, &id, &form.csrf, false).await
}

/// Pauses or resumes an agent (members), then back to the list.
async fn switch(
    viewer: Viewer,
    id: &str,
    csrf: &str,
    pause: bool,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(csrf)?;
    viewer.require(Role::Member)?;
    let id = agent_id(id)?;
    let mut conn = viewer.state.pool.get().await?;
    if pause {
        Agent::pause(&mut conn, id, viewer.actor()).await?;
    } else {
        Agent::resume(&mut conn, id, viewer.actor()).await?;
    }
    viewer.state.nudge.wake();
    Ok(see_other("/agents"))
}
