//! The activity history: one row per change, written in the same transaction as the change.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use crate::db::Conn;
use crate::db::schema::activity;
use crate::error::Result;

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
    pub data: serde_json::Value,
}

/// An activity row about to be written.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub kind: &'a str,
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
                activity::kind.eq(r.kind),
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

    /// A bead's history, oldest first.
    pub async fn for_bead(conn: &mut Conn, bead_id: &str, limit: i64) -> Result<Vec<Activity>> {
        Ok(activity::table
            .filter(activity::bead_id.eq(bead_id))
            .order(activity::id.asc())
            .limit(limit)
            .select(Activity::as_select())
            .load(conn)
            .await?)
    }
}
