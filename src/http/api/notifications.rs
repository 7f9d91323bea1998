//! The current user's notifications, and the projects they watch. Everyone signed in,
//! viewers included, manages their own.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::paging::check_limit;
use crate::http::sse;
use crate::notifications::{ListQuery, Notification, NotificationFollower, ProjectWatch};
use crate::users::Role;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only unread ones.
    pub unread: Option<bool>,
    /// 1 to 500; default 50.
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationList {
    pub items: Vec<Notification>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Marked {
    /// How many were unread.
    pub marked: usize,
}

fn cursor(raw: &Option<String>) -> Result<Option<i64>> {
    raw.as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                Error::bad_request("invalid_cursor", "the cursor is not one this API gave out")
            })
        })
        .transpose()
}

/// The current user's notifications, newest first.
#[utoipa::path(tag = "notifications", security(("token" = [])), params(ListParams), responses(
    (status = 200, body = NotificationList), (status = 400, body = ErrorBody),
    (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/notifications")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    p: web::Query<ListParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let q = ListQuery {
        unread_only: p.unread.unwrap_or(false),
        before: cursor(&p.cursor)?,
        limit: check_limit(p.limit)?,
    };
    let mut conn = state.pool.get().await?;
    let page = Notification::list(&mut conn, auth.user.id, &q).await?;
    Ok(HttpResponse::Ok()
        .json(NotificationList { items: page.items, next_cursor: page.next_cursor }))
}

/// Marks one of the current user's notifications read (again is fine).
#[utoipa::path(tag = "notifications", security(("token" = [])),
    params(("id" = i64, Path, description = "notification id")), responses(
    (status = 200, body = Notification), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[post("/notifications/{id}/read")]
pub async fn read(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<i64>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    let n = Notification::mark_read(&mut conn, auth.user.id, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(n))
}

/// Marks all the current user's notifications read.
#[utoipa::path(tag = "notifications", security(("token" = [])), responses(
    (status = 200, body = Marked), (status = 401, body = ErrorBody)))]
#[post("/notifications/read-all")]
pub async fn read_all(state: web::Data<AppState>, auth: Auth) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    let marked = Notification::mark_all_read(&mut conn, auth.user.id).await?;
    Ok(HttpResponse::Ok().json(Marked { marked }))
}

/// Watches a project: P0 beads filed there and its questions for a human notify you.
#[utoipa::path(tag = "notifications", security(("token" = [])),
    params(("id" = String, Path, description = "project id")), responses(
    (status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/projects/{id}/watch")]
pub async fn watch(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    ProjectWatch::add(&mut conn, &id, auth.user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Stops watching a project.
#[utoipa::path(tag = "notifications", security(("token" = [])),
    params(("id" = String, Path, description = "project id")), responses(
    (status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/projects/{id}/watch")]
pub async fn unwatch(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    ProjectWatch::remove(&mut conn, &id, auth.user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this `seq` (the `Last-Event-ID` header wins when both are given).
    pub last_event_id: Option<String>,
}

/// Server-sent events of the current user's notifications as they are raised: `event:
/// notification`, `id: <seq>`, `data:` the notification with `unread`, the user's unread
/// count. Resumes after `Last-Event-ID`; a `: keep-alive` comment every 15 s.
#[utoipa::path(tag = "notifications", security(("token" = [])), params(StreamParams),
    responses((status = 200, content_type = "text/event-stream", body = String),
    (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/notifications/stream")]
pub async fn stream(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    params: web::Query<StreamParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let after = sse::last_event_id(&req, params.last_event_id.as_deref())?;
    let wakers = &state.notification_wakers;
    let follower =
        NotificationFollower::start(state.pool.clone(), wakers, auth.user.id, after).await?;
    let guard = sse::ClientGuard::new(&state.sse_clients);
    let (opening, shutdown) = (sse::opening(None), state.streams.clone());
    Ok(sse::response(sse::stream(follower, opening, state.events.keep_alive, guard, shutdown)))
}

impl sse::Source for NotificationFollower {
    async fn next_chunk(&mut self) -> Result<Option<web::Bytes>> {
        Ok(self.next().await?.map(|r| sse::encode_as(Some(r.seq), "notification", &r.data)))
    }
}
