//! Outages in the history: when the gateway goes down or comes back, a `gateway.health`
//! activity row says so (people are notified from it). Changes between healthy and degraded,
//! and the first report after start, are not outages.

use tokio_util::sync::CancellationToken;

use super::{Health, HealthReport, HealthState};
use crate::activity::{Activity, Actor, Record};
use crate::db::Pool;
use crate::events::{Bus, Kind};

/// Whether going from `was` to `now` starts or ends an outage.
pub fn is_outage_change(was: Health, now: Health) -> bool {
    match (was, now) {
        (Health::Unknown, Health::Down) => true,
        (Health::Unknown, _) | (_, Health::Unknown) => false,
        (was, now) => (was == Health::Down) != (now == Health::Down),
    }
}

/// Records every outage change of `health` until cancelled.
pub async fn record_outages(pool: Pool, health: HealthState, bus: Bus, cancel: CancellationToken) {
    let mut changes = health.watch();
    let mut was = changes.borrow_and_update().health;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let now: HealthReport = changes.borrow_and_update().clone();
        if is_outage_change(was, now.health) {
            if let Err(e) = record(&pool, was, &now).await {
                tracing::warn!(error = %e, "could not record the gateway's change of health");
            }
            bus.committed();
        }
        was = now.health;
    }
}

async fn record(pool: &Pool, was: Health, now: &HealthReport) -> crate::Result<()> {
    let mut conn = pool.get().await?;
    let data = serde_json::json!({
        "healthy": now.health != Health::Down,
        "health": now.health,
        "was": was,
        "reason": now.reason,
    });
    Activity::record(
        &mut conn,
        Record {
            kind: Kind::GatewayHealth,
            project_id: None,
            bead_id: None,
            actor: Actor::System,
            data,
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::*;

    #[test]
    fn only_going_down_and_coming_back_are_outage_changes() {
        for (was, now, outage) in [
            (Healthy, Down, true),
            (Degraded, Down, true),
            (Down, Healthy, true),
            (Down, Degraded, true),
            (Unknown, Down, true),
            (Unknown, Healthy, false),
            (Healthy, Degraded, false),
            (Degraded, Healthy, false),
            (Down, Unknown, false),
        ] {
            assert_eq!(is_outage_change(was, now), outage, "{was:?} -> {now:?}");
        }
    }
}
