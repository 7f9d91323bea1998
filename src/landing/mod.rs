//! Landing (DESIGN.md, "Landing"): the merge queue that lands agents' work only once the
//! project's check passed on the merged tree. So far its planning: `bisect`, how a train of
//! several beads finds the red one while the green ones land. The queue itself, review and
//! the statuses `review` and `landing` are the rest of issue 20.

pub mod bisect;
