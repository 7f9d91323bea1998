//! The periodic probe: asks the gateway whether it is there, so that health recovers while no
//! run is calling (parked beads wait for it) and an outage shows before the next run hits it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::Gateway;
use super::health::Health;

/// While the gateway is not healthy it is asked more often, so parked work resumes soon after
/// it comes back.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(5);

impl Gateway {
    /// Probes at once, then on the configured interval, until cancelled.
    pub async fn run_probe(self, cancel: CancellationToken) {
        loop {
            let health = self.probe().await;
            let wait = match health {
                Health::Healthy => self.probe_interval(),
                _ => self.probe_interval().min(RECOVERY_INTERVAL),
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
