//! What hangs off a bead: its dependencies, comments and runs.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::beads::bead_id;
use crate::beads::{Bead, Comment, Dependency, NewComment, Run, RunWithSteps};
use crate::error::Result;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::paging::{PageParams, uuid_cursor};
use crate::users::Role;

/// Adds a dependency (201 when new, 200 when it existed). A `blocks` edge that would close
/// a cycle is refused with 409 `dependency_cycle`.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body = Dependency,
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 201, body = Dependency), (status = 200, body = Dependency),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/beads/{id}/dependencies")]
pub async fn add_dependency(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<Dependency>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let id = bead_id(&id)?;
    let dep = body;
    let mut conn = state.pool.get().await?;
    let added = Bead::add_dependency(&mut conn, id.as_str(), dep.clone(), auth.actor()).await?;
    Ok(if added { HttpResponse::Created().json(dep) } else { HttpResponse::Ok().json(dep) })
}

/// Removes a dependency.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body = Dependency,
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
#[delete("/beads/{id}/dependencies")]
pub async fn remove_dependency(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<Dependency>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let id = bead_id(&id)?;
    let mut conn = state.pool.get().await?;
    Bead::remove_dependency(&mut conn, id.as_str(), body, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommentList {
    pub items: Vec<Comment>,
    pub next_cursor: Option<String>,
}

/// A bead's comments, oldest first.
#[utoipa::path(tag = "beads", security(("token" = [])),
    params(("id" = String, Path, description = "bead id"), PageParams), responses(
    (status = 200, body = CommentList), (status = 404, body = ErrorBody)))]
#[get("/beads/{id}/comments")]
pub async fn list_comments(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    page: web::Query<PageParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let id = bead_id(&id)?;
    let limit = page.limit()?;
    let after = uuid_cursor(page.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    Bead::get(&mut conn, id.as_str()).await?;
    let page = Comment::list(&mut conn, id.as_str(), after, limit).await?;
    Ok(HttpResponse::Ok().json(CommentList { items: page.items, next_cursor: page.next_cursor }))
}

/// Comments on a bead. `@username` mentions are recorded for notifications.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body = NewComment,
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 201, body = Comment), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/beads/{id}/comments")]
pub async fn add_comment(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<NewComment>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let id = bead_id(&id)?;
    let mut conn = state.pool.get().await?;
    let comment = Comment::add(&mut conn, id.as_str(), body, auth.actor()).await?;
    Ok(HttpResponse::Created().json(comment))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunList {
    pub items: Vec<Run>,
    pub next_cursor: Option<String>,
}

/// A bead's runs, newest first, with outcome, turns and tokens.
#[utoipa::path(tag = "runs", security(("token" = [])),
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = RunList), (status = 404, body = ErrorBody)))]
#[get("/beads/{id}/runs")]
pub async fn bead_runs(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let id = bead_id(&id)?;
    let mut conn = state.pool.get().await?;
    Bead::get(&mut conn, id.as_str()).await?;
    let items = Run::for_bead(&mut conn, id.as_str()).await?;
    Ok(HttpResponse::Ok().json(RunList { items, next_cursor: None }))
}

#[derive(Debug, Deserialize)]
pub struct RunPath {
    pub id: Uuid,
}

/// One run with its steps: action, result and timing.
#[utoipa::path(tag = "runs", security(("token" = [])),
    params(("id" = Uuid, Path, description = "run id")), responses(
    (status = 200, body = RunWithSteps), (status = 404, body = ErrorBody)))]
#[get("/runs/{id}")]
pub async fn show_run(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<RunPath>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(Run::with_steps(&mut conn, path.id).await?))
}
