//! Browser sessions: a random secret in an HttpOnly cookie, stored as its SHA-256 digest, with
//! a CSRF token of its own. A session ends at logout, after `idle` without a request, or at
//! its absolute expiry; a login always makes a new one (a session id never survives a login).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::User;
use super::secret::{self, digest};
use crate::db::Conn;
use crate::db::schema::{sessions, users};
use crate::error::Result;

/// The cookie's name.
pub const COOKIE: &str = "loom_session";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session unused this long has ended.
    pub idle: Duration,
    /// A session ends this long after its login, however much it is used.
    pub absolute: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle: Duration::from_secs(24 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id_hash: Vec<u8>,
    pub user_id: Uuid,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new session and the secret its cookie carries (only the digest is stored).
pub struct Started {
    pub session: Session,
    pub secret: String,
}

/// Where a login came from, kept with the session so a person can recognise it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Session {
    /// Starts a session for `user` (after a successful login), and drops ended ones.
    pub async fn start(
        conn: &mut Conn,
        user: Uuid,
        config: &SessionConfig,
        origin: &Origin,
    ) -> Result<Started> {
        let secret = secret::random()?;
        let clip = |s: &Option<String>| s.as_ref().map(|s| s.chars().take(200).collect::<String>());
        let session = diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(digest(&secret)),
                sessions::user_id.eq(user),
                sessions::csrf_token.eq(secret::random()?),
                sessions::expires_at.eq(Utc::now() + chrono(config.absolute)),
                sessions::address.eq(clip(&origin.address)),
                sessions::user_agent.eq(clip(&origin.user_agent)),
            ))
            .returning(Session::as_returning())
            .get_result(conn)
            .await?;
        Session::sweep(conn, config).await?;
        Ok(Started { session, secret })
    }

    /// The user and session a cookie's secret belongs to, if the session is live. Records
    /// the use at most once a minute, so most requests are a single indexed read.
    pub async fn authenticate(
        conn: &mut Conn,
        secret: &str,
        config: &SessionConfig,
    ) -> Result<Option<(User, Session)>> {
        let found: Option<(User, Session)> = sessions::table
            .inner_join(users::table)
            .filter(sessions::id_hash.eq(digest(secret)))
            .select((User::as_select(), Session::as_select()))
            .first(conn)
            .await
            .optional()?;
        let Some((user, session)) = found else { return Ok(None) };
        let now = Utc::now();
        if session.expires_at <= now || now - session.last_seen_at >= chrono(config.idle) {
            return Ok(None);
        }
        if now - session.last_seen_at > chrono::Duration::minutes(1) {
            diesel::update(sessions::table.find(&session.id_hash))
                .set(sessions::last_seen_at.eq(now))
                .execute(conn)
                .await?;
        }
        Ok(Some((user, session)))
    }

    /// Ends this session (logout).
    pub async fn end(conn: &mut Conn, id_hash: &[u8]) -> Result<()> {
        diesel::delete(sessions::table.find(id_hash)).execute(conn).await?;
        Ok(())
    }

    /// Ends every session of a user (a changed password, a changed role).
    pub async fn end_all_for(conn: &mut Conn, user: Uuid) -> Result<usize> {
        Ok(diesel::delete(sessions::table.filter(sessions::user_id.eq(user))).execute(conn).await?)
    }

    /// Deletes sessions that have ended by either expiry.
    pub async fn sweep(conn: &mut Conn, config: &SessionConfig) -> Result<usize> {
        let now = Utc::now();
        Ok(diesel::delete(sessions::table.filter(
            sessions::expires_at.le(now).or(sessions::last_seen_at.le(now - chrono(config.idle))),
        ))
        .execute(conn)
        .await?)
    }

    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        secret::same(&self.csrf_token, presented)
    }
}
