//! Authentication of API requests (a bearer token) and role checks.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use uuid::Uuid;

use super::AppState;
use crate::activity::Actor;
use crate::error::Error;
use crate::users::tokens::ApiToken;
use crate::users::{Role, User};

/// The authenticated user of a request. Extracting it fails with 401 when no valid token
/// was presented.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user: User,
    /// The token this request came with.
    pub token_id: Uuid,
}

impl Auth {
    /// Fails with 403 unless the user has at least `role`.
    pub fn require(&self, role: Role) -> Result<&Self, Error> {
        if self.user.role >= role {
            Ok(self)
        } else {
            Err(Error::forbidden(format!("this needs the {role} role; you are {}", self.user.role)))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::User(self.user.id)
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

impl FromRequest for Auth {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Auth, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let secret = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let Some(secret) = secret else {
                return Err(Error::unauthenticated(
                    "send an API token: Authorization: Bearer <token>",
                ));
            };
            let state =
                state.ok_or_else(|| Error::Internal(anyhow::anyhow!("app state missing")))?;
            let mut conn = state.pool.get().await?;
            match ApiToken::authenticate(&mut conn, &secret).await? {
                Some((user, token_id)) => Ok(Auth { user, token_id }),
                None => Err(Error::unauthenticated("the API token is not valid")),
            }
        })
    }
}
