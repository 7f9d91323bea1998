//! What every page has: the person looking at it (`Viewer`, from the session cookie; a page
//! without one sends them to the login page), the frame around it (`Layout`: navigation,
//! the unread badge, the CSRF token its forms carry), and errors shown as pages.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, dev::Payload, web};
use askama::Template;

use super::assets;
use crate::error::Error;
use crate::http::AppState;
use crate::http::auth::{app_state, require_role, session_of};
use crate::notifications::Notification;
use crate::users::sessions::Session;
use crate::users::{Role, User};

/// The logged-in person a page is for.
pub struct Viewer {
    pub user: User,
    pub session: Session,
    pub state: web::Data<AppState>,
}

impl Viewer {
    pub fn can_write(&self) -> bool {
        self.user.role >= Role::Member
    }

    pub fn is_admin(&self) -> bool {
        self.user.role >= Role::Admin
    }

    pub fn actor(&self) -> crate::activity::Actor {
        crate::activity::Actor::User(self.user.id)
    }

    /// Fails unless the viewer has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), PageError> {
        Ok(require_role(&self.user, role)?)
    }

    /// Checks the CSRF token a form came with.
    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        if self.session.csrf_matches(presented) { Ok(()) } else { Err(Error::csrf().into()) }
    }

    /// The frame of a page titled `title`, under navigation section `nav`.
    pub async fn layout(&self, title: impl Into<String>, nav: Nav) -> Result<Layout, PageError> {
        let mut conn = self.state.pool.get().await?;
        let unread = Notification::unread_count(&mut conn, self.user.id).await?;
        Ok(Layout {
            title: title.into(),
            nav,
            username: self.user.username.clone(),
            role: self.user.role,
            csrf: self.session.csrf_token.clone(),
            unread,
            assets: assets::version(),
            kinds: stored_kinds(),
            agents_stopped: crate::http::api::meta::gateway_status(&self.state).stops_agents(),
        })
    }
}

impl FromRequest for Viewer {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Viewer, PageError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = app_state(&req)?;
            match session_of(&state, &req).await? {
                Some((user, session)) => Ok(Viewer { user, session, state }),
                None => Err(PageError::LogIn { next: next_of(&req) }),
            }
        })
    }
}

/// Where to come back to after logging in: this page, if it is one of ours.
fn next_of(req: &HttpRequest) -> String {
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    safe_next(path).to_owned()
}

/// Only a local path: never `//host` or a full URL (an open redirect). Browsers drop tabs
/// and newlines from URLs and read `\\` as `/`, so a path holding any of them, or any other
/// control character or space, is refused too.
pub fn safe_next(next: &str) -> &str {
    let plain = !next.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if plain && next.starts_with('/') && !next.starts_with("//") { next } else { "/" }
}

/// The sections of the navigation, to mark the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Projects,
    Agents,
    Personas,
    Activity,
    Notifications,
    Analytics,
    Admin,
    None,
}

impl Nav {
    /// The name templates use for it.
    pub fn key(self) -> &'static str {
        match self {
            Nav::Overview => "overview",
            Nav::Projects => "projects",
            Nav::Agents => "agents",
            Nav::Personas => "personas",
            Nav::Activity => "activity",
            Nav::Notifications => "notifications",
            Nav::Analytics => "analytics",
            Nav::Admin => "admin",
            Nav::None => "",
        }
    }
}

/// The frame around every logged-in page.
pub struct Layout {
    pub title: String,
    pub nav: Nav,
    pub username: String,
    pub role: Role,
    pub csrf: String,
    pub unread: i64,
    /// Appended to asset URLs, so a new build is never served stale from a cache.
    pub assets: &'static str,
    /// The stored event kinds, comma-separated: the live scripts listen for these.
    pub kinds: &'static str,
    /// Why agents cannot work right now (no gateway, or it is down): every page says so.
    pub agents_stopped: Option<String>,
}

fn stored_kinds() -> &'static str {
    static KINDS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let kinds = crate::events::Kind::ALL.iter().filter(|k| !k.is_ephemeral());
        kinds.map(|k| k.as_str()).collect::<Vec<_>>().join(",")
    });
    &KINDS
}

impl Layout {
    pub fn admin(&self) -> bool {
        self.role >= Role::Admin
    }

    pub fn can_write(&self) -> bool {
        self.role >= Role::Member
    }

    /// `aria-current` for the navigation entry named `key`.
    pub fn current(&self, key: &str) -> &'static str {
        if self.nav.key() == key { "page" } else { "false" }
    }
}

/// A page that could not be shown: a redirect to the login page, or an error page with the
/// error's status and message.
#[derive(Debug)]
pub enum PageError {
    LogIn { next: String },
    Failed(Error),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError::Failed(e)
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for PageError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        PageError::Failed(e.into())
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::LogIn { .. } => f.write_str("log in first"),
            PageError::Failed(e) => e.fmt(f),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: String,
    assets: &'static str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::LogIn { .. } => StatusCode::SEE_OTHER,
            PageError::Failed(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PageError::LogIn { next } => {
                let to = if next == "/" {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", urlencode(next))
                };
                HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
            }
            PageError::Failed(e) => {
                let status = e.status_code();
                let message = crate::http::error::public_message(e);
                let page = ErrorPage {
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("Error"),
                    message,
                    assets: assets::version(),
                };
                html(status, page.render())
            }
        }
    }
}

/// A rendered template as an HTML response (a template that fails to render is a 500).
pub fn html(status: StatusCode, rendered: askama::Result<String>) -> HttpResponse {
    match rendered {
        Ok(body) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("the page failed to render")
        }
    }
}

/// Input a person can correct: shown on the form again with the reason, not as an error page.
pub fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::Invalid { .. } | Error::Conflict { .. } | Error::BadRequest { .. })
}

/// The status a page is served with: the refusal's it shows, or 200.
pub fn status_of(refusal: Option<&Error>) -> StatusCode {
    refusal.map_or(StatusCode::OK, ResponseError::status_code)
}

/// Renders a page with status 200.
pub fn ok(page: impl Template) -> Result<HttpResponse, PageError> {
    Ok(html(StatusCode::OK, page.render()))
}

/// After a form: see the page it changed (post/redirect/get).
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_owned())).finish()
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next("/projects/web"), "/projects/web");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("/beads/a b?x=1&y"), "/beads/a%20b%3Fx%3D1%26y");
    }
}
