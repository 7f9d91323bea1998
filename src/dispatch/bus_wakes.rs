//! Wake-ups from the bus: another replica's events that may make work ready wake this
//! process's dispatchers, and its claims wake this process's executors (a claim made
//! elsewhere may be for a project this process runs). A subscriber that lagged wakes both:
//! a sweep finds whatever the missed events were about.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Nudge;
use crate::events::{Bus, Kind, Received};

/// Follows `bus` until cancelled or the bus is gone.
pub async fn follow(bus: Bus, nudge: Nudge, claimed: Arc<Notify>, cancel: CancellationToken) {
    let mut events = bus.subscribe();
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            r = events.recv() => r,
        };
        match received {
            Some(Received::Event(e)) if e.kind == Kind::BeadClaimed => claimed.notify_one(),
            Some(Received::Event(e)) if e.kind.may_ready_work() => nudge.wake(),
            Some(Received::Event(_)) => {}
            Some(Received::Lagged(_)) => {
                nudge.wake();
                claimed.notify_one();
            }
            None => return,
        }
    }
}
