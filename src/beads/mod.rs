//! Beads: dependency-tracked work items. Their model and rules live here, with no HTTP
//! types: creating, changing status, the dependency graph with readiness kept current in the
//! same transaction as every change, and the ready and blocked queries.

pub mod board;
mod claims;
mod comments;
mod create;
mod graph;
mod heal;
mod landing;
mod links;
mod model;
mod project_graph;
mod query;
mod runs;
pub mod stats;
mod status;
mod transitions;
mod types;

pub use crate::db::Page;
pub(crate) use claims::lease_end;
pub(crate) use claims::release_in;
pub use claims::{AfterRun, Claim, Finish, RetryPolicy};
pub use comments::{Comment, NewComment};
pub use create::NewBead;
pub use graph::Dependency;
pub(crate) use graph::lock_graph;
pub use heal::{Expired, free_zombie, zombie_agents};
pub use landing::{AGENT_REVIEW_TRIES, Decision, LANDING_CONFLICT, Queued, REVIEW_FAILURES};
pub use model::{Bead, BeadDetails, BeadView, HeldBead, Hold, Link};
pub use project_graph::{Edge, Graph, Node, project_graph};
pub use query::{BeadFilter, Cursor};
pub use runs::{Run, RunKind, RunOutcome, RunStep, RunWithSteps};
pub(crate) use status::apply as apply_status_change;
pub use transitions::{BeadPatch, StatusChange};
pub use types::{
    BeadId, BeadStatus, BeadType, BlockedReason, DependencyKind, EdgeKind, Priority, PriorityInput,
    normalize_labels,
};
pub use types::{check_description, check_persona, check_title};
