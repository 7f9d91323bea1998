//! Projects: anyone signed in reads them; admins create, change and delete them.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};

use crate::beads::{Graph, project_graph};
use crate::db::Page;
use crate::error::Error;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::paging::PageParams;
use crate::projects::{NewProject, Project, ProjectPatch};
use crate::users::Role;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectList {
    pub items: Vec<Project>,
    pub next_cursor: Option<String>,
}

/// Every project, by id.
#[utoipa::path(tag = "projects", security(("token" = [])), params(PageParams), responses(
    (status = 200, body = ProjectList), (status = 401, body = ErrorBody)))]
#[get("/projects")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Viewer)?;
    let limit = page.limit()?;
    let mut conn = state.pool.get().await?;
    let rows = Project::list(&mut conn, page.cursor.as_deref(), limit + 1).await?;
    let page = Page::from_rows(rows, limit, |p| p.id.clone());
    Ok(HttpResponse::Ok().json(ProjectList { items: page.items, next_cursor: page.next_cursor }))
}

/// Creates a project.
#[utoipa::path(tag = "projects", security(("token" = [])), request_body = NewProject, responses(
    (status = 201, body = Project), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/projects")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    body: DeferredJson<NewProject>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Admin)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let project = Project::create(&mut conn, body, auth.actor()).await?;
    Ok(HttpResponse::Created().json(project))
}

/// One project.
#[utoipa::path(tag = "projects", security(("token" = [])),
    params(("id" = String, Path, description = "project id")), responses(
    (status = 200, body = Project), (status = 404, body = ErrorBody)))]
#[get("/projects/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(Project::find(&mut conn, &id).await?))
}

/// Changes a project's settings.
#[utoipa::path(tag = "projects", security(("token" = [])), request_body = ProjectPatch,
    params(("id" = String, Path, description = "project id")), responses(
    (status = 200, body = Project), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/projects/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<ProjectPatch>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Admin)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let project = Project::update(&mut conn, &id, body, auth.actor()).await?;
    Ok(HttpResponse::Ok().json(project))
}

/// Deletes a project; refused (409) while it has beads that are not closed.
#[utoipa::path(tag = "projects", security(("token" = [])),
    params(("id" = String, Path, description = "project id")), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/projects/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Admin)?;
    let mut conn = state.pool.get().await?;
    Project::delete(&mut conn, &id, auth.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GraphParams {
    /// Include closed beads (default false).
    pub include_closed: Option<bool>,
    /// Most beads to include, 1-5000 (default 1000).
    pub limit: Option<i64>,
}

/// The project's beads and the edges between them, for drawing.
#[utoipa::path(tag = "projects", security(("token" = [])),
    params(("id" = String, Path, description = "project id"), GraphParams), responses(
    (status = 200, body = Graph), (status = 404, body = ErrorBody)))]
#[get("/projects/{id}/graph")]
pub async fn graph(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    params: web::Query<GraphParams>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Viewer)?;
    let limit = match params.limit {
        None => 1000,
        Some(n) if (1..=5000).contains(&n) => n,
        Some(n) => {
            return Err(Error::invalid("invalid_limit", format!("limit is 1-5000, got {n}")));
        }
    };
    let mut conn = state.pool.get().await?;
    Project::find(&mut conn, &id).await?;
    let graph =
        project_graph(&mut conn, &id, params.include_closed.unwrap_or(false), limit).await?;
    Ok(HttpResponse::Ok().json(graph))
}
