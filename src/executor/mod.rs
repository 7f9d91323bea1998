//! The executor's side of an agent's turn: the action vocabulary a model replies in, and the
//! worktree those actions touch. The run loop and its state machine build on these.

pub mod actions;
pub mod workspace;
