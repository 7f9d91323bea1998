//! Beads: filing, listing, the ready and blocked views, editing and status changes.

use actix_web::{HttpResponse, get, patch, post, web};
use serde::{Deserialize, Serialize};

use crate::beads::{
    Bead, BeadDetails, BeadFilter, BeadId, BeadPatch, BeadStatus, BeadType, BeadView,
    BlockedReason, Cursor, HeldBead, NewBead, Priority, StatusChange,
};
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::paging::check_limit;
use crate::users::Role;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BeadList {
    pub items: Vec<BeadView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeldList {
    pub items: Vec<HeldBead>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub project: Option<String>,
    /// Comma-separated statuses, e.g. `open,blocked`.
    pub status: Option<String>,
    /// Comma-separated priorities, `0`-`4` or `P0`-`P4`.
    pub priority: Option<String>,
    /// Comma-separated types.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub bead_type: Option<String>,
    pub label: Option<String>,
    /// Agent id.
    pub assignee: Option<uuid::Uuid>,
    pub persona: Option<String>,
    /// Only children of this bead.
    pub parent: Option<String>,
    /// Text in the title or description, or an exact id.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Parses a comma-separated list of enum values, naming the bad one.
fn parse_list<T: std::str::FromStr>(
    raw: &Option<String>,
    code: &'static str,
    what: &str,
) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<T>().map_err(|e| Error::invalid(code, format!("{what}: {e}"))))
        .collect()
}

fn cursor(raw: &Option<String>) -> Result<Option<Cursor>> {
    raw.as_deref().map(Cursor::decode).transpose()
}

fn views(page: crate::beads::Page<Bead>) -> BeadList {
    BeadList {
        items: page.items.into_iter().map(BeadView::from).collect(),
        next_cursor: page.next_cursor,
    }
}

/// Beads matching the filters, in dispatch order (priority, then age).
#[utoipa::path(tag = "beads", security(("token" = [])), params(ListParams), responses(
    (status = 200, body = BeadList), (status = 422, body = ErrorBody)))]
#[get("/beads")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    p: web::Query<ListParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let filter = BeadFilter {
        project: p.project.clone(),
        statuses: parse_list::<BeadStatus>(&p.status, "invalid_status", "status")?,
        priorities: parse_list::<String>(&p.priority, "invalid_priority", "priority")?
            .iter()
            .map(|s| Priority::parse(s))
            .collect::<Result<_>>()?,
        types: parse_list::<BeadType>(&p.bead_type, "invalid_type", "type")?,
        label: p.label.clone(),
        assignee: p.assignee,
        persona: p.persona.clone(),
        text: p.q.clone(),
        parent: p.parent.clone(),
    };
    let limit = check_limit(p.limit)?;
    let mut conn = state.pool.get().await?;
    let page = Bead::list(&mut conn, &filter, cursor(&p.cursor)?.as_ref(), limit).await?;
    Ok(HttpResponse::Ok().json(views(page)))
}

/// Files a bead. `depends_on` adds `blocks` dependencies; `parent` makes it a child.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body = NewBead, responses(
    (status = 201, body = BeadView), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/beads")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    body: DeferredJson<NewBead>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let bead = Bead::create(&mut conn, body, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Created().json(BeadView::from(bead)))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueParams {
    pub project: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Ready beads in dispatch order.
#[utoipa::path(tag = "beads", security(("token" = [])), params(QueueParams), responses(
    (status = 200, body = BeadList)))]
#[get("/beads/ready")]
pub async fn ready(
    state: web::Data<AppState>,
    auth: Auth,
    p: web::Query<QueueParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let limit = check_limit(p.limit)?;
    let mut conn = state.pool.get().await?;
    let page =
        Bead::ready(&mut conn, p.project.as_deref(), cursor(&p.cursor)?.as_ref(), limit).await?;
    Ok(HttpResponse::Ok().json(views(page)))
}

/// Beads that are not ready, each with what holds it.
#[utoipa::path(tag = "beads", security(("token" = [])), params(QueueParams), responses(
    (status = 200, body = HeldList)))]
#[get("/beads/blocked")]
pub async fn blocked(
    state: web::Data<AppState>,
    auth: Auth,
    p: web::Query<QueueParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let limit = check_limit(p.limit)?;
    let mut conn = state.pool.get().await?;
    let page = Bead::not_ready(&mut conn, p.project.as_deref(), cursor(&p.cursor)?.as_ref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(HeldList { items: page.items, next_cursor: page.next_cursor }))
}

/// A path id that cannot be a bead id names no bead.
pub fn bead_id(raw: &str) -> Result<BeadId> {
    BeadId::parse(raw).ok_or_else(|| Error::not_found(format!("bead {raw:?}")))
}

/// A bead with its dependencies, dependents, comments, runs and history.
#[utoipa::path(tag = "beads", security(("token" = [])),
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = BeadDetails), (status = 404, body = ErrorBody)))]
#[get("/beads/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let id = bead_id(&id)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(Bead::details(&mut conn, id.as_str()).await?))
}

/// Edits a bead. `version` must be the current one, or the answer is 409 `stale_version`.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body = BeadPatch,
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = BeadView), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/beads/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<BeadPatch>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let id = bead_id(&id)?;
    let mut conn = state.pool.get().await?;
    let bead = Bead::patch(&mut conn, id.as_str(), body, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Ok().json(BeadView::from(bead)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: Option<String>,
    /// When given, the change is refused (409) unless it is the current version.
    pub version: Option<i32>,
}

/// A status change by a caller whose role has been checked.
async fn change(
    state: &AppState,
    auth: &Auth,
    id: &str,
    change: StatusChange,
    version: Option<i32>,
) -> Result<HttpResponse> {
    let id = bead_id(id)?;
    let mut conn = state.pool.get().await?;
    let bead = Bead::change_status(&mut conn, id.as_str(), change, version, auth.actor()).await?;
    state.nudge.wake();
    Ok(HttpResponse::Ok().json(BeadView::from(bead)))
}

/// Closes a bead; refused while it has children that are not closed.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body(content = Option<ReasonBody>, content_type = "application/json"),
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = BeadView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/beads/{id}/close")]
pub async fn close(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<ReasonBody>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse_or_default().await?;
    change(&state, &auth, &id, StatusChange::Close { reason: body.reason }, body.version).await
}

/// Reopens a closed, blocked or deferred bead and resets its attempts.
#[utoipa::path(tag = "beads", security(("token" = [])), request_body(content = Option<ReasonBody>, content_type = "application/json"),
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = BeadView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/beads/{id}/reopen")]
pub async fn reopen(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<ReasonBody>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse_or_default().await?;
    change(&state, &auth, &id, StatusChange::Reopen { reason: body.reason }, body.version).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    /// Why it is blocked: what a person must decide or do.
    pub reason: String,
    pub version: Option<i32>,
}

/// Blocks a bead by hand (`blocked_reason: manual`).
#[utoipa::path(tag = "beads", security(("token" = [])), request_body = BlockBody,
    params(("id" = String, Path, description = "bead id")), responses(
    (status = 200, body = BeadView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
#[post("/beads/{id}/block")]
pub async fn block(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: DeferredJson<BlockBody>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    if body.reason.trim().is_empty() {
        return Err(Error::invalid("reason_required", "say why the bead is blocked"));
    }
    let note = Some(body.reason.trim().to_owned());
    change(
        &state,
        &auth,
        &id,
        StatusChange::Block { reason: BlockedReason::Manual, note },
        body.version,
    )
    .await
}
