//! Schedules (recurring work): members create and change them; anyone signed in reads them.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::Page;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::paging::check_limit;
use crate::schedules::{FireOutcome, NewSchedule, Schedule, SchedulePatch, ScheduleView};
use crate::users::Role;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    pub items: Vec<ScheduleView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleParams {
    /// Only this project's schedules.
    pub project: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn cursor(raw: Option<&str>) -> Result<Option<Uuid>> {
    raw.map(|c| {
        Uuid::parse_str(c)
            .map_err(|_| Error::invalid("invalid_cursor", "not a cursor from this list"))
    })
    .transpose()
}

/// Schedules, oldest first.
#[utoipa::path(tag = "schedules", security(("token" = [])), params(ScheduleParams), responses(
    (status = 200, body = ScheduleList), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/schedules")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    p: web::Query<ScheduleParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let limit = check_limit(p.limit)?;
    let after = cursor(p.cursor.as_deref())?;
    let mut conn = state.pool.get().await?;
    let rows = Schedule::list(&mut conn, p.project.as_deref(), after, limit + 1).await?;
    let page = Page::from_rows(rows, limit, |s| s.id.to_string()).map(ScheduleView::from);
    Ok(HttpResponse::Ok().json(ScheduleList { items: page.items, next_cursor: page.next_cursor }))
}

/// Creates a schedule: a cron expression (five fields, UTC) and the bead it files.
#[utoipa::path(tag = "schedules", security(("token" = [])), request_body = NewSchedule, responses(
    (status = 201, body = ScheduleView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/schedules")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    body: DeferredJson<NewSchedule>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let schedule = Schedule::create(&mut conn, body, auth.actor()).await?;
    Ok(HttpResponse::Created().json(ScheduleView::from(schedule)))
}

/// One schedule.
#[utoipa::path(tag = "schedules", security(("token" = [])),
    params(("id" = Uuid, Path, description = "schedule id")), responses(
    (status = 200, body = ScheduleView), (status = 404, body = ErrorBody)))]
#[get("/schedules/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(Schedule::find(&mut conn, *id).await?)))
}

/// Changes the expression, the bead template (replaced whole) or `enabled`.
#[utoipa::path(tag = "schedules", security(("token" = [])), request_body = SchedulePatch,
    params(("id" = Uuid, Path, description = "schedule id")), responses(
    (status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/schedules/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
    body: DeferredJson<SchedulePatch>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let schedule = Schedule::update(&mut conn, *id, body, auth.actor()).await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(schedule)))
}

/// Deletes a schedule; the beads it filed stay.
#[utoipa::path(tag = "schedules", security(("token" = [])),
    params(("id" = Uuid, Path, description = "schedule id")), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
#[delete("/schedules/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    Schedule::delete(&mut conn, *id, auth.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What firing a schedule by hand did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FireResult {
    pub schedule: Uuid,
    /// `filed`, `still_open` (a bead it filed is not closed yet) or `failed`.
    pub outcome: &'static str,
    /// The bead filed, or the one still open.
    pub bead: Option<String>,
}

/// Fires a schedule now, due or not: files its bead unless one it filed is still open.
#[utoipa::path(tag = "schedules", security(("token" = [])),
    params(("id" = Uuid, Path, description = "schedule id")), responses(
    (status = 200, body = FireResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/schedules/{id}/run")]
pub async fn run(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    let fired = Schedule::fire_now(&mut conn, *id).await?;
    let (outcome, bead) = match fired.outcome {
        FireOutcome::Filed(b) => {
            state.nudge.wake();
            ("filed", Some(b))
        }
        FireOutcome::StillOpen(b) => ("still_open", Some(b)),
        FireOutcome::Failed => ("failed", None),
    };
    Ok(HttpResponse::Ok().json(FireResult { schedule: fired.schedule, outcome, bead }))
}
