//! Landing: reviews of finished beads (`approve`, `request-changes`) and a project's merge
//! queue as it stands.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::beads::{Bead, BeadView, Decision};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::landing::QueueView;
use crate::projects::Project;
use crate::users::Role;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Said on the bead with the approval.
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangesBody {
    /// What should change: the bead's next run reads it.
    pub body: String,
}

/// Approves a bead in `review`: its work enters the project's landing queue.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body(content = Option<ApproveBody>, content_type = "application/json"),
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = BeadView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/beads/{id}/approve")]
pub async fn approve(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<ApproveBody>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse_or_default().await?;
    decide(&state, &auth, &id, Decision::Approve { comment: body.comment }).await
}

/// Requests changes to a bead in `review`: it goes back to its agent with the body as a
/// comment (blocked `needs_human` once the project's review rounds are spent).
#[utoipa::path(tag = "beads", security(("token" = [])), request_body = ChangesBody,
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = BeadView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/beads/{id}/request-changes")]
pub async fn request_changes(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<ChangesBody>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    decide(&state, &auth, &id, Decision::RequestChanges { body: body.body }).await
}

async fn decide(
    state: &AppState,
    auth: &Auth,
    id: &str,
    decision: Decision,
) -> Result<HttpResponse> {
    let id = super::beads::bead_id(id)?;
    let mut conn = state.pool.get().await?;
    let bead = Bead::review(&mut conn, id.as_str(), decision, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Ok().json(BeadView::from(bead)))
}

/// The project's landing queue: beads waiting (in the order they are served) and in
/// review, the check under way, and the last checks.
#[utoipa::path(tag = "projects", security(("token" = [])),
    params(("id" = String, Path, description = "project id")), responses(
    (status = 200, body = QueueView), (status = 404, body = ErrorBody)))]
#[get("/projects/{id}/queue")]
pub async fn queue(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    Project::find(&mut conn, &id).await?;
    Ok(HttpResponse::Ok().json(QueueView::load(&mut conn, &id).await?))
}
