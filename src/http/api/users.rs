//! User administration (admins only).

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::Page;
use crate::error::Error;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::http::error::ErrorBody;
use crate::http::extract::DeferredJson;
use crate::http::paging::PageParams;
use crate::users::{Role, User, UserView, Username};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserList {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

/// Every user, by username.
#[utoipa::path(tag = "users", security(("token" = [])), params(PageParams), responses(
    (status = 200, body = UserList), (status = 403, body = ErrorBody)))]
#[get("/users")]
pub async fn list(
    state: web::Data<AppState>,
    auth: Auth,
    page: web::Query<PageParams>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Admin)?;
    let limit = page.limit()?;
    let mut conn = state.pool.get().await?;
    let rows = User::list(&mut conn, page.cursor.as_deref(), limit + 1).await?;
    let page = Page::from_rows(rows, limit, |u| u.username.clone()).map(|u| UserView::from(&u));
    Ok(HttpResponse::Ok().json(UserList { items: page.items, next_cursor: page.next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
}

/// Creates a user.
#[utoipa::path(tag = "users", security(("token" = [])), request_body = NewUser, responses(
    (status = 201, body = UserView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/users")]
pub async fn create(
    state: web::Data<AppState>,
    auth: Auth,
    body: DeferredJson<NewUser>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Admin)?;
    let body = body.parse().await?;
    let username = Username::parse(&body.username)?;
    let mut conn = state.pool.get().await?;
    let user = User::create(&mut conn, &username, &body.password, body.role).await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub password: Option<String>,
}

/// Changes a user's role or password. The last admin cannot be demoted.
#[utoipa::path(tag = "users", security(("token" = [])), request_body = UserPatch,
    params(("id" = Uuid, Path, description = "user id")), responses(
    (status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[patch("/users/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
    body: DeferredJson<UserPatch>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Admin)?;
    let body = body.parse().await?;
    let mut conn = state.pool.get().await?;
    let user =
        User::update(&mut conn, id.into_inner(), body.role, body.password.as_deref()).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Deletes a user and their tokens. The last admin cannot be deleted.
#[utoipa::path(tag = "users", security(("token" = [])),
    params(("id" = Uuid, Path, description = "user id")), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/users/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Error> {
    auth.require(Role::Admin)?;
    let mut conn = state.pool.get().await?;
    User::delete(&mut conn, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
