//! API tokens: 256 random bits shown once at creation, stored as a SHA-256 digest.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::User;
use super::secret::{self, digest};
use crate::db::Conn;
use crate::db::schema::{api_tokens, users};
use crate::error::{Error, Result};

const SECRET_PREFIX: &str = "loom_";

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub name: String,
    /// The first characters of the secret, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A freshly created token with its secret, which is never retrievable again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: ApiToken,
    pub secret: String,
}

fn new_secret() -> Result<String> {
    Ok(format!("{SECRET_PREFIX}{}", secret::random()?))
}

impl ApiToken {
    pub async fn create(
        conn: &mut Conn,
        user_id: Uuid,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<CreatedToken> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::invalid("invalid_token_name", "a token name is 1-100 characters"));
        }
        if expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(Error::invalid("invalid_expiry", "expires_at must be in the future"));
        }
        let secret = new_secret()?;
        let token = diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(Uuid::now_v7()),
                api_tokens::user_id.eq(user_id),
                api_tokens::name.eq(name),
                api_tokens::token_hash.eq(digest(&secret)),
                api_tokens::prefix.eq(&secret[..SECRET_PREFIX.len() + 6]),
                api_tokens::expires_at.eq(expires_at),
            ))
            .returning(ApiToken::as_returning())
            .get_result(conn)
            .await?;
        Ok(CreatedToken { token, secret })
    }

    /// The user a presented secret belongs to, if it is a live token. Records the use at
    /// most once a minute, so authentication stays a single indexed read most of the time.
    pub async fn authenticate(conn: &mut Conn, secret: &str) -> Result<Option<(User, Uuid)>> {
        if !secret.starts_with(SECRET_PREFIX) {
            return Ok(None);
        }
        let found: Option<(User, ApiToken)> = api_tokens::table
            .inner_join(users::table)
            .filter(api_tokens::token_hash.eq(digest(secret)))
            .select((User::as_select(), ApiToken::as_select()))
            .first(conn)
            .await
            .optional()?;
        let Some((user, token)) = found else { return Ok(None) };
        let now = Utc::now();
        if token.expires_at.is_some_and(|t| t <= now) {
            return Ok(None);
        }
        if token.last_used_at.is_none_or(|t| now - t > chrono::Duration::minutes(1)) {
            diesel::update(api_tokens::table.find(token.id))
                .set(api_tokens::last_used_at.eq(now))
                .execute(conn)
                .await?;
        }
        Ok(Some((user, token.id)))
    }

    pub async fn list_for(conn: &mut Conn, user_id: Uuid) -> Result<Vec<ApiToken>> {
        Ok(api_tokens::table
            .filter(api_tokens::user_id.eq(user_id))
            .order(api_tokens::created_at.desc())
            .select(ApiToken::as_select())
            .load(conn)
            .await?)
    }

    /// Revokes one of the user's tokens; another user's token is "not found".
    pub async fn revoke(conn: &mut Conn, user_id: Uuid, id: Uuid) -> Result<()> {
        let n = diesel::delete(
            api_tokens::table.filter(api_tokens::id.eq(id)).filter(api_tokens::user_id.eq(user_id)),
        )
        .execute(conn)
        .await?;
        if n == 0 {
            return Err(Error::not_found(format!("token {id}")));
        }
        Ok(())
    }
}
