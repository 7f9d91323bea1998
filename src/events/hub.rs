//! Fan-out inside one process: a bounded broadcast (a subscriber that falls behind is told
//! how much it missed and catches up from Postgres; publishers never wait) and a ring of the
//! most recent stored events, so a client reconnecting with a recent `Last-Event-ID` is
//! served from memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::{Event, Position};

pub struct Hub {
    sender: broadcast::Sender<Arc<Event>>,
    ring: Mutex<VecDeque<Arc<Event>>>,
    ring_size: usize,
}

impl Hub {
    pub fn new(capacity: usize, ring_size: usize) -> Hub {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Hub { sender, ring: Mutex::new(VecDeque::with_capacity(ring_size)), ring_size }
    }

    /// Delivers to every current subscriber. Stored events must come in feed order.
    pub fn send(&self, event: Arc<Event>) {
        if event.position.is_some() && self.ring_size > 0 {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            if ring.len() == self.ring_size {
                ring.pop_front();
            }
            ring.push_back(event.clone());
        }
        // No subscriber is not an error: nobody is listening.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// The stored events after `after`, when the ring still holds all of them; `None` when
    /// some may be older than the ring (read Postgres instead).
    pub fn replay_after(&self, after: Position) -> Option<Vec<Arc<Event>>> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = ring.front()?.position?;
        if oldest > after {
            return None;
        }
        Some(ring.iter().filter(|e| e.position.is_some_and(|p| p > after)).cloned().collect())
    }

    /// The position of a stored event still in the ring.
    pub fn position_of(&self, id: i64) -> Option<Position> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().find(|e| e.id == Some(id)).and_then(|e| e.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Kind;

    fn stored(tx: i64, id: i64) -> Arc<Event> {
        let mut e = Event::live(Kind::BeadCreated, None, None, serde_json::Value::Null);
        e.id = Some(id);
        e.position = Some(Position { tx, id });
        Arc::new(e)
    }

    #[test]
    fn the_ring_replays_what_it_holds_and_refuses_what_it_lost() {
        let hub = Hub::new(8, 3);
        for (tx, id) in [(10, 2), (11, 1), (12, 3), (13, 4)] {
            hub.send(stored(tx, id));
        }
        // (10, 2) fell out of the ring: a cursor before (11, 1) cannot be served.
        assert!(hub.replay_after(Position { tx: 10, id: 2 }).is_none());
        let ids: Vec<_> = hub
            .replay_after(Position { tx: 11, id: 1 })
            .expect("held")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [Some(3), Some(4)]);
        assert_eq!(hub.replay_after(Position { tx: 13, id: 4 }).expect("held"), []);
        assert_eq!(hub.position_of(1), Some(Position { tx: 11, id: 1 }));
        assert_eq!(hub.position_of(2), None);
    }

    #[test]
    fn ephemeral_events_are_broadcast_but_not_kept() {
        let hub = Hub::new(8, 3);
        let mut rx = hub.subscribe();
        hub.send(stored(1, 1));
        hub.send(Arc::new(Event::live(Kind::RunStep, None, None, serde_json::Value::Null)));
        hub.send(stored(2, 2));
        let kinds: Vec<_> = (0..3).map(|_| rx.try_recv().expect("delivered").kind).collect();
        assert_eq!(kinds, [Kind::BeadCreated, Kind::RunStep, Kind::BeadCreated]);
        let kept: Vec<_> = hub
            .replay_after(Position { tx: 1, id: 1 })
            .expect("held")
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kept, [Kind::BeadCreated]);
    }

    #[test]
    fn a_slow_subscriber_is_told_it_lagged_and_the_publisher_never_waits() {
        let hub = Hub::new(2, 0);
        let mut rx = hub.subscribe();
        for id in 1..=5 {
            hub.send(stored(id, id));
        }
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(3))));
        assert_eq!(rx.try_recv().expect("newest kept").id, Some(4));
    }
}
