//! The activity history: one row per change, written in the same transaction as the change,
//! and the feed (`Feed`) that turns committed rows into events on the bus, in commit order.

mod feed;
mod follow;
mod query;

pub use feed::{Feed, FeedStep};
pub use follow::Follower;
pub use query::ListQuery;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use crate::db::Conn;
use crate::db::schema::activity;
use crate::error::Result;
use crate::events::{Event, Kind, Position};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(Uuid),
    Agent(Uuid),
    /// Loom itself (an epic closing after its last child, the ticker).
    System,
}

impl Actor {
    pub fn user_id(self) -> Option<Uuid> {
        match self {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }

    pub fn agent_id(self) -> Option<Uuid> {
        match self {
            Actor::Agent(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = activity)]
pub struct Activity {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub kind: String,
    pub project_id: Option<String>,
    pub bead_id: Option<String>,
    pub actor_user_id: Option<Uuid>,
    pub actor_agent_id: Option<Uuid>,
    /// The actor's name: the user's, else the agent's; null for Loom itself.
    #[diesel(select_expression = crate::db::names::who("activity", "actor_user_id", "actor_agent_id"))]
    #[diesel(select_expression_type = crate::db::names::Who)]
    pub actor: Option<String>,
    pub data: serde_json::Value,
    /// The writing transaction: with `id`, the row's place in the feed.
    #[serde(skip)]
    pub tx: i64,
    /// The replica that wrote it (its connections' `application_name`).
    #[serde(skip)]
    pub origin: String,
}

/// An activity row about to be written.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub kind: Kind,
    pub project_id: Option<&'a str>,
    pub bead_id: Option<&'a str>,
    pub actor: Actor,
    pub data: serde_json::Value,
}

impl Activity {
    /// Writes one activity row; call it inside the transaction that made the change.
    pub async fn record(conn: &mut Conn, r: Record<'_>) -> Result<i64> {
        Ok(diesel::insert_into(activity::table)
            .values((
                activity::kind.eq(r.kind.as_str()),
                activity::project_id.eq(r.project_id),
                activity::bead_id.eq(r.bead_id),
                activity::actor_user_id.eq(r.actor.user_id()),
                activity::actor_agent_id.eq(r.actor.agent_id()),
                activity::data.eq(r.data),
            ))
            .returning(activity::id)
            .get_result(conn)
            .await?)
    }

    pub fn position(&self) -> Position {
        Position { tx: self.tx, id: self.id }
    }

    /// The event this row records; `None` for a kind this build does not know (a row
    /// written by a newer version).
    pub fn into_event(self) -> Option<Event> {
        let kind = self.kind.parse().ok()?;
        Some(Event {
            id: Some(self.id),
            position: Some(Position { tx: self.tx, id: self.id }),
            kind,
            created_at: self.created_at,
            project_id: self.project_id,
            bead_id: self.bead_id,
            actor_user_id: self.actor_user_id,
            actor_agent_id: self.actor_agent_id,
            actor: self.actor,
            data: self.data,
        })
    }

    /// A bead's history, oldest first.
    pub async fn for_bead(conn: &mut Conn, bead_id: &str, limit: i64) -> Result<Vec<Activity>> {
        // The newest `limit`, oldest first.
        let mut rows: Vec<Activity> = activity::table
            .filter(activity::bead_id.eq(bead_id))
            .order(activity::id.desc())
            .limit(limit)
            .select(Activity::as_select())
            .load(conn)
            .await?;
        rows.reverse();
        Ok(rows)
    }
}
