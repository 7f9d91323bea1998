//! The NATS JetStream backend: this replica's events go to one stream (subjects
//! `<prefix>.<kind>`); an ordered consumer brings the other replicas' back. A stored event
//! from elsewhere only wakes the local feed, which reads it from Postgres in commit order;
//! an ephemeral one is fanned out as it is. While the server is away nothing waits on it:
//! sends are counted as failed, the feed's poll brings others' rows, and the client
//! reconnects on its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, stream::FuturesUnordered};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Backend, BusState, Event, Hub};

/// Header naming the replica that published a message.
const ORIGIN: &str = "Loom-Origin";
/// Sends waiting to go out; beyond it they are dropped (Postgres has them).
const QUEUE: usize = 16_384;
/// Sends awaiting the server's acknowledgement at once.
const IN_FLIGHT: usize = 512;

#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub url: String,
    /// Subjects are `<prefix>.<kind>`.
    pub prefix: String,
    /// The JetStream stream holding them.
    pub stream: String,
    /// How long the stream keeps events (Postgres keeps the history).
    pub max_age: Duration,
}

impl NatsConfig {
    pub fn new(url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            prefix: "loom".into(),
            stream: "LOOM".into(),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

pub struct NatsBackend {
    queue: mpsc::Sender<Arc<Event>>,
    shared: Arc<Shared>,
    client: async_nats::Client,
}

#[derive(Default)]
struct Shared {
    connected: AtomicBool,
    published: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
    /// Queued or awaiting acknowledgement.
    pending: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, what: &str, e: impl std::fmt::Display) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let message = format!("{what}: {e}");
        let mut last = self.last_error.lock().unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, "NATS");
            *last = Some(message);
        }
    }
}

impl NatsBackend {
    /// Connects (or keeps trying in the background: Loom starts without its NATS server),
    /// and starts the sender and the receiver.
    pub async fn start(
        config: NatsConfig,
        origin: &str,
        hub: Arc<Hub>,
        committed: Arc<Notify>,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Arc<NatsBackend>, Vec<tokio::task::JoinHandle<()>>)> {
        let shared = Arc::new(Shared::default());
        let events = shared.clone();
        let wake = committed.clone();
        let client = async_nats::ConnectOptions::new()
            .name(origin)
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let (events, wake) = (events.clone(), wake.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            events.connected.store(true, Ordering::Relaxed);
                            tracing::info!("connected to NATS");
                            // Catch up at once on what others wrote while we were away.
                            wake.notify_one();
                        }
                        async_nats::Event::Disconnected => {
                            events.connected.store(false, Ordering::Relaxed);
                            tracing::warn!("lost the NATS connection; events reach other replicas through Postgres until it is back");
                        }
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(&config.url)
            .await?;
        let js = jetstream::new(client.clone());
        let (queue, rx) = mpsc::channel(QUEUE);
        let sender = tokio::spawn(send_loop(
            js.clone(),
            config.clone(),
            origin.to_owned(),
            rx,
            shared.clone(),
            cancel.clone(),
        ));
        let receiver = tokio::spawn(receive_loop(
            js,
            config,
            origin.to_owned(),
            hub,
            committed,
            shared.clone(),
            cancel,
        ));
        Ok((Arc::new(NatsBackend { queue, shared, client }), vec![sender, receiver]))
    }
}

impl Backend for NatsBackend {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn forward(&self, event: &Arc<Event>) {
        if !self.shared.connected.load(Ordering::Relaxed) {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        if self.queue.try_send(event.clone()).is_err() {
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            self.shared.fail("dropped an event", "the outgoing queue is full");
        }
    }

    fn state(&self) -> BusState {
        let s = &self.shared;
        BusState {
            backend: self.name().into(),
            connected: s.connected.load(Ordering::Relaxed),
            published: s.published.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            lagged: 0,
            last_error: s.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.shared.pending.load(Ordering::Relaxed) > 0
                && self.shared.connected.load(Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        })
    }
}

fn subject(config: &NatsConfig, event: &Event) -> String {
    format!("{}.{}", config.prefix, event.kind)
}

/// Creates the stream when it is missing; an existing one is used as it is.
async fn ensure_stream(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> anyhow::Result<stream::Stream> {
    Ok(js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.prefix)],
            max_age: config.max_age,
            // Postgres keeps the history: the stream is bounded, oldest dropped first.
            max_bytes: 1 << 30,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await?)
}

/// Publishes queued events, many awaiting acknowledgement at once. Stored events carry a
/// message id, so a send repeated after a reconnect is kept once by the server.
async fn send_loop(
    js: jetstream::Context,
    config: NatsConfig,
    origin: String,
    mut rx: mpsc::Receiver<Arc<Event>>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut acks = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled(), if acks.is_empty() && rx.is_empty() => break,
            Some(acked) = acks.next(), if !acks.is_empty() => {
                shared.pending.fetch_sub(1, Ordering::Relaxed);
                match acked {
                    Ok(()) => { shared.published.fetch_add(1, Ordering::Relaxed); }
                    Err(e) => shared.fail("publishing", e),
                }
            }
            event = rx.recv(), if acks.len() < IN_FLIGHT => {
                let Some(event) = event else { break };
                let payload = match serde_json::to_vec(&*event) {
                    Ok(p) => p,
                    Err(e) => { shared.pending.fetch_sub(1, Ordering::Relaxed); shared.fail("encoding", e); continue; }
                };
                let mut publish = PublishMessage::build().payload(payload.into()).header(ORIGIN, origin.as_str());
                if let Some(id) = event.id {
                    publish = publish.message_id(format!("activity-{id}"));
                }
                let js = js.clone();
                let subject = subject(&config, &event);
                acks.push(async move {
                    let ack = js.send_publish(subject, publish).await.map_err(|e| e.to_string())?;
                    ack.await.map(|_| ()).map_err(|e| e.to_string())
                });
            }
        }
    }
}

/// Brings the other replicas' events in, through an ordered consumer that starts at the
/// newest message and is recreated whenever it breaks.
async fn receive_loop(
    js: jetstream::Context,
    config: NatsConfig,
    origin: String,
    hub: Arc<Hub>,
    committed: Arc<Notify>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut retry = Duration::from_millis(200);
    loop {
        let attempt = async {
            let stream = ensure_stream(&js, &config).await?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: format!("{}.>", config.prefix),
                    deliver_policy: consumer::DeliverPolicy::New,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            tracing::debug!(stream = %config.stream, "receiving other replicas' events");
            while let Some(message) = messages.next().await {
                let message = message?;
                receive(&message.message, &origin, &hub, &committed, &shared);
            }
            anyhow::Ok(())
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            outcome = attempt => {
                if let Err(e) = outcome {
                    shared.fail("receiving", e);
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(Duration::from_secs(5));
    }
}

fn receive(
    message: &async_nats::Message,
    origin: &str,
    hub: &Hub,
    committed: &Notify,
    shared: &Shared,
) {
    let from = message.headers.as_ref().and_then(|h| h.get(ORIGIN)).map(|v| v.as_str());
    if from == Some(origin) {
        return;
    }
    let event: Event = match serde_json::from_slice(&message.payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, subject = %message.subject, "ignoring a message that is not a Loom event");
            return;
        }
    };
    shared.received.fetch_add(1, Ordering::Relaxed);
    if event.id.is_some() {
        // The feed reads it from Postgres, in its place.
        committed.notify_one();
    } else {
        crate::metrics::get().delivered("live", &event);
        hub.send(Arc::new(event));
    }
}
