//! Authentication of requests (a bearer token, or a browser session cookie with its CSRF
//! token for writes) and role checks.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use uuid::Uuid;

use super::AppState;
use crate::activity::Actor;
use crate::error::Error;
use crate::users::sessions::{self, Session};
use crate::users::tokens::ApiToken;
use crate::users::{Role, User};

/// The authenticated user of a request. Extracting it fails with 401 when neither a valid
/// token nor a live session cookie came with it, and with 403 `csrf_failed` for a
/// cookie-authenticated write without the session's `X-CSRF-Token`.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user: User,
    pub credential: Credential,
}

/// What the request was authenticated with.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token (its id).
    Token(Uuid),
    /// A browser session.
    Session(Session),
}

/// The header a cookie-authenticated write carries its CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// Fails with 403 unless `user` has at least `role`.
pub fn require_role(user: &User, role: Role) -> Result<(), Error> {
    if user.role >= role {
        Ok(())
    } else {
        Err(Error::forbidden(format!("this needs the {role} role; you are {}", user.role)))
    }
}

/// The shared state, which every app built by `app` carries.
pub fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, Error> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("app state missing")))
}

impl Auth {
    /// Fails with 403 unless the user has at least `role`.
    pub fn require(&self, role: Role) -> Result<&Self, Error> {
        require_role(&self.user, role).map(|()| self)
    }

    pub fn actor(&self) -> Actor {
        Actor::User(self.user.id)
    }

    pub fn session(&self) -> Option<&Session> {
        match &self.credential {
            Credential::Session(s) => Some(s),
            Credential::Token(_) => None,
        }
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// Whether a request may change something (and so needs CSRF protection under a cookie).
pub fn writes(req: &HttpRequest) -> bool {
    !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The live session a request's cookie names, if any.
pub async fn session_of(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<(User, Session)>, Error> {
    let Some(cookie) = req.cookie(sessions::COOKIE) else { return Ok(None) };
    let mut conn = state.pool.get().await?;
    Session::authenticate(&mut conn, cookie.value(), &state.sessions).await
}

impl FromRequest for Auth {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Auth, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = app_state(&req)?;
            if let Some(secret) = bearer(&req) {
                let mut conn = state.pool.get().await?;
                return match ApiToken::authenticate(&mut conn, &secret).await? {
                    Some((user, id)) => Ok(Auth { user, credential: Credential::Token(id) }),
                    None => Err(Error::unauthenticated("the API token is not valid")),
                };
            }
            let Some((user, session)) = session_of(&state, &req).await? else {
                return Err(Error::unauthenticated(
                    "send an API token (Authorization: Bearer <token>) or log in",
                ));
            };
            if writes(&req) {
                let presented = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                if !presented.is_some_and(|t| session.csrf_matches(t)) {
                    return Err(Error::csrf());
                }
            }
            Ok(Auth { user, credential: Credential::Session(session) })
        })
    }
}
