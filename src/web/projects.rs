//! The projects list, and creating a project (admins).

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::page::{Layout, Nav, PageError, Viewer, html, see_other};
use crate::beads::{BeadStatus, stats};
use crate::error::Error;
use crate::projects::{NewProject, Project, ProjectPatch};
use crate::users::Role;

/// A project with how much of its work is where.
pub struct ProjectRow {
    pub project: Project,
    pub open: i64,
    pub in_progress: i64,
    pub blocked: i64,
    pub closed: i64,
}

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    layout: Layout,
    rows: Vec<ProjectRow>,
    can_create: bool,
    form: ProjectForm,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProjectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    max_parallel: String,
}

impl ProjectForm {
    /// The repository typed in, for the form shown again: credentials hidden like anywhere
    /// else (sent back as shown, the project is refused and they are asked for again).
    fn repo_shown(&self) -> String {
        crate::git::redact_url(&self.repo)
    }
}

async fn render(
    viewer: &Viewer,
    form: ProjectForm,
    error: Option<Error>,
) -> Result<HttpResponse, PageError> {
    let layout = viewer.layout("Projects", Nav::Projects).await?;
    let mut conn = viewer.state.pool.get().await?;
    let counts = stats::by_project_and_status(&mut conn).await?;
    let mut rows = Vec::new();
    for project in Project::list(&mut conn, None, 500).await? {
        let n = |s: BeadStatus| {
            counts.iter().find(|(p, c, _)| *p == project.id && *c == s).map_or(0, |(_, _, n)| *n)
        };
        rows.push(ProjectRow {
            open: n(BeadStatus::Open) + n(BeadStatus::Deferred),
            in_progress: n(BeadStatus::InProgress),
            blocked: n(BeadStatus::Blocked),
            closed: n(BeadStatus::Closed),
            project,
        });
    }
    let status = super::page::status_of(error.as_ref());
    let page = ProjectsPage {
        layout,
        rows,
        can_create: viewer.is_admin(),
        form,
        error: error.map(|e| e.to_string()),
    };
    Ok(html(status, page.render()))
}

pub async fn list(viewer: Viewer) -> Result<HttpResponse, PageError> {
    render(&viewer, ProjectForm::default(), None).await
}

/// `POST /projects`: creates it and opens its board; on bad input the form again, filled in,
/// with the reason.
pub async fn create(
    viewer: Viewer,
    form: web::Form<ProjectForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Admin)?;
    let form = form.into_inner();
    let created = async {
        let new = NewProject {
            id: form.id.trim().to_owned(),
            name: form.name.trim().to_owned(),
            repo: form.repo.trim().to_owned(),
            branch: Some(form.branch.trim().to_owned()).filter(|b| !b.is_empty()),
            prefix: None,
            max_parallel: number(&form.max_parallel, "invalid_max_parallel", "max parallel runs")?,
            ..NewProject::default()
        };
        Project::create(&mut *viewer.state.pool.get().await?, new, viewer.actor()).await
    }
    .await;
    match created {
        Ok(p) => Ok(see_other(&format!("/projects/{}", p.id))),
        Err(e) if super::page::is_refusal(&e) => render(&viewer, form, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    max_parallel: String,
    #[serde(default)]
    max_attempts: String,
    #[serde(default)]
    token_budget: String,
    #[serde(default)]
    max_in_progress: String,
    #[serde(default)]
    network: String,
    #[serde(default)]
    setup_command: String,
    #[serde(default)]
    max_awaiting_merge: String,
    #[serde(default)]
    check_command: String,
    #[serde(default)]
    check_timeout_s: String,
    #[serde(default)]
    max_train: String,
    #[serde(default)]
    review: String,
}

fn number<N: std::str::FromStr>(
    text: &str,
    code: &'static str,
    what: &str,
) -> Result<Option<N>, Error> {
    match text.trim() {
        "" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| Error::invalid(code, format!("{what} is a whole number"))),
    }
}

/// `POST /projects/{id}/settings` (admins): name, repository, branch and limits; refused
/// input is shown on the project's page.
pub async fn settings(
    viewer: Viewer,
    id: web::Path<String>,
    form: web::Form<SettingsForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Admin)?;
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let changed = async {
        let patch = ProjectPatch {
            name: text(&form.name),
            repo: text(&form.repo),
            branch: text(&form.branch),
            max_parallel: number(&form.max_parallel, "invalid_max_parallel", "runs at once")?,
            max_attempts: number(&form.max_attempts, "invalid_max_attempts", "attempts")?,
            // The form shows every limit: an emptied box removes it.
            token_budget: Some(number(
                &form.token_budget,
                "invalid_token_budget",
                "a token budget",
            )?),
            max_in_progress: Some(number(
                &form.max_in_progress,
                "invalid_max_in_progress",
                "beads in progress",
            )?),
            max_awaiting_merge: Some(number(
                &form.max_awaiting_merge,
                "invalid_max_awaiting_merge",
                "beads waiting to merge",
            )?),
            network: Some(text(&form.network)),
            setup_command: Some(text(&form.setup_command)),
            check_command: Some(text(&form.check_command)),
            check_timeout_s: Some(number(
                &form.check_timeout_s,
                "invalid_check_timeout_s",
                "the check timeout",
            )?),
            max_train: Some(number(&form.max_train, "invalid_max_train", "beads per train")?),
            review: Some(text(&form.review)),
            max_review_rounds: None,
        };
        Project::update(&mut *viewer.state.pool.get().await?, &id, patch, viewer.actor()).await
    }
    .await;
    match changed {
        Ok(p) => Ok(see_other(&format!("/projects/{}", super::page::urlencode(&p.id)))),
        Err(e) if super::page::is_refusal(&e) => super::board::refused(&viewer, &id, e).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /projects/{id}/delete` (admins): only a project without unfinished beads.
pub async fn delete(
    viewer: Viewer,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Admin)?;
    match Project::delete(&mut *viewer.state.pool.get().await?, &id, viewer.actor()).await {
        Ok(()) => Ok(see_other("/projects")),
        Err(e @ (Error::Invalid { .. } | Error::Conflict { .. })) => {
            super::board::refused(&viewer, &id, e).await
        }
        Err(e) => Err(e.into()),
    }
}
