//! Agents: members create, change, pause and resume them; anyone signed in reads them.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agents::{Agent, AgentPatch, NewAgent};
use crate::db::Page;
use crate::error::Result;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::paging::check_limit;
use crate::users::Role;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentList {
    pub items: Vec<Agent>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentParams {
    /// Only agents bound to this project.
    pub project: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Agents, by name.
#[utoipa::path(tag = "agents", security(("token" = [])), params(AgentParams), responses(
    (status = 200, body = AgentList), (status = 401, body = ErrorBody)))]
#[get("/agents")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    p: web::Query<AgentParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let limit = check_limit(p.limit)?;
    let mut conn = state.pool.get().await?;
    let rows = Agent::list(&mut conn, p.project.as_deref(), p.cursor.as_deref(), limit + 1).await?;
    let page = Page::from_rows(rows, limit, |a| a.name.clone());
    Ok(HttpResponse::Ok().json(AgentList { items: page.items, next_cursor: page.next_cursor }))
}

/// Creates an idle agent with a persona, optionally bound to one project.
#[utoipa::path(tag = "agents", security(("token" = [])), request_body = NewAgent, responses(
    (status = 201, body = Agent), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/agents")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    body: DeferredJson<NewAgent>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let agent = Agent::create(&mut conn, body, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Created().json(agent))
}

/// One agent.
#[utoipa::path(tag = "agents", security(("token" = [])),
    params(("id" = Uuid, Path, description = "agent id")), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody)))]
#[get("/agents/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(Agent::find(&mut conn, *id).await?))
}

/// Renames an agent or changes its persona or project (not while it works).
#[utoipa::path(tag = "agents", security(("token" = [])), request_body = AgentPatch,
    params(("id" = Uuid, Path, description = "agent id")), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[patch("/agents/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
    body: DeferredJson<AgentPatch>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let agent = Agent::update(&mut conn, *id, body, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Ok().json(agent))
}

/// Deletes an agent (not while it works).
#[utoipa::path(tag = "agents", security(("token" = [])),
    params(("id" = Uuid, Path, description = "agent id")), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/agents/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    Agent::delete(&mut conn, *id, auth.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Pauses an agent; a bead it is working on goes back to open without costing an attempt.
#[utoipa::path(tag = "agents", security(("token" = [])),
    params(("id" = Uuid, Path, description = "agent id")), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody)))]
#[post("/agents/{id}/pause")]
pub async fn pause(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    let agent = Agent::pause(&mut conn, *id, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Ok().json(agent))
}

/// Resumes a paused agent: it is idle and takes work again.
#[utoipa::path(tag = "agents", security(("token" = [])),
    params(("id" = Uuid, Path, description = "agent id")), responses(
    (status = 200, body = Agent), (status = 404, body = ErrorBody)))]
#[post("/agents/{id}/resume")]
pub async fn resume(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    let agent = Agent::resume(&mut conn, *id, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Ok().json(agent))
}
