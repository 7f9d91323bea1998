//! Notifications: what a person should hear of (a bead they filed closed, a question for a
//! human, a mention, a P0 in a project they watch, the gateway going down), and the
//! projects they watch. One unread notification per user, subject and reason: a repeat
//! raises its count instead of piling up. `rules` decides who hears of an activity row;
//! the `Notifier` reads the feed and writes them, exactly once per row; `NotificationWakers`
//! tells each open notification stream when to read them.

mod follow;
mod notifier;
mod rules;
mod watch;

pub use follow::{NotificationFollower, NotificationWakers, Raised, Raises};
pub use notifier::{Notifier, Step};
pub use rules::{Facts, GATEWAY, Reason, Target, Trigger, targets};
pub use watch::ProjectWatch;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::notifications;
use crate::db::{Conn, Page};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = notifications)]
pub struct Notification {
    pub id: i64,
    pub user_id: Uuid,
    /// `bead_closed`, `landed`, `bead_blocked`, `needs_human`, `review_requested`,
    /// `changes_requested`, `check_failed`, `mention`, `p0_filed`, `gateway_down`
    /// or `gateway_up`.
    pub reason: String,
    /// What it is about: a bead id, or `gateway`.
    pub subject: String,
    pub project_id: Option<String>,
    pub bead_id: Option<String>,
    /// The activity row that raised it last.
    pub activity_id: i64,
    pub title: String,
    /// How many times it was raised while unread.
    pub count: i32,
    /// Grows each time it is raised: the notification stream resumes from it.
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// Which of a user's notifications, and where the page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub unread_only: bool,
    /// Newest first, older than this id (the previous page's `next_cursor`).
    pub before: Option<i64>,
    pub limit: i64,
}

impl Notification {
    /// A page of the user's notifications, newest first.
    pub async fn list(conn: &mut Conn, user: Uuid, q: &ListQuery) -> Result<Page<Notification>> {
        let mut query = notifications::table
            .filter(notifications::user_id.eq(user))
            .select(Notification::as_select())
            .order(notifications::id.desc())
            .into_boxed();
        if q.unread_only {
            query = query.filter(notifications::read_at.is_null());
        }
        if let Some(before) = q.before {
            query = query.filter(notifications::id.lt(before));
        }
        let rows = query.limit(q.limit + 1).load(conn).await?;
        Ok(Page::from_rows(rows, q.limit, |n| n.id.to_string()))
    }

    pub async fn unread_count(conn: &mut Conn, user: Uuid) -> Result<i64> {
        Ok(notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::read_at.is_null())
            .count()
            .get_result(conn)
            .await?)
    }

    /// Unread counts of several users; users with none are absent.
    pub async fn unread_counts(conn: &mut Conn, users: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
        let rows: Vec<(Uuid, i64)> = notifications::table
            .filter(notifications::user_id.eq_any(users))
            .filter(notifications::read_at.is_null())
            .group_by(notifications::user_id)
            .select((notifications::user_id, diesel::dsl::count_star()))
            .load(conn)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Marks one of the user's notifications read; one already read stays as it was. Someone
    /// else's is not found, like one that does not exist.
    pub async fn mark_read(conn: &mut Conn, user: Uuid, id: i64) -> Result<Notification> {
        let mine = notifications::table
            .filter(notifications::id.eq(id))
            .filter(notifications::user_id.eq(user));
        let marked = diesel::update(mine.filter(notifications::read_at.is_null()))
            .set(notifications::read_at.eq(diesel::dsl::now))
            .returning(Notification::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match marked {
            Some(n) => Ok(n),
            None => mine
                .select(Notification::as_select())
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| Error::not_found(format!("notification {id}"))),
        }
    }

    /// Marks all the user's notifications read; how many were unread.
    pub async fn mark_all_read(conn: &mut Conn, user: Uuid) -> Result<usize> {
        Ok(diesel::update(
            notifications::table
                .filter(notifications::user_id.eq(user))
                .filter(notifications::read_at.is_null()),
        )
        .set(notifications::read_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?)
    }

    /// Raises notifications for one activity row: a new unread one, or the existing unread
    /// one for the same user, subject and reason with its count raised, its title and
    /// activity replaced and a fresh `seq`. `targets` must not repeat a (user, subject,
    /// reason), which `rules::targets` guarantees.
    pub async fn raise(
        conn: &mut Conn,
        activity_id: i64,
        targets: &[Target],
    ) -> Result<Vec<Notification>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<_> = targets
            .iter()
            .map(|t| {
                (
                    notifications::user_id.eq(t.user_id),
                    notifications::reason.eq(t.reason.as_str()),
                    notifications::subject.eq(&t.subject),
                    notifications::project_id.eq(&t.project_id),
                    notifications::bead_id.eq(&t.bead_id),
                    notifications::activity_id.eq(activity_id),
                    notifications::title.eq(&t.title),
                )
            })
            .collect();
        Ok(diesel::insert_into(notifications::table)
            .values(rows)
            .on_conflict((notifications::user_id, notifications::subject, notifications::reason))
            .filter_target(notifications::read_at.is_null())
            .do_update()
            .set((
                notifications::count.eq(notifications::count + 1),
                notifications::activity_id.eq(excluded(notifications::activity_id)),
                notifications::title.eq(excluded(notifications::title)),
                notifications::updated_at.eq(diesel::dsl::now),
                notifications::seq.eq(sql::<BigInt>("nextval('notification_seq')")),
            ))
            .returning(Notification::as_returning())
            .get_results(conn)
            .await?)
    }
}
