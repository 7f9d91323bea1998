//! Pair-programming conversations: members start them, post messages, stop replies and hand
//! their beads back; anyone signed in reads them and follows their stream.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chat::{
    ChatEvent, ChatFollower, Conversation, ConversationDetails, NewConversation, Posted,
};
use crate::db::Page;
use crate::error::Result;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::paging::{check_limit, uuid_cursor};
use crate::http::sse;
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
    let before = uuid_cursor(p.cursor.as_deref())?;
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
    body: DeferredJson<NewConversation>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let conversation = Conversation::start(&mut conn, body, auth.user.id).await?;
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

/// A message a person posts.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub body: String,
}

/// Stores the person's message and starts the agent's reply, which streams on
/// `/conversations/{id}/stream` after `event_id`. 409 while a reply streams.
#[utoipa::path(tag = "chat", security(("token" = [])), request_body = NewMessage,
    params(("id" = Uuid, Path, description = "conversation id")), responses(
    (status = 202, body = Posted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/conversations/{id}/messages")]
pub async fn post_message(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
    body: DeferredJson<NewMessage>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let posted = state.chat.post(&mut conn, id.into_inner(), &body.body, auth.user.id).await?;
    Ok(HttpResponse::Accepted().json(posted))
}

/// Stops the reply that is streaming; it ends `stopped`, keeping what it said.
#[utoipa::path(tag = "chat", security(("token" = [])),
    params(("id" = Uuid, Path, description = "conversation id")), responses(
    (status = 200, body = crate::chat::ChatMessage), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/conversations/{id}/stop")]
pub async fn stop(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse> {
    auth.require(Role::Member)?;
    let mut conn = state.pool.get().await?;
    Ok(HttpResponse::Ok().json(state.chat.stop(&mut conn, id.into_inner()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this event id (the `Last-Event-ID` header wins when both are given);
    /// without either, the stream starts with what comes next.
    pub last_event_id: Option<String>,
}

/// Server-sent events of the conversation: `message`, `delta` `{text}`, `action`
/// `{action}`, `action_result` `{ok, output}`, `done` `{message_id, state, tokens}`,
/// `error` `{code, message}`; each with its `id`, resumable after `Last-Event-ID`.
#[utoipa::path(tag = "chat", security(("token" = [])),
    params(("id" = Uuid, Path, description = "conversation id"), StreamParams),
    responses((status = 200, content_type = "text/event-stream", body = String),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/conversations/{id}/stream")]
pub async fn stream(
    state: web::Data<AppState>,
    auth: Auth,
    req: HttpRequest,
    id: web::Path<Uuid>,
    params: web::Query<StreamParams>,
) -> Result<HttpResponse> {
    auth.require(Role::Viewer)?;
    let id = id.into_inner();
    let after = sse::last_event_id(&req, params.last_event_id.as_deref())?;
    // Unknown conversations are a 404, not an empty stream.
    Conversation::find(&mut *state.pool.get().await?, id).await?;
    let follower = ChatFollower::start(state.pool.clone(), state.chat.wakers(), id, after).await?;
    let guard = sse::ClientGuard::new(&state.sse_clients);
    let (opening, shutdown) = (sse::opening(None), state.streams.clone());
    Ok(sse::response(sse::stream(follower, opening, state.events.keep_alive, guard, shutdown)))
}

impl sse::Source for ChatFollower {
    async fn next_chunk(&mut self) -> Result<Option<web::Bytes>> {
        Ok(self.next().await?.map(|e: ChatEvent| {
            let mut data = e.data;
            if let Some(map) = data.as_object_mut() {
                map.entry("message_id").or_insert(e.message_id.into());
            }
            sse::encode_as(Some(e.id), &e.kind, &data)
        }))
    }
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
