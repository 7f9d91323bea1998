//! Events: what happens in Loom, typed (`Kind`), carried on a bus to every subscriber in every
//! replica. Postgres stays the source of truth: each stored event is an activity row, and the
//! activity feed (`activity::Feed`) publishes it only once it has committed, in commit order. The bus (`Bus`) fans
//! events out in this process through a bounded broadcast with a ring of recent ones (`hub`)
//! and, with a NATS backend, to and from other replicas (`nats`).

mod bus;
mod hub;
mod kind;
mod nats;
mod wakers;

pub use bus::{Backend, Bus, BusState, InProcess, Received, Subscription};
pub use hub::Hub;
pub use kind::{Kind, KindFilter, UnknownKind};
pub use nats::{NatsBackend, NatsConfig};
pub use wakers::{Wake, Wakers, Watched};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a stored event sits in the feed: its writing transaction, then its row id. The feed
/// is ordered by it, and is final below the oldest running transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub tx: i64,
    pub id: i64,
}

impl Position {
    /// Before every row.
    pub const START: Position = Position { tx: 0, id: 0 };
}

/// One thing that happened. Stored events carry their activity row's `id`; ephemeral ones
/// (`Kind::is_ephemeral`) have none and are not replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: Option<i64>,
    /// Where a stored event sits in this database's feed: internal, never on the wire.
    #[serde(skip)]
    #[schema(ignore)]
    pub position: Option<Position>,
    #[schema(value_type = String)]
    pub kind: Kind,
    pub created_at: DateTime<Utc>,
    pub project_id: Option<String>,
    pub bead_id: Option<String>,
    pub actor_user_id: Option<Uuid>,
    pub actor_agent_id: Option<Uuid>,
    /// The actor's name (`actor_agent_id` set: an agent's); null for Loom itself and for
    /// live-only events.
    #[serde(default)]
    pub actor: Option<String>,
    pub data: serde_json::Value,
}

impl Event {
    /// An ephemeral event, stamped now.
    pub fn live(
        kind: Kind,
        project_id: Option<&str>,
        bead_id: Option<&str>,
        data: serde_json::Value,
    ) -> Event {
        Event {
            id: None,
            position: None,
            kind,
            created_at: Utc::now(),
            project_id: project_id.map(str::to_owned),
            bead_id: bead_id.map(str::to_owned),
            actor_user_id: None,
            actor_agent_id: None,
            actor: None,
            data,
        }
    }
}

/// Which events a reader wants; every field set must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub project: Option<String>,
    pub bead: Option<String>,
    pub agent: Option<Uuid>,
    pub kind: Option<KindFilter>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        self.project.as_ref().is_none_or(|p| e.project_id.as_ref() == Some(p))
            && self.bead.as_ref().is_none_or(|b| e.bead_id.as_ref() == Some(b))
            && self.agent.is_none_or(|a| e.actor_agent_id == Some(a))
            && self.kind.as_ref().is_none_or(|k| k.matches(e.kind))
    }
}
