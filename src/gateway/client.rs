//! The HTTP client: one try at a time through `try_once`, retried by `call` under the
//! `RetryPolicy`, each try recorded and the health state updated from the result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use uuid::Uuid;

use super::calls::{GatewayCall, Recorder};
use super::canary::{Canary, Verdict};
use super::error::GatewayError;
use super::health::{Health, HealthState};
use super::retry::{RetryPolicy, jitter_unit, parse_retry_after, retryable_status};
use super::sse::SseDecoder;
use super::wire::{Chunk, Completion, Message, Request, Response, StreamOptions, Tool};
use crate::config::Secret;
use crate::db::Pool;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The base URL, ending in `/v1` as OpenAI SDKs' `base_url`.
    pub url: String,
    pub api_key: Option<Secret>,
    pub model: String,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Longest a whole (non-streamed) reply may take.
    pub request_timeout: Duration,
    /// Longest a streamed reply may go without sending anything.
    pub stream_idle_timeout: Duration,
    /// How often the probe asks the gateway whether it is there.
    pub probe_interval: Duration,
    /// Least time between two canaries (the trivial completion that tells a refusal of one
    /// request from a refusal of every request).
    pub canary_interval: Duration,
    /// How long the gateway must stay up after an outage before people hear it is back (a
    /// gateway going up and down is one outage, not one notification each time).
    pub stable_up: Duration,
}

impl GatewayConfig {
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        GatewayConfig {
            url: url.into(),
            api_key: None,
            model: model.into(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            stream_idle_timeout: Duration::from_secs(90),
            probe_interval: Duration::from_secs(30),
            canary_interval: Duration::from_secs(5),
            stable_up: Duration::from_secs(300),
        }
    }
}

/// Who a call is for, so that its record can be tied to a run or a conversation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext {
    pub run_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
}

/// One try's failure, before the retry decision.
#[derive(Debug)]
struct Failure {
    error: GatewayError,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
    /// Worth another try (and no streamed text was handed out yet).
    transient: bool,
}

impl Failure {
    fn transient(error: GatewayError, http_status: Option<u16>) -> Failure {
        Failure { error, http_status, retry_after: None, transient: true }
    }

    fn fatal(error: GatewayError, http_status: Option<u16>) -> Failure {
        Failure { error, http_status, retry_after: None, transient: false }
    }
}

/// The gateway client. Cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    completions_url: String,
    models_url: String,
    auth: Option<HeaderValue>,
    key: Option<Secret>,
    config: GatewayConfig,
    health: HealthState,
    recorder: Recorder,
    canary: Canary,
    /// The gateway refused a request for its tools: replies in `auto` mode are JSON text.
    refuses_tools: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("url", &self.0.config.url)
            .field("model", &self.0.config.model)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A client writing `health` and recording calls through `pool` (none in unit tests).
    pub fn new(
        config: GatewayConfig,
        health: HealthState,
        pool: Option<Pool>,
    ) -> anyhow::Result<Gateway> {
        let base = config.url.trim_end_matches('/');
        reqwest::Url::parse(base)
            .map_err(|e| anyhow::anyhow!("LOOM_GATEWAY_URL is not a URL ({e}): {base}"))?;
        let auth = match &config.api_key {
            Some(key) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                        anyhow::anyhow!(
                            "LOOM_GATEWAY_API_KEY holds characters a header cannot carry"
                        )
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        // reqwest is built without a TLS provider of its own (see STACK.md): make sure the
        // process has one before the first client, whoever builds it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().connect_timeout(config.connect_timeout).build()?;
        Ok(Gateway(Arc::new(Inner {
            http,
            completions_url: format!("{base}/chat/completions"),
            models_url: format!("{base}/models"),
            auth,
            key: config.api_key.clone(),
            health,
            recorder: Recorder::new(pool),
            canary: Canary::default(),
            refuses_tools: Default::default(),
            config,
        })))
    }

    pub fn model(&self) -> &str {
        &self.0.config.model
    }

    pub fn health(&self) -> &HealthState {
        &self.0.health
    }

    pub(crate) fn probe_interval(&self) -> Duration {
        self.0.config.probe_interval
    }

    /// How long the gateway must stay up before an outage is said to be over.
    pub fn stable_up(&self) -> Duration {
        self.0.config.stable_up
    }

    /// Whether this gateway was found to refuse tools (`GatewayError::refuses_tools`).
    pub fn refuses_tools(&self) -> bool {
        self.0.refuses_tools.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers, for the life of the process, that the gateway refused tools (`error`); the
    /// first time, says so in the log.
    pub fn learn_refuses_tools(&self, error: &GatewayError) {
        if !self.0.refuses_tools.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(model = %self.0.config.model, %error, "the LLM gateway refuses tools; replies carry their actions as JSON text from now on (LOOM_GATEWAY_TOOLS=text says so from the start)");
        }
    }

    /// A whole reply.
    pub async fn complete(
        &self,
        messages: &[Message],
        tools: &[Tool],
        ctx: CallContext,
    ) -> Result<Completion, GatewayError> {
        self.call(messages, tools, ctx, None).await
    }

    /// A streamed reply: `on_text` gets each piece of text as it arrives; the whole reply is
    /// returned at the end. A failure before any text arrived is retried; after, it is not
    /// (the text was already handed out), and the call fails as unavailable.
    pub async fn stream(
        &self,
        messages: &[Message],
        tools: &[Tool],
        ctx: CallContext,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, GatewayError> {
        self.call(messages, tools, ctx, Some(on_text)).await
    }

    async fn call(
        &self,
        messages: &[Message],
        tools: &[Tool],
        ctx: CallContext,
        mut on_text: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Completion, GatewayError> {
        let streamed = on_text.is_some();
        let body = Request {
            model: &self.0.config.model,
            messages,
            tools,
            max_tokens: None,
            stream: streamed,
            stream_options: streamed.then_some(StreamOptions { include_usage: true }),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| GatewayError::Malformed(format!("could not encode the request: {e}")))?;
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            // Reborrowed for one try; the coercion shortens the callback's lifetime.
            let this_try = on_text.as_mut().map(|f| &mut **f as &mut (dyn FnMut(&str) + Send));
            let result = self.try_once(&body, this_try).await;
            self.record(ctx, attempt, streamed, started, &result).await;
            let failure = match result {
                Ok(completion) => {
                    let (health, reason) = match attempt {
                        1 => (Health::Healthy, None),
                        n => (Health::Degraded, Some(format!("answered after {n} tries"))),
                    };
                    self.0.canary.set_calls_failing(false);
                    self.0.health.update(health, reason);
                    return Ok(completion);
                }
                Err(f) => f,
            };
            let wait = match failure.transient {
                true => self.0.config.retry.wait(attempt, failure.retry_after, jitter_unit()),
                false => None,
            };
            let Some(wait) = wait else {
                return Err(self.give_up(failure, !tools.is_empty()).await);
            };
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %failure.error, "retrying the gateway");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn give_up(&self, failure: Failure, with_tools: bool) -> GatewayError {
        let error = match failure.error {
            // Out of tries on something transient: for the caller that is an outage.
            GatewayError::Malformed(m) if failure.transient => GatewayError::Unavailable(m),
            e => e,
        };
        let (health, reason) = match &error {
            // A refusal of the tools says nothing of the gateway's health: the caller may
            // ask again without them.
            e if with_tools && e.refuses_tools() => return error,
            GatewayError::Unavailable(m) => (Health::Down, m.clone()),
            // Loom's configuration is wrong (the key, the model, the URL): no call can work
            // until a person fixes it, so runs park rather than spend attempts.
            GatewayError::Rejected { status: 401 | 403, message } => {
                (Health::Down, format!("it refuses Loom's API key: {message}"))
            }
            GatewayError::Rejected { status: 404, message } => (
                Health::Down,
                format!(
                    "it has no such model or route (check LOOM_GATEWAY_URL and LOOM_GATEWAY_MODEL): {message}"
                ),
            ),
            // This request refused: its own fault, unless the gateway refuses a trivial
            // request the same way (a wrong key some gateways answer with 400, a proxy
            // refusing everything), and then no call can work: an outage, with the reason.
            GatewayError::Rejected { status, message } if (400..500).contains(status) => {
                match self.canary(&self.0.canary, self.0.config.canary_interval).await {
                    Verdict::Refused(s) if s == *status => {
                        let why = format!(
                            "it refuses every request, even a one-word one ({status}): {message}"
                        );
                        self.0.canary.set_calls_failing(true);
                        self.0.health.update(Health::Down, Some(why.clone()));
                        return GatewayError::Unavailable(why);
                    }
                    Verdict::Answered => (Health::Healthy, String::new()),
                    // Nothing learned about the gateway: the health stays what it was.
                    Verdict::Refused(_) | Verdict::Failed => return error,
                }
            }
            GatewayError::Rejected { .. } => (Health::Healthy, String::new()),
            GatewayError::Malformed(m) => (Health::Degraded, m.clone()),
        };
        if health == Health::Down {
            self.0.canary.set_calls_failing(true);
        }
        self.0.health.update(health, (!reason.is_empty()).then_some(reason));
        error
    }

    /// One try of `body` with no retry, recorded; only whether it was answered matters.
    pub(super) async fn try_recorded(
        &self,
        body: &[u8],
        ctx: CallContext,
    ) -> Result<(), GatewayError> {
        let started = Instant::now();
        let result = self.try_once(body, None).await;
        self.record(ctx, 1, false, started, &result).await;
        result.map(|_| ()).map_err(|f| f.error)
    }

    async fn try_once(
        &self,
        body: &[u8],
        on_text: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Completion, Failure> {
        let mut req = self
            .0
            .http
            .post(&self.0.completions_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(auth) = &self.0.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if on_text.is_none() {
            req = req.timeout(self.0.config.request_timeout);
        }
        // A streamed request has no overall timeout; its headers must still come in time.
        // A whole reply's headers come when the model is done: its own timeout covers them.
        let wait = match on_text.is_some() {
            true => self.0.config.stream_idle_timeout,
            false => self.0.config.request_timeout,
        };
        let res = match tokio::time::timeout(wait, req.send()).await {
            Ok(sent) => sent.map_err(|e| self.transport(e))?,
            Err(_) => {
                let m = format!("no answer within {} s", wait.as_secs());
                return Err(Failure::transient(GatewayError::Unavailable(m), None));
            }
        };
        let status = res.status();
        if !status.is_success() {
            return Err(self.refusal(res).await);
        }
        match on_text {
            None => self.read_whole(res).await,
            Some(on_text) => self.read_stream(res, on_text).await,
        }
    }

    async fn read_whole(&self, res: reqwest::Response) -> Result<Completion, Failure> {
        let status = Some(res.status().as_u16());
        let bytes = res.bytes().await.map_err(|e| self.transport(e))?;
        let parsed: Response = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::transient(
                GatewayError::Malformed(format!("not a chat completion: {e}")),
                status,
            )
        })?;
        Completion::from_response(parsed).ok_or_else(|| {
            Failure::transient(GatewayError::Malformed("the reply has no choices".into()), status)
        })
    }

    async fn read_stream(
        &self,
        res: reqwest::Response,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, Failure> {
        let status = Some(res.status().as_u16());
        let idle = self.0.config.stream_idle_timeout;
        let mut body = res.bytes_stream();
        let mut decoder = SseDecoder::default();
        let mut completion = Completion::default();
        let mut delivered = false;
        // A failure once text went out cannot be retried: the caller has shown it.
        let fail = |delivered: bool, error: GatewayError| Failure {
            transient: !delivered,
            ..Failure::transient(error, status)
        };
        // Keep-alive comments prove the connection, not progress: the idle time runs from
        // the last event with data.
        let mut last_data = tokio::time::Instant::now();
        loop {
            let next =
                tokio::time::timeout_at(last_data + idle, body.next()).await.map_err(|_| {
                    let m = format!("the stream sent nothing for {} s", idle.as_secs());
                    fail(delivered, GatewayError::Unavailable(m))
                })?;
            let (events, end) = match next {
                Some(Ok(bytes)) => (
                    decoder.push(&bytes).map_err(|_| {
                        fail(delivered, GatewayError::Malformed("an endless stream line".into()))
                    })?,
                    false,
                ),
                Some(Err(e)) => return Err(Failure { transient: !delivered, ..self.transport(e) }),
                None => (decoder.finish().into_iter().collect(), true),
            };
            if !events.is_empty() {
                last_data = tokio::time::Instant::now();
            }
            for data in events {
                if data.trim() == "[DONE]" {
                    return Ok(completion);
                }
                let chunk: Chunk = serde_json::from_str(&data).map_err(|e| {
                    fail(
                        delivered,
                        GatewayError::Malformed(format!("a stream chunk is not JSON: {e}")),
                    )
                })?;
                // A gateway that fails mid-stream says so in a chunk of its own.
                if let Some(e) = &chunk.error {
                    let m = self.scrub(&e.message());
                    return Err(fail(
                        delivered,
                        GatewayError::Unavailable(format!("mid-stream: {m}")),
                    ));
                }
                if let Some(text) = completion.absorb(chunk) {
                    delivered = true;
                    on_text(&text);
                }
            }
            if end {
                break;
            }
        }
        // The body ended without `[DONE]`: a cut connection, unless the reply was finished.
        match completion.finish_reason {
            Some(_) => Ok(completion),
            None => {
                Err(fail(delivered, GatewayError::Unavailable("the stream ended early".into())))
            }
        }
    }

    fn transport(&self, e: reqwest::Error) -> Failure {
        let what = if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            "could not connect".to_owned()
        } else {
            "the connection failed".to_owned()
        };
        // Only the kind and the URL's host: reqwest's chain can be long, never secret.
        let host = reqwest::Url::parse(&self.0.config.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        Failure::transient(GatewayError::Unavailable(format!("{what} ({host})")), None)
    }

    async fn refusal(&self, res: reqwest::Response) -> Failure {
        let status = res.status();
        let retry_after = res
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let text = res.text().await.unwrap_or_default();
        let message = self.scrub(&error_message(&text, status));
        let code = status.as_u16();
        if retryable_status(code) {
            let error = GatewayError::Unavailable(format!("{code}: {message}"));
            Failure { retry_after, ..Failure::transient(error, Some(code)) }
        } else {
            Failure::fatal(GatewayError::Rejected { status: code, message }, Some(code))
        }
    }

    /// A gateway may echo the key back in an error; it goes no further than here.
    fn scrub(&self, text: &str) -> String {
        match &self.0.key {
            Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "***"),
            _ => text.to_owned(),
        }
    }

    async fn record(
        &self,
        ctx: CallContext,
        attempt: u32,
        streamed: bool,
        started: Instant,
        result: &Result<Completion, Failure>,
    ) {
        let took = started.elapsed();
        let latency_ms = took.as_millis() as i64;
        let (outcome, tokens) = match result {
            Ok(c) => ("ok", (c.usage.prompt_tokens, c.usage.completion_tokens)),
            Err(f) => (f.error.kind(), (0, 0)),
        };
        crate::metrics::get().gateway_call(outcome, took, tokens);
        let call = match result {
            Ok(c) => GatewayCall::ok(ctx, &self.0.config.model, attempt, streamed, latency_ms, c),
            Err(f) => GatewayCall::failed(
                ctx,
                &self.0.config.model,
                attempt,
                streamed,
                latency_ms,
                f.http_status,
                &f.error.to_string(),
            ),
        };
        self.0.recorder.record(call).await;
    }

    /// One probe: `GET <base>/models`. Updates the health state and returns it.
    pub async fn probe(&self) -> Health {
        let mut req =
            self.0.http.get(&self.0.models_url).timeout(self.0.config.connect_timeout * 2);
        if let Some(auth) = &self.0.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let (health, reason) = match req.send().await {
            Err(e) => (Health::Down, Some(self.transport(e).error.to_string())),
            Ok(res) => match res.status() {
                s if retryable_status(s.as_u16()) => {
                    (Health::Down, Some(format!("the probe got {}", s.as_u16())))
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                    Health::Down,
                    Some(format!("it refuses Loom's API key ({})", res.status().as_u16())),
                ),
                // Anything else is an answer: the gateway is there. But after completions
                // failed, `/models` answering proves little (a proxy lists models it cannot
                // serve): a completion must work before the gateway is called healthy.
                _ if self.0.canary.calls_failing() => {
                    match self.canary(&self.0.canary, self.0.config.canary_interval).await {
                        Verdict::Answered => (Health::Healthy, None),
                        Verdict::Refused(_) | Verdict::Failed => {
                            (Health::Down, self.0.health.report().reason)
                        }
                    }
                }
                _ => (Health::Healthy, None),
            },
        };
        self.0.health.update(health, reason);
        health
    }
}

/// The message inside an OpenAI-style error body, or the body's start.
fn error_message(body: &str, status: StatusCode) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().or(v["error"].as_str()).map(str::to_owned));
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    if text.is_empty() {
        return status.canonical_reason().unwrap_or("no reason given").to_owned();
    }
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}
