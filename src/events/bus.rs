//! The bus: one interface over where events travel. Every backend fans out in this process
//! through the `Hub`; a `Backend` also carries this replica's events to the others (NATS)
//! or nowhere (in-process, for a single replica).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{Notify, broadcast};

use super::{Event, Hub};

/// Carries events between replicas. Implementations never block the caller: they queue,
/// and a queue that is full drops (Postgres has every stored event anyway).
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Sends one of this replica's events to the others.
    fn forward(&self, event: &Arc<Event>);
    /// The backend's own view of itself.
    fn state(&self) -> BusState;
    /// Waits (bounded) until what was forwarded has left, at shutdown.
    fn flush(&self) -> BoxFuture<'_, ()>;
}

/// How the bus is doing, for `/readyz` and `/api/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BusState {
    /// `in-process` or `nats`.
    pub backend: String,
    /// False while a NATS backend has lost its server (events then reach other replicas
    /// through Postgres, later).
    pub connected: bool,
    /// Events this replica sent to the other replicas.
    pub published: u64,
    /// Sends that failed or were dropped because the outgoing queue was full.
    pub failed: u64,
    /// Events received from other replicas.
    pub received: u64,
    /// Times a subscriber in this process fell behind and caught up from Postgres.
    pub lagged: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The single-replica backend: nothing leaves the process.
pub struct InProcess;

impl Backend for InProcess {
    fn name(&self) -> &'static str {
        "in-process"
    }
    fn forward(&self, _event: &Arc<Event>) {}
    fn state(&self) -> BusState {
        BusState { backend: self.name().into(), connected: true, ..BusState::default() }
    }
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[derive(Clone)]
pub struct Bus(Arc<Inner>);

struct Inner {
    hub: Arc<Hub>,
    backend: Arc<dyn Backend>,
    committed: Arc<Notify>,
    origin: String,
    lagged: AtomicU64,
}

/// Broadcast capacity per subscriber, and stored events kept for reconnecting clients.
const CAPACITY: usize = 4096;
const RING: usize = 4096;

impl Bus {
    /// A bus for one replica. `origin` names this replica (its database connections'
    /// `application_name`).
    pub fn in_process(origin: &str) -> Bus {
        Bus::with_backend(origin, Bus::new_hub(), Arc::new(Notify::new()), Arc::new(InProcess))
    }

    pub fn new_hub() -> Arc<Hub> {
        Arc::new(Hub::new(CAPACITY, RING))
    }

    /// A bus over `backend`, which shares `hub` (where it delivers others' ephemeral
    /// events) and `committed` (which it notifies when another replica stored one).
    pub fn with_backend(
        origin: &str,
        hub: Arc<Hub>,
        committed: Arc<Notify>,
        backend: Arc<dyn Backend>,
    ) -> Bus {
        Bus(Arc::new(Inner {
            hub,
            backend,
            committed,
            origin: origin.to_owned(),
            lagged: AtomicU64::new(0),
        }))
    }

    /// Publishes an ephemeral event (a run's step, a chat delta) here and to the other
    /// replicas. Stored events are published by the `Feed` once they have committed.
    pub fn publish(&self, event: Event) {
        debug_assert!(event.id.is_none(), "stored events are published by the feed");
        let event = Arc::new(event);
        self.0.hub.send(event.clone());
        self.0.backend.forward(&event);
    }

    /// Says that a transaction of this process stored activity, so the feed reads it now
    /// rather than at its next poll. Call it after the commit.
    pub fn committed(&self) {
        self.0.committed.notify_one();
    }

    pub fn committed_notify(&self) -> &Notify {
        &self.0.committed
    }

    /// The feed hands over a committed event; `own` ones are also sent to the other
    /// replicas (each replica sends only what it wrote, so each goes out once).
    pub fn deliver(&self, event: Arc<Event>, own: bool) {
        if own {
            self.0.backend.forward(&event);
        }
        self.0.hub.send(event);
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription { rx: self.0.hub.subscribe(), bus: self.clone() }
    }

    pub fn hub(&self) -> &Hub {
        &self.0.hub
    }

    pub fn origin(&self) -> &str {
        &self.0.origin
    }

    pub fn state(&self) -> BusState {
        let mut state = self.0.backend.state();
        state.lagged = self.0.lagged.load(Ordering::Relaxed);
        state
    }

    pub async fn flush(&self) {
        self.0.backend.flush().await;
    }
}

/// What a subscriber gets next.
#[derive(Debug)]
pub enum Received {
    Event(Arc<Event>),
    /// This many events were missed; catch up from Postgres.
    Lagged(u64),
}

pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    bus: Bus,
}

impl Subscription {
    /// The next event; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.rx.recv().await {
            Ok(e) => Some(Received::Event(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                self.bus.0.lagged.fetch_add(1, Ordering::Relaxed);
                Some(Received::Lagged(n))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
