//! Landing (DESIGN.md, "Landing"): a finished bead's work reaches the project branch only
//! through the project's merge queue, which merges it onto the current tip, runs the
//! project's check on the merged tree in the sandbox and pushes only on green. Several
//! waiting beads are checked together as a train (`queue`), a red train is narrowed down
//! to its red bead (`bisect`), and each check is recorded (`check`). The queue of a project
//! runs where its executor runs: one replica at a time.

pub mod bisect;
mod check;
mod queue;
mod view;

use std::path::PathBuf;

use uuid::Uuid;

pub use check::Verdict;
pub use queue::Stepped;
pub use view::{CheckRow, CheckView, QueueView, WaitingBead, checks_of};

/// What a project's merge queue works with: Loom's clones, the sandbox checks run in, and
/// the database. One per process, shared by the queues of every project it owns.
#[derive(Clone)]
pub struct Lander {
    pub pool: crate::db::Pool,
    pub repos: crate::git::Repos,
    pub sandbox: crate::workbench::Sandbox,
    /// Where each project's check keeps its `HOME` (a cache of its own, apart from the
    /// agents'): `<dir>/<project>`.
    pub homes: PathBuf,
    /// Variables a check's command gets besides the basic ones, as agents' commands do.
    pub run_env: Vec<(String, String)>,
    pub bus: crate::events::Bus,
    /// This process, as `checks.worker`.
    pub worker: Uuid,
    /// The back-off a bead sent back by a red check waits out.
    pub retry: crate::beads::RetryPolicy,
    /// A running check beats its heartbeat three times in this long; one silent this long
    /// belongs to a replica that died (the executors' ownership lease).
    pub lease: std::time::Duration,
}
