//! When this process's notification streams should ask Postgres again. One task reads the
//! bus for them all: a raise for a user wakes only that user's streams (every tab of
//! theirs), while a lag on the bus or a shared tick wakes every stream, so a lost event
//! only delays. No other event (a run's every step) wakes a stream at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::{Kind, Received, Subscription};

/// Wakes every stream this often even when the bus said nothing: covers a raise whose
/// event was lost (NATS away, a replica that died after its commit).
const TICK: Duration = Duration::from_secs(10);

/// The registry of followed users, shared by the streams and the task that wakes them.
#[derive(Clone)]
pub struct NotificationWakers(Arc<Shared>);

struct Shared {
    tick: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// One channel per user with a stream open here. A wake-up bumps its version; each
    /// receiver remembers the version it last saw, so a wake-up that comes while its
    /// stream is reading Postgres is still there when it next waits.
    users: HashMap<Uuid, watch::Sender<()>>,
    /// The task has ended (shutdown): nothing will wake a stream again.
    closed: bool,
}

/// One stream's wake-ups; dropping the last of a user's removes the user.
pub struct Wake {
    user: Uuid,
    rx: watch::Receiver<()>,
    wakers: Arc<Shared>,
}

impl Default for NotificationWakers {
    fn default() -> Self {
        NotificationWakers::new(TICK)
    }
}

impl NotificationWakers {
    /// Wakes every stream each `tick` once `run` runs.
    pub fn new(tick: Duration) -> NotificationWakers {
        NotificationWakers(Arc::new(Shared { tick, state: Mutex::default() }))
    }

    /// Registers a stream of `user`'s. Register before reading Postgres: a raise after the
    /// read then wakes it. After shutdown the stream is told at once.
    pub fn follow(&self, user: Uuid) -> Wake {
        let mut state = self.0.lock();
        let rx = if state.closed {
            // Its sender is dropped here: the first wait says the wake-ups have ended.
            watch::channel(()).1
        } else {
            state.users.entry(user).or_insert_with(|| watch::channel(()).0).subscribe()
        };
        Wake { user, rx, wakers: self.0.clone() }
    }

    /// Reads `events` and wakes streams until the bus has gone or `cancel` fires; then
    /// every stream ends.
    pub async fn run(self, mut events: Subscription, cancel: CancellationToken) {
        let tick = self.0.tick;
        let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => self.wake_all(),
                received = events.recv() => match received {
                    Some(received) => self.on(&received),
                    None => break,
                },
            }
        }
        self.close();
    }

    /// What one bus delivery wakes: the streams of the user a raise is for, or, after a
    /// lag (that raise may be among the missed), every stream.
    pub fn on(&self, received: &Received) {
        match received {
            Received::Event(e) if e.kind == Kind::Notification => {
                if let Some(user) = e.data["user_id"].as_str().and_then(|u| u.parse().ok()) {
                    self.wake(user);
                }
            }
            Received::Event(_) => {}
            Received::Lagged(_) => self.wake_all(),
        }
    }

    fn wake(&self, user: Uuid) {
        if let Some(tx) = self.0.lock().users.get(&user) {
            tx.send_replace(());
        }
    }

    fn wake_all(&self) {
        for tx in self.0.lock().users.values() {
            tx.send_replace(());
        }
    }

    /// Drops every user's sender: each stream reads once more if woken, then ends.
    fn close(&self) {
        let mut state = self.0.lock();
        state.closed = true;
        state.users.clear();
    }

    /// How many users have a stream registered.
    #[cfg(test)]
    fn users(&self) -> usize {
        self.0.lock().users.len()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake {
    /// Waits for a wake-up since the last one this stream took (at once if one came in
    /// between); false once there will be none (shutdown).
    pub async fn wait(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        let mut state = self.wakers.lock();
        // Receivers are made only under this lock, so the count cannot grow meanwhile;
        // this stream's own receiver is still alive here.
        if state.users.get(&self.user).is_some_and(|tx| tx.receiver_count() == 1) {
            state.users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::FutureExt;
    use serde_json::json;

    use super::*;
    use crate::events::{Bus, Event};

    fn raised_for(user: Uuid) -> Received {
        let data = json!({ "user_id": user.to_string(), "seq": 1 });
        Received::Event(Arc::new(Event::live(Kind::Notification, None, None, data)))
    }

    /// Whether a wake-up is waiting for `w`, taking it if so.
    fn woken(w: &mut Wake) -> bool {
        w.wait().now_or_never() == Some(true)
    }

    #[test]
    fn a_raise_wakes_every_stream_of_its_user_and_nobody_else() {
        let wakers = NotificationWakers::default();
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let (mut tab1, mut tab2, mut other) =
            (wakers.follow(u), wakers.follow(u), wakers.follow(v));
        wakers.on(&raised_for(u));
        assert!(woken(&mut tab1) && woken(&mut tab2), "both tabs of the user");
        assert!(!woken(&mut other), "another user's stream");
        assert!(!woken(&mut tab1), "one raise is one wake-up");
    }

    #[test]
    fn other_events_wake_nobody_and_a_lag_wakes_everybody() {
        let wakers = NotificationWakers::default();
        let (mut a, mut b) = (wakers.follow(Uuid::new_v4()), wakers.follow(Uuid::new_v4()));
        let step = Event::live(Kind::RunStep, Some("p"), Some("p-1"), json!({ "turn": 1 }));
        for _ in 0..100 {
            wakers.on(&Received::Event(Arc::new(step.clone())));
        }
        let odd = json!({ "user_id": "not a uuid" });
        wakers.on(&Received::Event(Arc::new(Event::live(Kind::Notification, None, None, odd))));
        assert!(!woken(&mut a) && !woken(&mut b));
        wakers.on(&Received::Lagged(7));
        assert!(woken(&mut a) && woken(&mut b));
    }

    #[test]
    fn a_wake_up_while_the_stream_reads_is_kept_for_its_next_wait() {
        let wakers = NotificationWakers::default();
        let u = Uuid::new_v4();
        let mut w = wakers.follow(u);
        // Registered, then reading Postgres (not waiting) when the raise's event comes.
        wakers.on(&raised_for(u));
        wakers.on(&raised_for(u));
        assert!(woken(&mut w), "the wait after the read returns at once");
        assert!(!woken(&mut w), "two wake-ups before a wait are one read");
        // Taken; a raise after the stream has started waiting wakes that wait.
        let mut waiting = Box::pin(w.wait());
        assert!((&mut waiting).now_or_never().is_none());
        wakers.on(&raised_for(u));
        assert_eq!(waiting.now_or_never(), Some(true));
    }

    #[test]
    fn the_last_stream_of_a_user_to_go_removes_the_user() {
        let wakers = NotificationWakers::default();
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let (tab1, tab2, other) = (wakers.follow(u), wakers.follow(u), wakers.follow(v));
        assert_eq!(wakers.users(), 2);
        drop(tab1);
        assert_eq!(wakers.users(), 2, "the user's other tab is still open");
        drop(tab2);
        assert_eq!(wakers.users(), 1);
        drop(other);
        assert_eq!(wakers.users(), 0);
        let mut again = wakers.follow(u);
        wakers.on(&raised_for(u));
        assert!(woken(&mut again), "a user who comes back is woken again");
    }

    #[tokio::test]
    async fn the_task_wakes_from_the_bus_and_ends_every_stream_when_cancelled() {
        let bus = Bus::in_process("test");
        let wakers = NotificationWakers::default();
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let (mut named, mut other) = (wakers.follow(u), wakers.follow(v));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(wakers.clone().run(bus.subscribe(), cancel.clone()));
        bus.publish(Event::live(Kind::Notification, None, None, json!({ "user_id": u })));
        // Bounds a hang only, shorter than the tick that would also wake it.
        let wait = Duration::from_secs(5);
        assert_eq!(tokio::time::timeout(wait, named.wait()).await.ok(), Some(true));
        assert!(!woken(&mut other));
        cancel.cancel();
        task.await.expect("the task ends");
        assert!(!named.wait().await && !other.wait().await, "every stream ends");
        assert!(!wakers.follow(u).wait().await, "and one opened after shutdown at once");
        assert_eq!(wakers.users(), 0);
    }

    #[tokio::test]
    async fn the_tick_wakes_a_stream_the_bus_never_named() {
        let bus = Bus::in_process("test");
        let wakers = NotificationWakers::new(Duration::from_millis(20));
        let mut w = wakers.follow(Uuid::new_v4());
        tokio::spawn(wakers.clone().run(bus.subscribe(), CancellationToken::new()));
        let woken = tokio::time::timeout(Duration::from_secs(10), w.wait()).await;
        assert_eq!(woken.ok(), Some(true));
    }
}
