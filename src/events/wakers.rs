//! When this process's streams of one kind (a user's notifications, a conversation's
//! replies) should ask Postgres again. Each stream follows a key (a user, a conversation);
//! what a key has is a sequence of rows with growing positions, each committed before the
//! next takes its position (one writer at a time per key). One task reads the bus for all
//! streams of a kind: an event about a key wakes only that key's streams (every tab), and
//! no other event (a run's every step) wakes a stream at all. For an event that was lost
//! (NATS away, a replica that died after its commit, a lag on the bus), the same task asks
//! Postgres every poll and at once after a lag, in one query for every key followed here,
//! whose latest position moved, and wakes only those: a poll costs one connection for a
//! moment however many streams are open, not one each.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Event, Received, Subscription};
use crate::db::{Conn, Pool};
use crate::error::Result;

/// What one kind of stream follows: which events tell of a new row for a key, and how to
/// ask Postgres for every key's latest position.
pub trait Watched: Send + Sync + 'static {
    /// Said in logs: "the {WHAT} wakers could not check Postgres".
    const WHAT: &'static str;

    /// The key an event tells of a new row for, with the row's position when it says.
    fn raised(event: &Event) -> Option<(Uuid, Option<i64>)>;

    /// The latest position of each of `keys`, in one query; keys with none are absent.
    fn latest<'a>(
        conn: &'a mut Conn,
        keys: &'a [Uuid],
    ) -> impl Future<Output = Result<HashMap<Uuid, i64>>> + Send + 'a;
}

/// The registry of followed keys, shared by the streams and the task that wakes them.
pub struct Wakers<W>(Arc<Shared>, PhantomData<fn() -> W>);

impl<W> Clone for Wakers<W> {
    fn clone(&self) -> Self {
        Wakers(self.0.clone(), PhantomData)
    }
}

struct Shared {
    poll: Duration,
    state: Mutex<State>,
    /// Keys woken so far, once per key however many streams follow it.
    wakes: AtomicU64,
    /// Checks of Postgres done so far.
    checks: AtomicU64,
}

#[derive(Default)]
struct State {
    users: HashMap<Uuid, Followed>,
    /// The task has ended (shutdown): nothing will wake a stream again.
    closed: bool,
}

/// A key (a user, say) with a stream open here. For notifications, a raise is a row and its
/// `seq` the position.
///
/// Why comparing latest positions finds every row: the rows of a key have one writer at a
/// time (raises: the notifier, under its cursor's row lock), so one has committed before the
/// next takes its position, and a larger one is a later commit (the streams' reads rely on
/// this too).
/// `covered = Some(s)` means a wake-up went out after every raise up to `s` had committed,
/// so the streams' next read has them all; a raise they may not have read yet therefore
/// has a `seq` above `s`, and the first check (or bus event) that sees it wakes them.
///
/// A user first seen by a check (`covered` is `None`) is woken once whatever the check
/// finds. Their stream registered and then read Postgres; a raise that committed after
/// that read but before this check, its event lost, is already in the `seq` the check
/// sees. Taking that `seq` as covered without a wake-up would hide the raise for good, so
/// each newly followed user costs one extra read instead.
struct Followed {
    /// A wake-up bumps its version; each receiver remembers the version it last saw, so a
    /// wake-up that comes while its stream is reading Postgres is still there when it next
    /// waits.
    tx: watch::Sender<()>,
    covered: Option<i64>,
}

/// One stream's wake-ups; dropping the last of a key's removes the key.
pub struct Wake {
    user: Uuid,
    rx: watch::Receiver<()>,
    wakers: Arc<Shared>,
}

impl<W: Watched> Default for Wakers<W> {
    fn default() -> Self {
        Wakers::new(crate::config::EventsConfig::default().notification_poll)
    }
}

impl<W: Watched> Wakers<W> {
    /// Checks Postgres every `poll` once `run` runs.
    pub fn new(poll: Duration) -> Wakers<W> {
        let shared = Shared {
            poll,
            state: Mutex::default(),
            wakes: AtomicU64::new(0),
            checks: AtomicU64::new(0),
        };
        Wakers(Arc::new(shared), PhantomData)
    }

    /// Registers a stream of `user`'s. Register before reading Postgres: a raise after the
    /// read then wakes it. After shutdown the stream is told at once.
    pub fn follow(&self, user: Uuid) -> Wake {
        let mut state = self.0.lock();
        let rx = if state.closed {
            // Its sender is dropped here: the first wait says the wake-ups have ended.
            watch::channel(()).1
        } else {
            let new = || Followed { tx: watch::channel(()).0, covered: None };
            state.users.entry(user).or_insert_with(new).tx.subscribe()
        };
        Wake { user, rx, wakers: self.0.clone() }
    }

    /// Reads `events` and wakes streams until the bus has gone or `cancel` fires; then
    /// every stream ends. Checks Postgres every poll and after a lag, one check at a time
    /// and beside the bus, so a slow database delays no raise's wake-up; a check asked for
    /// while one runs follows it (the running one may have read before what was missed).
    pub async fn run(self, pool: Pool, mut events: Subscription, cancel: CancellationToken) {
        let poll = self.0.poll;
        let mut ticks = tokio::time::interval_at(Instant::now() + poll, poll);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut checking: Option<BoxFuture<'static, Result<usize>>> = None;
        let (mut again, mut failures) = (false, 0u32);
        loop {
            let checked = async {
                match checking.as_mut() {
                    Some(check) => check.await,
                    None => std::future::pending().await,
                }
            };
            let due = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => true,
                result = checked => {
                    checking = None;
                    log_failures(W::WHAT, result, &mut failures);
                    std::mem::take(&mut again)
                }
                received = events.recv() => match received {
                    Some(received) => self.on(&received),
                    None => break,
                },
            };
            if due && checking.is_some() {
                again = true;
            } else if due {
                let (wakers, pool) = (self.clone(), pool.clone());
                checking = Some(Box::pin(async move { wakers.check(&pool).await }));
            }
        }
        self.close();
    }

    /// What one bus delivery does: an event about a key wakes its streams; a lag (such an
    /// event may be among what was missed) asks for a check of Postgres (true).
    pub fn on(&self, received: &Received) -> bool {
        match received {
            Received::Event(e) => {
                if let Some((key, position)) = W::raised(e) {
                    self.raised(key, position);
                }
                false
            }
            Received::Lagged(_) => true,
        }
    }

    /// Asks Postgres, in one query, for the latest raise of every user followed here, and
    /// wakes those with one no wake-up has covered (see `Followed`); how many it woke.
    pub async fn check(&self, pool: &Pool) -> Result<usize> {
        let users: Vec<Uuid> = self.0.lock().users.keys().copied().collect();
        let latest = if users.is_empty() {
            HashMap::new()
        } else {
            W::latest(&mut *pool.get().await?, &users).await?
        };
        self.0.checks.fetch_add(1, Ordering::Relaxed);
        Ok(self.woken_by_check(&users, &latest))
    }

    /// Users woken so far, once per user however many tabs they have open.
    pub fn wakes_sent(&self) -> u64 {
        self.0.wakes.load(Ordering::Relaxed)
    }

    /// Checks of Postgres done so far (by the poll, after lags, or called).
    pub fn checks(&self) -> u64 {
        self.0.checks.load(Ordering::Relaxed)
    }

    /// A raise for `user` with `seq` has committed: wakes their streams unless a wake-up
    /// already covered it.
    fn raised(&self, user: Uuid, seq: Option<i64>) {
        let mut state = self.0.lock();
        let Some(followed) = state.users.get_mut(&user) else { return };
        if let Some(seq) = seq {
            if followed.covered.is_some_and(|c| c >= seq) {
                return;
            }
            followed.covered = Some(seq);
        }
        self.0.wake(followed);
    }

    /// Wakes the users `asked` about whose latest raise (`latest`, none when absent) no
    /// wake-up has covered yet, and those seen for the first time.
    fn woken_by_check(&self, asked: &[Uuid], latest: &HashMap<Uuid, i64>) -> usize {
        let mut state = self.0.lock();
        let mut woken = 0;
        for user in asked {
            // Gone since the query: nothing to wake. Followed again since: a new entry,
            // first seen now (an older `seq` is no harm, see `Followed`).
            let Some(followed) = state.users.get_mut(user) else { continue };
            let last = latest.get(user).copied().unwrap_or(0);
            if followed.covered.is_none_or(|c| last > c) {
                followed.covered = Some(last);
                self.0.wake(followed);
                woken += 1;
            }
        }
        woken
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

/// Logs a failed check, the first and then ever more rarely while they keep failing; the
/// next poll tries again.
fn log_failures(what: &str, result: Result<usize>, failures: &mut u32) {
    match result {
        Ok(_) => *failures = 0,
        Err(e) => {
            *failures += 1;
            if *failures == 1 || failures.is_power_of_two() {
                tracing::warn!(
                    error = %e,
                    failures = *failures,
                    "the {what} wakers could not check Postgres; retrying at the next poll"
                );
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, followed: &Followed) {
        followed.tx.send_replace(());
        self.wakes.fetch_add(1, Ordering::Relaxed);
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
        if state.users.get(&self.user).is_some_and(|f| f.tx.receiver_count() == 1) {
            state.users.remove(&self.user);
        }
    }
}

#[cfg(test)]
#[path = "wakers_tests.rs"]
mod tests;
