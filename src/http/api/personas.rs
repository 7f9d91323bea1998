//! Personas: anyone signed in reads them; admins reload them from disk.

use actix_web::{HttpResponse, get, post, web};
use serde::Serialize;

use crate::error::Result;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::personas::{LoadReport, Persona};
use crate::users::Role;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonaList {
    pub items: Vec<Persona>,
    pub next_cursor: Option<String>,
}

/// Every persona, by name.
#[utoipa::path(tag = "personas", security(("token" = [])), responses(
    (status = 200, body = PersonaList), (status = 401, body = ErrorBody)))]
#[get("/personas")]
pub async fn list(state: web::Data<AppState>, auth: Auth) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    let items = Persona::list(&mut conn).await?;
    Ok(HttpResponse::Ok().json(PersonaList { items, next_cursor: None }))
}

/// One persona with its instructions.
#[utoipa::path(tag = "personas", security(("token" = [])),
    params(("name" = String, Path, description = "persona name")), responses(
    (status = 200, body = Persona), (status = 404, body = ErrorBody)))]
#[get("/personas/{name}")]
pub async fn show(
    state: web::Data<AppState>,
    auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(Persona::find(&mut conn, &name).await?))
}

/// Re-reads the personas directory. Malformed files are listed with path and line and
/// skipped; the others are stored.
#[utoipa::path(tag = "personas", security(("token" = [])), responses(
    (status = 200, body = LoadReport), (status = 403, body = ErrorBody)))]
#[post("/personas/reload")]
pub async fn reload(state: web::Data<AppState>, auth: Auth) -> Result<HttpResponse> {
    auth.require(Role::Admin)?;
    let mut conn = state.pool.get().await?;
    let report = Persona::load(&mut conn, state.personas_dir.as_deref()).await?;
    Ok(HttpResponse::Ok().json(report))
}
