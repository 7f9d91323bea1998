//! An SSE client over real HTTP, for tests: frames as the server sends them, with a bound on
//! how long to wait for each.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use loom::cli::sse::{Frame, Parser};

pub struct SseClient {
    body: BoxStream<'static, reqwest::Result<actix_web::web::Bytes>>,
    parser: Parser,
    frames: VecDeque<Frame>,
}

/// Longest a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(15);

impl SseClient {
    /// Opens `url` with `token`, resuming after `last_event_id`; panics unless it is a
    /// 200 event stream.
    pub async fn open(url: &str, token: &str, last_event_id: Option<&str>) -> SseClient {
        match SseClient::try_open(url, token, last_event_id).await {
            Ok(c) => c,
            Err((status, body)) => panic!("stream {url}: {status} {body}"),
        }
    }

    /// Opens a stream, or gives back the refusal's status and body.
    pub async fn try_open(
        url: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseClient, (reqwest::StatusCode, String)> {
        let mut req = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.expect("request");
        if res.status() != reqwest::StatusCode::OK {
            let status = res.status();
            return Err((status, res.text().await.unwrap_or_default()));
        }
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/event-stream"), "content type {kind}");
        Ok(SseClient {
            body: res.bytes_stream().boxed(),
            parser: Parser::new(),
            frames: VecDeque::new(),
        })
    }

    /// The next frame (event or comment), or `None` if none came within `wait` or the
    /// stream ended.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Some(f);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??;
            self.frames.extend(self.parser.push(&chunk.expect("stream chunk")));
        }
    }

    /// The next event, skipping comments; panics if none comes in time.
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let f = self.next_frame(WAIT).await.expect("an event in time");
            if !f.is_comment() {
                return f;
            }
        }
    }

    /// Events until one of `kind` arrives (returned last).
    pub async fn until(&mut self, kind: &str) -> Vec<Frame> {
        let mut seen = Vec::new();
        loop {
            let f = self.next_event().await;
            let done = f.event == kind;
            seen.push(f);
            if done {
                return seen;
            }
        }
    }

    /// Nothing but comments arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = Vec::new();
        while let Some(f) = self.next_frame(deadline - tokio::time::Instant::now()).await {
            if !f.is_comment() {
                events.push(f);
            }
        }
        events
    }
}

/// The JSON of an event frame.
pub fn data(f: &Frame) -> serde_json::Value {
    serde_json::from_str(&f.data).expect("JSON data")
}
