use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use futures_util::FutureExt;
use serde_json::json;

use super::*;
use crate::events::{Bus, Event, Kind};
use crate::notifications::NotificationWakers;

fn raised_for(user: Uuid, seq: i64) -> Received {
    let data = json!({ "user_id": user.to_string(), "seq": seq });
    Received::Event(Arc::new(Event::live(Kind::Notification, None, None, data)))
}

/// Whether a wake-up is waiting for `w`, taking it if so.
fn woken(w: &mut Wake) -> bool {
    w.wait().now_or_never() == Some(true)
}

/// A pool that never connects: for a task that is never asked to check a user.
fn unused_pool() -> Pool {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new("postgres://unused");
    Pool::builder(manager).build().expect("a pool")
}

#[test]
fn a_raise_wakes_every_stream_of_its_user_and_nobody_else() {
    let wakers = NotificationWakers::default();
    let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
    let (mut tab1, mut tab2, mut other) = (wakers.follow(u), wakers.follow(u), wakers.follow(v));
    wakers.on(&raised_for(u, 1));
    assert!(woken(&mut tab1) && woken(&mut tab2), "both tabs of the user");
    assert!(!woken(&mut other), "another user's stream");
    assert!(!woken(&mut tab1), "one raise is one wake-up");
    assert_eq!(wakers.wakes_sent(), 1, "counted once per user");
}

#[test]
fn other_events_wake_nobody_and_a_lag_asks_for_a_check_instead_of_waking_all() {
    let wakers = NotificationWakers::default();
    let (mut a, mut b) = (wakers.follow(Uuid::new_v4()), wakers.follow(Uuid::new_v4()));
    let step = Event::live(Kind::RunStep, Some("p"), Some("p-1"), json!({ "turn": 1 }));
    let step = Received::Event(Arc::new(step));
    assert!((0..10_000).all(|_| !wakers.on(&step)), "no step asks for a check");
    let odd = json!({ "user_id": "not a uuid" });
    wakers.on(&Received::Event(Arc::new(Event::live(Kind::Notification, None, None, odd))));
    assert!(!woken(&mut a) && !woken(&mut b));
    assert!(wakers.on(&Received::Lagged(7)), "a lag asks for a check");
    assert!(!woken(&mut a) && !woken(&mut b), "and by itself wakes nobody");
    assert_eq!(wakers.wakes_sent(), 0);
}

#[test]
fn a_raise_a_wake_up_already_covered_wakes_nobody() {
    let wakers = NotificationWakers::default();
    let u = Uuid::new_v4();
    let mut w = wakers.follow(u);
    wakers.on(&raised_for(u, 5));
    assert!(woken(&mut w));
    for seq in [5, 4] {
        wakers.on(&raised_for(u, seq));
        assert!(!woken(&mut w), "seq {seq} was committed before the wake-up for 5");
    }
    wakers.on(&raised_for(u, 6));
    assert!(woken(&mut w));
    assert_eq!(wakers.woken_by_check(&[u], &HashMap::from([(u, 6)])), 0, "nor a check");
}

#[test]
fn a_check_wakes_users_seen_first_once_then_only_those_whose_latest_raise_grew() {
    let wakers = NotificationWakers::default();
    let (u, v, quiet) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (mut wu, mut wv, mut wq) = (wakers.follow(u), wakers.follow(v), wakers.follow(quiet));
    let all = [u, v, quiet];
    // `quiet` has no notification at all: absent from what Postgres says.
    let latest = HashMap::from([(u, 3), (v, 8)]);
    assert_eq!(wakers.woken_by_check(&all, &latest), 3, "each first seen, once");
    assert!(woken(&mut wu) && woken(&mut wv) && woken(&mut wq));
    assert_eq!(wakers.woken_by_check(&all, &latest), 0, "nothing grew");
    assert!(!woken(&mut wu) && !woken(&mut wv) && !woken(&mut wq));
    let grown = HashMap::from([(u, 4), (v, 8)]);
    assert_eq!(wakers.woken_by_check(&all, &grown), 1);
    assert!(woken(&mut wu) && !woken(&mut wv) && !woken(&mut wq));
    assert_eq!(wakers.wakes_sent(), 4);
}

#[test]
fn a_check_wakes_a_user_who_left_and_came_back_while_it_asked() {
    let wakers = NotificationWakers::default();
    let (u, gone) = (Uuid::new_v4(), Uuid::new_v4());
    let (first, left) = (wakers.follow(u), wakers.follow(gone));
    wakers.woken_by_check(&[u], &HashMap::from([(u, 2)]));
    // Asked about both; meanwhile `u` closed the tab and opened another, `gone` left.
    let asked = [u, gone];
    drop((first, left));
    let mut again = wakers.follow(u);
    assert_eq!(wakers.woken_by_check(&asked, &HashMap::from([(u, 2), (gone, 9)])), 1);
    assert!(woken(&mut again), "a new stream is first seen again");
    assert_eq!(wakers.users(), 1);
}

#[test]
fn a_wake_up_while_the_stream_reads_is_kept_for_its_next_wait() {
    let wakers = NotificationWakers::default();
    let u = Uuid::new_v4();
    let mut w = wakers.follow(u);
    // Registered, then reading Postgres (not waiting) when the raises' events come.
    wakers.on(&raised_for(u, 1));
    wakers.on(&raised_for(u, 2));
    assert!(woken(&mut w), "the wait after the read returns at once");
    assert!(!woken(&mut w), "two wake-ups before a wait are one read");
    // Taken; a raise after the stream has started waiting wakes that wait.
    let mut waiting = Box::pin(w.wait());
    assert!((&mut waiting).now_or_never().is_none());
    wakers.on(&raised_for(u, 3));
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
    wakers.on(&raised_for(u, 1));
    assert!(woken(&mut again), "a user who comes back is woken again");
}

#[tokio::test]
async fn the_task_wakes_from_the_bus_and_ends_every_stream_when_cancelled() {
    let bus = Bus::in_process("test");
    let wakers = NotificationWakers::new(Duration::from_secs(600));
    let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
    let (mut named, mut other) = (wakers.follow(u), wakers.follow(v));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(wakers.clone().run(unused_pool(), bus.subscribe(), cancel.clone()));
    bus.publish(Event::live(Kind::Notification, None, None, json!({ "user_id": u })));
    // Bounds a hang only; the poll is far longer.
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
async fn the_task_checks_at_every_poll() {
    let bus = Bus::in_process("test");
    let wakers = NotificationWakers::new(Duration::from_millis(20));
    // Nobody is followed, so a check needs no database.
    tokio::spawn(wakers.clone().run(unused_pool(), bus.subscribe(), CancellationToken::new()));
    let checked = tokio::time::timeout(Duration::from_secs(10), async {
        while wakers.checks() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert!(checked.await.is_ok(), "three polls came and each checked");
}
