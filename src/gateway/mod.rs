//! The LLM gateway. So far only its health, which the ticker reads to decide when beads
//! parked as `gateway_unavailable` go back to work; the client and the periodic probe that
//! keep it current arrive with the executors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

/// What Loom last learned about the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not configured, or not probed yet.
    Unknown,
    Healthy,
    /// Answering, but some calls fail or are slow.
    Degraded,
    Down,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Degraded,
            3 => Health::Down,
            _ => Health::Unknown,
        }
    }
}

/// The shared health state: the probe and real calls write it, the ticker and the status
/// endpoint read it. Cheap to clone; every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct HealthState(Arc<AtomicU8>);

impl HealthState {
    pub fn get(&self) -> Health {
        Health::from_u8(self.0.load(Ordering::Acquire))
    }

    pub fn set(&self, health: Health) {
        self.0.store(health as u8, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_starts_unknown_and_every_clone_sees_a_change() {
        let state = HealthState::default();
        let seen = state.clone();
        assert_eq!(seen.get(), Health::Unknown);
        for h in [Health::Healthy, Health::Degraded, Health::Down, Health::Unknown] {
            state.set(h);
            assert_eq!(seen.get(), h);
        }
    }
}
