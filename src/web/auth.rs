//! Getting in and out: the login page, the one-time setup page that creates the first
//! admin, and logout. Before there is a session, forms are protected by a double-submit
//! token: a random value in a strict cookie that the form must repeat.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::assets;
use super::page::{PageError, Viewer, html, safe_next, see_other};
use crate::error::Error;
use crate::http::AppState;
use crate::http::auth::session_of;
use crate::http::login;
use crate::users::sessions::Session;
use crate::users::{User, Username, secret};

/// The cookie holding the pre-session form token.
const FORM_COOKIE: &str = "loom_form";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    username: String,
    error: Option<String>,
    csrf: String,
    assets: &'static str,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    username: String,
    error: Option<String>,
    csrf: String,
    assets: &'static str,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// A form token for a visitor without a session: the one their cookie already holds (so
/// two open tabs both work), or a new one.
fn form_token(req: &HttpRequest) -> Result<(String, Option<Cookie<'static>>), Error> {
    if let Some(c) = req.cookie(FORM_COOKIE).filter(|c| c.value().len() == 43) {
        return Ok((c.value().to_owned(), None));
    }
    let token = secret::random()?;
    let cookie = Cookie::build(FORM_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .finish();
    Ok((token, Some(cookie)))
}

fn form_token_matches(req: &HttpRequest, presented: &str) -> bool {
    req.cookie(FORM_COOKIE).is_some_and(|c| secret::same(c.value(), presented))
}

fn with_cookie(mut res: HttpResponse, cookie: Option<Cookie<'static>>) -> HttpResponse {
    if let Some(c) = cookie
        && let Err(e) = res.add_cookie(&c)
    {
        tracing::warn!(error = %e, "could not set a cookie");
    }
    res
}

async fn has_users(state: &AppState) -> Result<bool, Error> {
    Ok(User::count(&mut *state.pool.get().await?).await? > 0)
}

/// `GET /login`: the form, or straight on when already logged in (or to the setup page
/// while there is nobody to log in as).
pub async fn login_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, PageError> {
    let next = safe_next(query.next.as_deref().unwrap_or("/")).to_owned();
    if session_of(&state, &req).await?.is_some() {
        return Ok(see_other(&next));
    }
    if !has_users(&state).await? {
        return Ok(see_other("/setup"));
    }
    let (csrf, cookie) = form_token(&req)?;
    let page =
        LoginPage { next, username: String::new(), error: None, csrf, assets: assets::version() };
    Ok(with_cookie(html(StatusCode::OK, page.render()), cookie))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: a new session and on to where the person was going; on failure the form
/// again, with one message whatever was wrong.
pub async fn login_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let next = safe_next(&form.next).to_owned();
    if !form_token_matches(&req, &form.csrf) {
        return Err(Error::csrf().into());
    }
    let user = match login::check_password(&state, &req, &form.username, form.password).await {
        Ok(user) => user,
        Err(e @ (Error::Unauthenticated(_) | Error::RateLimited(_))) => {
            let status = actix_web::ResponseError::status_code(&e);
            let page = LoginPage {
                next,
                username: form.username,
                error: Some(e.to_string()),
                csrf: form.csrf,
                assets: assets::version(),
            };
            return Ok(html(status, page.render()));
        }
        Err(e) => return Err(e.into()),
    };
    let (_, cookie) = login::start_session(&state, &req, &user).await?;
    Ok(with_cookie(see_other(&next), Some(cookie)))
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /logout`: ends this session.
pub async fn logout(
    req: HttpRequest,
    viewer: Viewer,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    Session::end(&mut *viewer.state.pool.get().await?, &viewer.session.id_hash).await?;
    Ok(with_cookie(see_other("/login"), Some(login::removal_cookie(&req))))
}

/// `GET /setup`: only while no user exists; afterwards there is no such page.
pub async fn setup_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PageError> {
    if has_users(&state).await? {
        return Err(Error::not_found("page").into());
    }
    let (csrf, cookie) = form_token(&req)?;
    let page = SetupPage { username: String::new(), error: None, csrf, assets: assets::version() };
    Ok(with_cookie(html(StatusCode::OK, page.render()), cookie))
}

#[derive(Deserialize)]
pub struct SetupForm {
    username: String,
    password: String,
    confirm: String,
    csrf: String,
}

/// `POST /setup`: creates the first admin and logs them in.
pub async fn setup_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, PageError> {
    // Gone once anyone exists: before any work (a password hash is costly).
    if has_users(&state).await? {
        return Err(Error::not_found("page").into());
    }
    let form = form.into_inner();
    if !form_token_matches(&req, &form.csrf) {
        return Err(Error::csrf().into());
    }
    let created = async {
        let name = Username::parse(&form.username)?;
        if form.password != form.confirm {
            return Err(Error::invalid("password_mismatch", "the two passwords differ"));
        }
        User::create_first_admin(&mut *state.pool.get().await?, &name, &form.password).await
    }
    .await;
    let user = match created {
        Ok(user) => user,
        Err(e @ Error::Invalid { .. }) => {
            let page = SetupPage {
                username: form.username,
                error: Some(e.to_string()),
                csrf: form.csrf,
                assets: assets::version(),
            };
            return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, page.render()));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user.id = %user.id, "the first admin was created on the setup page");
    let (_, cookie) = login::start_session(&state, &req, &user).await?;
    Ok(with_cookie(see_other("/"), Some(cookie)))
}
