//! The beads whose run task is alive in this process, so that a conversation's agent does
//! not start acting in a worktree a run is still working in (a run taken back by a person
//! goes on until its next check or its cancellation, a command of it until it ends).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Clone, Default)]
pub struct ActiveBeads(Arc<Mutex<HashMap<String, usize>>>);

/// Holds a bead active until dropped.
pub struct Held {
    beads: ActiveBeads,
    bead: String,
}

impl ActiveBeads {
    /// Marks `bead` active while the returned value lives.
    pub fn hold(&self, bead: &str) -> Held {
        *self.lock().entry(bead.to_owned()).or_default() += 1;
        Held { beads: self.clone(), bead: bead.to_owned() }
    }

    pub fn contains(&self, bead: &str) -> bool {
        self.lock().contains_key(bead)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut beads = self.beads.lock();
        if let Some(n) = beads.get_mut(&self.bead) {
            *n -= 1;
            if *n == 0 {
                beads.remove(&self.bead);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ActiveBeads;

    #[test]
    fn a_bead_is_active_while_any_hold_on_it_lives() {
        let active = ActiveBeads::default();
        let first = active.hold("web-1");
        let second = active.hold("web-1");
        assert!(active.contains("web-1") && !active.contains("web-2"));
        drop(first);
        assert!(active.contains("web-1"), "another task still works it");
        drop(second);
        assert!(!active.contains("web-1"));
    }
}
