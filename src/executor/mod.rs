//! Executors: agents doing the work. One executor per project across all replicas
//! (`ownership`), which picks up the runs the dispatcher opened (`pickup`), works each in its
//! own git worktree (`run`), up to the project's `max_parallel` at once (`supervisor`), and
//! ends it with a commit, a merge and a push, or a typed outcome (`finish`).
//!
//! A run is a conversation with the model driven by `machine`, a pure state machine; the
//! model replies in the vocabulary of `workbench::actions`, performed at the bead's
//! `workbench::Workbench` (path-safe files, a sandboxed `run`, git, the tracker). What the
//! model is told at the start comes from `brief` and `prompt`.

mod active;
pub(crate) mod brief;
mod finish;
pub(crate) mod history;
pub mod machine;
mod ownership;
mod pickup;
pub mod prompt;
pub(crate) mod run;
mod supervisor;

pub use active::ActiveBeads;
pub use machine::{DEFAULT_CONTEXT_TOKENS, Limits};
pub use ownership::Owner;
pub use supervisor::{ExecutorConfig, Executors, Step};
