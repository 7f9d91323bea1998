//! Server-sent event streams: the wire format, the response, and the count of open streams.
//! A stream is a `futures` stream of chunks; when the client goes, actix drops it on the
//! next write (a keep-alive at the latest), and its guard counts it out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::http::header::{self, ContentEncoding};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use futures_util::Stream;

use crate::error::Error;
use crate::events::Event;

pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// One event: `id:` (stored events only: a client resumes after it), `event:` the kind,
/// `data:` the event as one line of JSON.
pub fn encode(event: &Event) -> Bytes {
    encode_as(event.id, event.kind.as_str(), event)
}

pub fn encode_as(id: Option<i64>, name: &str, data: &impl serde::Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(json.len() + name.len() + 32);
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str(&format!("event: {name}\ndata: {json}\n\n"));
    Bytes::from(out)
}

/// The id a reconnecting client last saw: the `Last-Event-ID` header (browsers send it
/// on their own), or `last_event_id` in the query for clients that cannot set headers.
pub fn last_event_id(req: &HttpRequest, query: Option<&str>) -> Result<Option<i64>, Error> {
    let raw = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.map(str::to_owned));
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
            Error::invalid(
                "invalid_last_event_id",
                format!("Last-Event-ID must be an event id, got {s:?}"),
            )
        }),
    }
}

/// The streaming response: never compressed or buffered on the way.
pub fn response<S>(stream: S) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
{
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(ContentEncoding::Identity)
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

/// Where a stream's events come from: the next chunk to send, `None` when there are no
/// more. It runs in a task of its own, never interrupted (a keep-alive does not cancel a
/// slow read), until the client goes or Loom shuts down.
pub trait Source: Send + 'static {
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = crate::Result<Option<Bytes>>> + Send;
}

/// Chunks waiting for a slow client; beyond it the source waits (and may lag and catch up).
const BUFFERED: usize = 64;

/// The stream's chunks: `opening`, then each event, or a keep-alive comment when none came
/// in time. A task reads `source`; it ends when the client goes (the response is dropped),
/// when `shutdown` fires, or on an error (the client reconnects and resumes).
pub fn stream<S: Source>(
    mut source: S,
    opening: Bytes,
    keep_alive: std::time::Duration,
    guard: ClientGuard,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(BUFFERED);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
                next = source.next_chunk() => next,
            };
            match next {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "a stream stopped; the client will resume");
                    return;
                }
            }
        }
    });
    let first = futures_util::stream::once(async move { Ok(opening) });
    let events = futures_util::stream::unfold((rx, guard), move |(mut rx, guard)| async move {
        let chunk = match tokio::time::timeout(keep_alive, rx.recv()).await {
            Err(_) => Bytes::from_static(KEEP_ALIVE),
            Ok(Some(chunk)) => chunk,
            Ok(None) => return None,
        };
        Some((Ok(chunk), (rx, guard)))
    });
    futures_util::StreamExt::chain(first, events)
}

/// The first chunk: how long a browser waits before reconnecting, where it resumes if it
/// reconnects before any event (`id:`), and a comment saying the stream is open.
pub fn opening(resume_id: Option<i64>) -> Bytes {
    match resume_id {
        Some(id) => Bytes::from(format!("retry: 2000\nid: {id}\n: connected\n\n")),
        None => Bytes::from_static(b"retry: 2000\n: connected\n\n"),
    }
}

/// Counts a stream as open for as long as it lives.
pub struct ClientGuard(Arc<AtomicUsize>);

impl ClientGuard {
    pub fn new(count: &Arc<AtomicUsize>) -> ClientGuard {
        count.fetch_add(1, Ordering::Relaxed);
        ClientGuard(count.clone())
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Kind;

    #[test]
    fn stored_events_carry_their_id_and_ephemeral_ones_none() {
        let mut e =
            Event::live(Kind::BeadClosed, Some("p"), Some("p-1"), serde_json::json!({"a": "x\ny"}));
        e.id = Some(42);
        let text = String::from_utf8(encode(&e).to_vec()).expect("utf-8");
        assert!(text.starts_with("id: 42\nevent: bead.closed\ndata: {"), "{text}");
        assert!(
            text.ends_with("}\n\n") && text.matches('\n').count() == 4,
            "one data line: {text}"
        );
        e.id = None;
        let text = String::from_utf8(encode(&e).to_vec()).expect("utf-8");
        assert!(text.starts_with("event: bead.closed\n"), "{text}");
    }
}
