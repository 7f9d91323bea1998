//! People: accounts with roles, their passwords (argon2id), their API tokens and their
//! browser sessions.

pub mod password;
pub mod secret;
pub mod sessions;
pub mod tokens;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::Conn;
use crate::db::schema::{sql_types, users};
use crate::error::{Error, Result};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    diesel::AsExpression,
    diesel::FromSqlRow,
)]
#[diesel(sql_type = sql_types::UserRole)]
#[serde(rename_all = "snake_case")]
/// What a person may do: viewers read, members also write beads and agents, admins also
/// manage users, projects and personas. Ordered from least to most privileged.
pub enum Role {
    Viewer,
    Member,
    Admin,
}

crate::pg_enum!(Role, sql_types::UserRole, {
    Viewer => "viewer",
    Member => "member",
    Admin => "admin",
});

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView { id: u.id, username: u.username.clone(), role: u.role, created_at: u.created_at }
    }
}

/// A validated username: 1–40 characters of lowercase letters, digits, `_`, `.` and `-`,
/// starting with a letter or digit. Usernames are what `@mentions` match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self> {
        let s = raw.trim();
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if ok {
            Ok(Username(s.to_owned()))
        } else {
            Err(Error::invalid(
                "invalid_username",
                "a username is 1-40 characters: lowercase letters, digits, '_', '.', '-', \
                 starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn check_password_strength(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::invalid(
            "weak_password",
            format!("a password needs at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(Error::invalid("password_too_long", "a password is at most 1024 bytes"));
    }
    Ok(())
}

impl User {
    pub async fn create(
        conn: &mut Conn,
        username: &Username,
        password: &str,
        role: Role,
    ) -> Result<User> {
        check_password_strength(password)?;
        let hash = password::hash(password.to_owned()).await?;
        let result = diesel::insert_into(users::table)
            .values((
                users::id.eq(Uuid::now_v7()),
                users::username.eq(username.as_str()),
                users::password_hash.eq(hash),
                users::role.eq(role),
            ))
            .returning(User::as_returning())
            .get_result(conn)
            .await
            .map_err(Error::from);
        match result {
            Err(e) if e.is_unique_violation() => Err(Error::conflict(
                "username_taken",
                format!("the username {:?} is taken", username.as_str()),
            )),
            other => other,
        }
    }

    pub async fn find(conn: &mut Conn, id: Uuid) -> Result<User> {
        users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("user {id}")))
    }

    pub async fn find_by_username(conn: &mut Conn, username: &str) -> Result<Option<User>> {
        Ok(users::table
            .filter(users::username.eq(username))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    pub async fn list(conn: &mut Conn, after: Option<&str>, limit: i64) -> Result<Vec<User>> {
        let mut q = users::table.select(User::as_select()).order(users::username).into_boxed();
        if let Some(after) = after {
            q = q.filter(users::username.gt(after.to_owned()));
        }
        Ok(q.limit(limit).load(conn).await?)
    }

    /// The first admin of a new installation (the setup page). Refused once any user
    /// exists, also when two setups race: the table is locked while one runs.
    pub async fn create_first_admin(
        conn: &mut Conn,
        username: &Username,
        password: &str,
    ) -> Result<User> {
        check_password_strength(password)?;
        let hash = password::hash(password.to_owned()).await?;
        conn.transaction::<_, Error, _>(async move |conn| {
            diesel::sql_query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").execute(conn).await?;
            if User::count(conn).await? > 0 {
                return Err(Error::conflict(
                    "already_set_up",
                    "Loom is set up already: log in, or ask an admin for an account",
                ));
            }
            Ok(diesel::insert_into(users::table)
                .values((
                    users::id.eq(Uuid::now_v7()),
                    users::username.eq(username.as_str()),
                    users::password_hash.eq(hash),
                    users::role.eq(Role::Admin),
                ))
                .returning(User::as_returning())
                .get_result(conn)
                .await?)
        })
        .await
    }

    /// The usernames of these users (missing ones, deleted since, are left out).
    pub async fn names(
        conn: &mut Conn,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, String>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(Uuid, String)> = users::table
            .filter(users::id.eq_any(ids))
            .select((users::id, users::username))
            .load(conn)
            .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn count(conn: &mut Conn) -> Result<i64> {
        Ok(users::table.count().get_result(conn).await?)
    }

    /// Changes role and/or password (which ends the user's browser sessions). Refuses to
    /// demote the last admin.
    pub async fn update(
        conn: &mut Conn,
        id: Uuid,
        role: Option<Role>,
        password: Option<&str>,
    ) -> Result<User> {
        if let Some(p) = password {
            check_password_strength(p)?;
        }
        let hash = match password {
            Some(p) => Some(password::hash(p.to_owned()).await?),
            None => None,
        };
        conn.transaction::<_, Error, _>(async move |conn| {
            let user = lock(conn, id).await?;
            if user.role == Role::Admin && role.is_some_and(|r| r != Role::Admin) {
                ensure_another_admin(conn, id).await?;
            }
            if hash.is_some() {
                // A new password logs the user out of every browser.
                sessions::Session::end_all_for(conn, id).await?;
            }
            let updated = diesel::update(users::table.find(id))
                .set((
                    users::role.eq(role.unwrap_or(user.role)),
                    users::password_hash.eq(hash.unwrap_or(user.password_hash)),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .returning(User::as_returning())
                .get_result(conn)
                .await?;
            Ok(updated)
        })
        .await
    }

    /// Deletes a user and their tokens. Refuses to delete the last admin.
    pub async fn delete(conn: &mut Conn, id: Uuid) -> Result<()> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let user = lock(conn, id).await?;
            if user.role == Role::Admin {
                ensure_another_admin(conn, id).await?;
            }
            diesel::delete(users::table.find(id)).execute(conn).await?;
            Ok(())
        })
        .await
    }
}

async fn lock(conn: &mut Conn, id: Uuid) -> Result<User> {
    users::table
        .find(id)
        .select(User::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| Error::not_found(format!("user {id}")))
}

/// Serialised through a lock on every admin row, so two concurrent demotions cannot
/// both pass and leave no admin.
async fn ensure_another_admin(conn: &mut Conn, except: Uuid) -> Result<()> {
    let others: Vec<Uuid> = users::table
        .filter(users::role.eq(Role::Admin))
        .filter(users::id.ne(except))
        .select(users::id)
        .for_update()
        .load(conn)
        .await?;
    if others.is_empty() {
        return Err(Error::conflict(
            "last_admin",
            "this is the last admin; make another user admin first",
        ));
    }
    Ok(())
}
