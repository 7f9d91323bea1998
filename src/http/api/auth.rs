//! Logging in (for a token or a browser session), the current user, and the user's API
//! tokens.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::http::AppState;
use crate::http::auth::{Auth, Credential};
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::login as signin;
use crate::notifications::Notification;
use crate::users::sessions::Session;
use crate::users::tokens::{ApiToken, CreatedToken};
use crate::users::{Role, UserView};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Ask for an API token (the CLI does).
    #[serde(default)]
    pub token: bool,
    /// A name for the token; defaults to "login".
    #[serde(default)]
    pub token_name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// The API token, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Otherwise a session cookie was set: cookie-authenticated writes send this in
    /// `X-CSRF-Token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    pub user: UserView,
}

/// Logs in with a username and password: for an API token (`"token": true`, the CLI) or a
/// browser session (a cookie, and the CSRF token its writes need). A wrong username and a
/// wrong password give the same error after the same work.
#[utoipa::path(tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse),
    (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[post("/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, Error> {
    let body = body.into_inner();
    let user = signin::check_password(&state, &req, &body.username, body.password).await?;
    if !body.token {
        let (started, cookie) = signin::start_session(&state, &req, &user).await?;
        return Ok(HttpResponse::Ok().cookie(cookie).json(LoginResponse {
            token: None,
            csrf_token: Some(started.session.csrf_token),
            user: UserView::from(&user),
        }));
    }
    let mut conn = state.pool.get().await?;
    let name = body.token_name.unwrap_or_else(|| "login".into());
    let created = ApiToken::create(&mut conn, user.id, &name, None).await?;
    tracing::info!(user.id = %user.id, "user logged in (API token)");
    Ok(HttpResponse::Ok().json(LoginResponse {
        token: Some(created.secret),
        csrf_token: None,
        user: UserView::from(&user),
    }))
}

/// Ends this login: revokes the token the request came with, or ends the browser session
/// (and clears its cookie).
#[utoipa::path(tag = "auth", security(("token" = [])), responses(
    (status = 204), (status = 401, body = ErrorBody)))]
#[post("/auth/logout")]
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Auth,
) -> Result<HttpResponse, Error> {
    let mut conn = state.pool.get().await?;
    match &auth.credential {
        Credential::Token(id) => ApiToken::revoke(&mut conn, auth.user.id, *id).await?,
        Credential::Session(s) => {
            Session::end(&mut conn, &s.id_hash).await?;
            return Ok(HttpResponse::NoContent().cookie(signin::removal_cookie(&req)).finish());
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The current user, as `/auth/me` shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: UserView,
    pub unread_notifications: i64,
}

/// The current user, with how many unread notifications they have.
#[utoipa::path(tag = "auth", security(("token" = [])), responses(
    (status = 200, body = Me), (status = 401, body = ErrorBody)))]
#[get("/auth/me")]
pub async fn me(state: web::Data<AppState>, auth: Auth) -> Result<HttpResponse, Error> {
    let mut conn = state.pool.get().await?;
    let unread_notifications = Notification::unread_count(&mut conn, auth.user.id).await?;
    Ok(HttpResponse::Ok().json(Me { user: UserView::from(&auth.user), unread_notifications }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    pub items: Vec<ApiToken>,
    pub next_cursor: Option<String>,
}

/// The current user's API tokens (never their secrets).
#[utoipa::path(tag = "tokens", security(("token" = [])), responses(
    (status = 200, body = TokenList), (status = 401, body = ErrorBody)))]
#[get("/tokens")]
pub async fn list_tokens(state: web::Data<AppState>, auth: Auth) -> Result<HttpResponse, Error> {
    let mut conn = state.pool.get().await?;
    let items = ApiToken::list_for(&mut conn, auth.user.id).await?;
    Ok(HttpResponse::Ok().json(TokenList { items, next_cursor: None }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates a token for the current user; the secret is in this response only.
#[utoipa::path(tag = "tokens", security(("token" = [])), request_body = NewToken, responses(
    (status = 201, body = CreatedToken), (status = 422, body = ErrorBody)))]
#[post("/tokens")]
pub async fn create_token(
    state: web::Data<AppState>,
    auth: Auth,
    body: DeferredJson<NewToken>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Viewer)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let created = ApiToken::create(&mut conn, auth.user.id, &body.name, body.expires_at).await?;
    Ok(HttpResponse::Created().json(created))
}

/// Revokes one of the current user's tokens.
#[utoipa::path(tag = "tokens", security(("token" = [])),
    params(("id" = Uuid, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/tokens/{id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    let mut conn = state.pool.get().await?;
    ApiToken::revoke(&mut conn, auth.user.id, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
