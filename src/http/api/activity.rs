//! The activity feed: pages of history, and the live stream.

use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::activity::{Activity, Follower, ListQuery};
use crate::error::{Error, Result};
use crate::events::{Filter, KindFilter};
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::paging::check_limit;
use crate::http::sse;
use crate::users::Role;

/// Which events: every parameter given must match.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    pub project: Option<String>,
    pub bead: Option<String>,
    /// Events an agent caused.
    pub agent: Option<Uuid>,
    /// A kind (`bead.closed`) or a family (`bead`, `bead.*`).
    pub kind: Option<String>,
}

impl FeedParams {
    fn filter(&self) -> Result<Filter> {
        let kind = match self.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(
                KindFilter::parse_for_feed(k)
                    .map_err(|e| Error::invalid("unknown_kind", e.to_string()))?,
            ),
        };
        let text = |v: &Option<String>| {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        Ok(Filter { project: text(&self.project), bead: text(&self.bead), agent: self.agent, kind })
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only events at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// 1 to 500; default 50.
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivityList {
    pub items: Vec<Activity>,
    pub next_cursor: Option<String>,
}

/// The history, newest first. Run steps are not in it (they are streamed live); a run's
/// start and end are.
#[utoipa::path(tag = "activity", security(("token" = [])), params(FeedParams, ListParams),
    responses((status = 200, body = ActivityList), (status = 400, body = ErrorBody),
    (status = 401, body = ErrorBody)))]
#[get("/activity")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    feed: web::Query<FeedParams>,
    page: web::Query<ListParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let limit = check_limit(page.limit)?;
    let before = match page.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            Error::bad_request("invalid_cursor", "the cursor is not one this API gave out")
        })?),
    };
    let q = ListQuery { filter: feed.filter()?, since: page.since, before, limit };
    let items = Activity::list(&mut *state.pool.get().await?, &q).await?;
    let next_cursor =
        (items.len() as i64 == limit).then(|| items.last().map(|a| a.id.to_string())).flatten();
    Ok(HttpResponse::Ok().json(ActivityList { items, next_cursor }))
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this event id (the `Last-Event-ID` header wins when both are given).
    pub last_event_id: Option<String>,
}

/// Server-sent events: `event: <kind>`, `id: <activity id>` (none for live-only kinds such as
/// `run.step`), `data: <event JSON>`. Resumes after `Last-Event-ID` with nothing missed or
/// repeated; a `: keep-alive` comment every 15 s.
#[utoipa::path(tag = "activity", security(("token" = [])), params(FeedParams, StreamParams),
    responses((status = 200, content_type = "text/event-stream", body = String),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/activity/stream")]
pub async fn stream(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    feed: web::Query<FeedParams>,
    params: web::Query<StreamParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let after = sse::last_event_id(&req, params.last_event_id.as_deref())?;
    let follower =
        Follower::start(state.pool.clone(), state.bus.clone(), feed.filter()?, after).await?;
    let guard = sse::ClientGuard::new(&state.sse_clients);
    let opening = sse::opening(Some(follower.resume_id()));
    let shutdown = state.streams.clone();
    Ok(sse::response(sse::stream(follower, opening, state.events.keep_alive, guard, shutdown)))
}

impl sse::Source for Follower {
    async fn next_chunk(&mut self) -> Result<Option<web::Bytes>> {
        Ok(self.next().await?.map(|e| sse::encode(&e)))
    }
}
