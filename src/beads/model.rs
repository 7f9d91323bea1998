//! The bead row and the views built from it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::comments::Comment;
use super::runs::Run;
use super::types::{BeadStatus, BeadType, BlockedReason, DependencyKind, Priority};
use crate::activity::Activity;
use crate::db::schema::beads;

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = beads)]
pub struct Bead {
    pub id: String,
    #[serde(rename = "project")]
    pub project_id: String,
    pub title: String,
    pub description: String,
    #[serde(rename = "type")]
    pub bead_type: BeadType,
    #[diesel(deserialize_as = i16)]
    pub priority: Priority,
    pub status: BeadStatus,
    pub blocked_reason: Option<BlockedReason>,
    pub blocked_note: Option<String>,
    pub labels: Vec<String>,
    pub persona: Option<String>,
    #[serde(rename = "assignee")]
    pub assignee_agent_id: Option<Uuid>,
    #[serde(rename = "parent")]
    pub parent_id: Option<String>,
    pub created_by_user_id: Option<Uuid>,
    pub created_by_agent_id: Option<Uuid>,
    pub close_reason: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// Not ready before this time (retry back-off).
    pub not_before: Option<DateTime<Utc>>,
    pub defer_until: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many `blocks` dependencies are not closed yet.
    pub open_blockers: i32,
    /// The nearest ancestor holding this bead back, if any.
    pub held_by: Option<String>,
    #[serde(skip)]
    pub child_seq: i32,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The schedule that filed this bead, if one did.
    #[serde(rename = "schedule")]
    pub schedule_id: Option<Uuid>,
    /// The open conversation a person is pairing on this bead in: no agent works it meanwhile.
    pub paired_in: Option<Uuid>,
    /// In review or landing: the commit its agent finished on (the tip of `loom/<id>`).
    pub landing_sha: Option<String>,
    /// When it entered the landing queue (the queue serves priority first, then this).
    pub landing_since: Option<DateTime<Utc>>,
}

impl From<i16> for Priority {
    /// The column has a CHECK (0..=4); anything else would be a corrupt row, clamped.
    fn from(v: i16) -> Self {
        Priority::new(i64::from(v.clamp(0, 4))).unwrap_or(Priority::DEFAULT)
    }
}

impl Bead {
    /// Ready to be dispatched now: the rules of DESIGN.md, from the maintained columns.
    pub fn is_ready(&self, now: DateTime<Utc>) -> bool {
        self.status == BeadStatus::Open
            && self.bead_type != BeadType::Epic
            && self.open_blockers == 0
            && self.held_by.is_none()
            && self.paired_in.is_none()
            && self.not_before.is_none_or(|t| t <= now)
    }
}

/// A bead as the API returns it: the row plus whether it is ready.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BeadView {
    #[serde(flatten)]
    pub bead: Bead,
    pub ready: bool,
}

impl From<Bead> for BeadView {
    fn from(bead: Bead) -> Self {
        let ready = bead.is_ready(Utc::now());
        BeadView { bead, ready }
    }
}

/// The other end of a dependency, with enough to show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Link {
    pub id: String,
    pub title: String,
    pub status: BeadStatus,
    pub kind: DependencyKind,
}

/// Everything about one bead.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BeadDetails {
    #[serde(flatten)]
    pub bead: BeadView,
    /// What this bead depends on (including its parent, as `parent-child`).
    pub dependencies: Vec<Link>,
    /// What depends on this bead (including its children, as `parent-child`).
    pub dependents: Vec<Link>,
    /// Why it is not ready, when it is not.
    pub holds: Vec<Hold>,
    pub comments: Vec<Comment>,
    pub runs: Vec<Run>,
    pub history: Vec<Activity>,
}

/// One reason a bead is not ready.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    /// `blocks` dependencies that are not closed.
    Blockers {
        blockers: Vec<Link>,
    },
    /// Held back on purpose.
    Blocked {
        reason: BlockedReason,
        note: Option<String>,
    },
    Deferred {
        until: Option<DateTime<Utc>>,
    },
    /// An ancestor is blocked, deferred or waiting on blockers.
    Ancestor {
        id: String,
        title: String,
        status: BeadStatus,
    },
    /// Retry back-off after a failed attempt.
    Backoff {
        until: DateTime<Utc>,
    },
    /// A person is pairing on it in this conversation; handing it off makes it ready again.
    Paired {
        conversation: Uuid,
    },
    /// Claimed by an agent.
    InProgress {
        assignee: Option<Uuid>,
    },
    /// Done by its agent, waiting for a review (a member's or a reviewing agent's).
    Review,
    /// Approved, in the project's landing queue: merged onto the tip, checked, then pushed.
    Landing {
        since: Option<DateTime<Utc>>,
    },
    /// An epic is a container, worked through its children.
    Epic,
    Closed,
}

/// A bead that is not ready, with what holds it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HeldBead {
    #[serde(flatten)]
    pub bead: Bead,
    pub holds: Vec<Hold>,
}
