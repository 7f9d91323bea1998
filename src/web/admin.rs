//! People and access: the admin's users page (create, change role, reset a password,
//! delete) and everyone's own API tokens (created with the secret shown once, revoked).

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, Nav, PageError, Viewer, html, see_other};
use super::view::ago;
use crate::error::Error;
use crate::users::tokens::ApiToken;
use crate::users::{Role, User, Username};

pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub since: String,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserRow>,
    roles: &'static [Role],
    error: Option<String>,
    notice: Option<String>,
    username: String,
}

async fn users_page(
    viewer: &Viewer,
    error: Option<Error>,
    notice: Option<String>,
    username: String,
) -> Result<HttpResponse, PageError> {
    viewer.require(Role::Admin)?;
    let layout = viewer.layout("Users", Nav::Admin).await?;
    let mut conn = viewer.state.pool.get().await?;
    let users = User::list(&mut conn, None, 1000)
        .await?
        .into_iter()
        .map(|u| UserRow {
            me: u.id == viewer.user.id,
            id: u.id,
            username: u.username,
            role: u.role,
            since: ago(u.created_at),
        })
        .collect();
    let status = super::page::status_of(error.as_ref());
    let page = UsersPage {
        layout,
        users,
        roles: &[Role::Viewer, Role::Member, Role::Admin],
        error: error.map(|e| e.to_string()),
        notice,
        username,
    };
    Ok(html(status, page.render()))
}

/// `GET /admin/users`.
pub async fn users(viewer: Viewer) -> Result<HttpResponse, PageError> {
    users_page(&viewer, None, None, String::new()).await
}

#[derive(Debug, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

fn role(text: &str) -> Result<Role, Error> {
    text.parse::<Role>()
        .map_err(|_| Error::invalid("invalid_role", "a role is viewer, member or admin"))
}

/// Re-renders the users page with a refused change's reason, or fails for anything else.
async fn refused(viewer: &Viewer, e: Error, username: String) -> Result<HttpResponse, PageError> {
    if super::page::is_refusal(&e) {
        users_page(viewer, Some(e), None, username).await
    } else {
        Err(e.into())
    }
}

/// `POST /admin/users`: a new account.
pub async fn create_user(
    viewer: Viewer,
    form: web::Form<UserForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Admin)?;
    let created = async {
        let name = Username::parse(&form.username)?;
        let role = role(&form.role)?;
        User::create(&mut *viewer.state.pool.get().await?, &name, &form.password, role).await
    }
    .await;
    match created {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(e) => refused(&viewer, e, form.username.clone()).await,
    }
}

/// `POST /admin/users/{id}/{action}`: `role` (with `role`), `password` (with `password`) or
/// `delete`.
pub async fn change_user(
    viewer: Viewer,
    path: web::Path<(Uuid, String)>,
    form: web::Form<UserForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Admin)?;
    let (id, action) = path.into_inner();
    let mut conn = viewer.state.pool.get().await?;
    let done: Result<(), Error> = match action.as_str() {
        "role" => match role(&form.role) {
            Ok(r) => User::update(&mut conn, id, Some(r), None).await.map(drop),
            Err(e) => Err(e),
        },
        "password" => User::update(&mut conn, id, None, Some(&form.password)).await.map(drop),
        "delete" => User::delete(&mut conn, id).await,
        _ => return Err(Error::not_found("action").into()),
    };
    drop(conn);
    match done {
        Ok(()) if id == viewer.user.id && action != "role" => Ok(see_other("/login")),
        // An admin who gave up the role may no longer see this page.
        Ok(()) if id == viewer.user.id => Ok(see_other("/")),
        Ok(()) => Ok(see_other("/admin/users")),
        Err(e) => refused(&viewer, e, String::new()).await,
    }
}

pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<TokenRow>,
    /// A token just created: its secret, shown this once.
    created: Option<(String, String)>,
    error: Option<String>,
}

fn when(t: Option<DateTime<Utc>>, none: &str) -> String {
    t.map_or_else(|| none.to_owned(), ago)
}

async fn tokens_page(
    viewer: &Viewer,
    created: Option<(String, String)>,
    error: Option<Error>,
) -> Result<HttpResponse, PageError> {
    let layout = viewer.layout("API tokens", Nav::None).await?;
    let mut conn = viewer.state.pool.get().await?;
    let tokens = ApiToken::list_for(&mut conn, viewer.user.id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created: ago(t.created_at),
            last_used: when(t.last_used_at, "never"),
            expires: t
                .expires_at
                .map_or_else(|| "never".into(), |e| e.format("%Y-%m-%d").to_string()),
        })
        .collect();
    let status = super::page::status_of(error.as_ref());
    let page = TokensPage { layout, tokens, created, error: error.map(|e| e.to_string()) };
    Ok(html(status, page.render()))
}

/// `GET /account/tokens`.
pub async fn tokens(viewer: Viewer) -> Result<HttpResponse, PageError> {
    tokens_page(&viewer, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// Days until it expires; empty: never.
    #[serde(default)]
    days: String,
}

/// `POST /account/tokens`: a new token, its secret on the page this once (never in a URL,
/// so the response is the page itself rather than a redirect).
pub async fn create_token(
    viewer: Viewer,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let expires = match form.days.trim() {
        "" => Ok(None),
        d => d
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .map(|d| Some(Utc::now() + chrono::Duration::days(d)))
            .ok_or_else(|| Error::invalid("invalid_expiry", "expiry is 1 to 3650 days, or empty")),
    };
    let created = match expires {
        Ok(expires) => {
            ApiToken::create(
                &mut *viewer.state.pool.get().await?,
                viewer.user.id,
                &form.name,
                expires,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(t) => {
            let mut res = tokens_page(&viewer, Some((t.token.name, t.secret)), None).await?;
            res.headers_mut().insert(
                actix_web::http::header::CACHE_CONTROL,
                actix_web::http::header::HeaderValue::from_static("no-store"),
            );
            Ok(res)
        }
        Err(e @ Error::Invalid { .. }) => tokens_page(&viewer, None, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn revoke_token(
    viewer: Viewer,
    id: web::Path<Uuid>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    ApiToken::revoke(&mut *viewer.state.pool.get().await?, viewer.user.id, id.into_inner()).await?;
    Ok(see_other("/account/tokens"))
}
