//! What Loom last learned about the gateway, shared by the client, the probe, the ticker and
//! the status endpoint.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// What Loom last learned about the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not configured, or not probed yet.
    Unknown,
    Healthy,
    /// Answering, but some calls fail, need retries, or are refused (a bad key).
    Degraded,
    Down,
}

impl Health {
    pub const ALL: [Health; 4] = [Health::Unknown, Health::Healthy, Health::Degraded, Health::Down];

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// The health and, when it is not healthy, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    pub health: Health,
    /// A human sentence; never carries a secret.
    pub reason: Option<String>,
}

/// The shared health state: the probe and real calls write it, the ticker and the status
/// endpoint read it, `watch` follows its changes. Cheap to clone; every clone sees the same
/// state.
#[derive(Debug, Clone)]
pub struct HealthState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    report: Mutex<HealthReport>,
    changes: tokio::sync::watch::Sender<HealthReport>,
}

impl Default for HealthState {
    fn default() -> Self {
        let report = HealthReport { health: Health::Unknown, reason: None };
        let (changes, _) = tokio::sync::watch::channel(report.clone());
        HealthState(Arc::new(Shared { report: Mutex::new(report), changes }))
    }
}

impl HealthState {
    pub fn get(&self) -> Health {
        self.report().health
    }

    pub fn report(&self) -> HealthReport {
        self.0.report.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Follows changes of health (not of the reason alone).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<HealthReport> {
        self.0.changes.subscribe()
    }

    pub fn set(&self, health: Health) {
        self.update(health, None);
    }

    /// Records what was learned; logs a change of health once, when it happens. Returns the
    /// health before.
    pub fn update(&self, health: Health, reason: Option<String>) -> Health {
        let mut now = self.0.report.lock().unwrap_or_else(PoisonError::into_inner);
        let before = now.health;
        *now = HealthReport { health, reason };
        let report = now.clone();
        drop(now);
        if before != health {
            self.0.changes.send_replace(report);
            match health {
                Health::Healthy | Health::Unknown => tracing::info!(
                    gateway.health = health.as_str(),
                    gateway.was = before.as_str(),
                    "the gateway is {}",
                    health.as_str()
                ),
                Health::Degraded | Health::Down => tracing::warn!(
                    gateway.health = health.as_str(),
                    gateway.was = before.as_str(),
                    reason = self.report().reason.as_deref().unwrap_or(""),
                    "the gateway is {}",
                    health.as_str()
                ),
            }
        }
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_starts_unknown_and_every_clone_sees_a_change_with_its_reason() {
        let state = HealthState::default();
        let seen = state.clone();
        assert_eq!(seen.get(), Health::Unknown);
        for h in [Health::Healthy, Health::Degraded, Health::Down, Health::Unknown] {
            state.set(h);
            assert_eq!(seen.get(), h);
        }
        let before = state.update(Health::Down, Some("connection refused".into()));
        assert_eq!(before, Health::Unknown);
        assert_eq!(seen.report().reason.as_deref(), Some("connection refused"));
    }
}
