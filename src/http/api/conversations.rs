//! Pair-programming conversations: members start them and hand their beads back; anyone
//! signed in reads them.

use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chat::{Conversation, ConversationDetails, NewConversation};
use crate::db::Page;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::paging::check_limit;
use crate::users::Role;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationList {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationParams {
    /// Only this project's conversations.
    pub project: Option<String>,
    /// Only those on this bead.
    pub bead: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Conversations, newest first.
#[utoipa::path(tag = "chat", security(("token" = [])), params(ConversationParams), responses(
    (status = 200, body = ConversationList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/conversations")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    p: web::Query<ConversationParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let limit = check_limit(p.limit)?;
    let before = p
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::parse_str(c).map_err(|_| {
                Error::bad_request("invalid_cursor", "the cursor is not one this API gave out")
            })
        })
        .transpose()?;
    let mut conn = state.pool.get().await?;
    let rows =
        Conversation::list(&mut conn, p.project.as_deref(), p.bead.as_deref(), before, limit + 1)
            .await?;
    let page = Page::from_rows(rows, limit, |c| c.id.to_string());
    Ok(HttpResponse::Ok()
        .json(ConversationList { items: page.items, next_cursor: page.next_cursor }))
}

/// Starts a conversation with an agent, or with a persona, on a project (and a bead).
#[utoipa::path(tag = "chat", security(("token" = [])), request_body = NewConversation, responses(
    (status = 201, body = Conversation), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/conversations")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<NewConversation>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    let conversation = Conversation::start(&mut conn, body.into_inner(), auth.user.id).await?;
    // Pairing on a bead an agent was working frees the agent for other work.
    state.nudge.wake();
    Ok(HttpResponse::Created().json(conversation))
}

/// One conversation with its messages, oldest first.
#[utoipa::path(tag = "chat", security(("token" = [])),
    params(("id" = Uuid, Path, description = "conversation id")), responses(
    (status = 200, body = ConversationDetails), (status = 404, body = ErrorBody)))]
#[get("/conversations/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(Conversation::details(&mut conn, id.into_inner()).await?))
}

/// Gives the conversation's bead back to autonomous work: the bead is ready again (when
/// nothing else holds it), and the next run of it reads this conversation.
#[utoipa::path(tag = "chat", security(("token" = [])),
    params(("id" = Uuid, Path, description = "conversation id")), responses(
    (status = 200, body = Conversation), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/conversations/{id}/handoff")]
pub async fn handoff(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    let conversation = Conversation::handoff(&mut conn, id.into_inner(), auth.user.id).await?;
    state.nudge.wake();
    Ok(HttpResponse::Ok().json(conversation))
}
