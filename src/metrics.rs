//! The instruments this process updates as it works, for `/metrics` (OpenMetrics text, as
//! Prometheus scrapes it). One set per process, as Prometheus expects of a scrape target:
//! each replica counts what it did itself (the claims it made, the runs it ended, the calls
//! it sent), so summing over replicas counts each thing once. Gauges of shared state (beads
//! by status, the ready queue) are read from the database at scrape time instead; see
//! `http::api::metrics`.
//!
//! Claims and run ends are counted from this replica's own activity rows as its feed reads
//! them (`observe_own`): every path that claims or ends a run writes one, and the feed sees
//! each once, after it committed.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::events::{Event, Kind};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabel {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route's pattern (`/api/v1/beads/{id}`), never the path itself: ids would make a
    /// series per bead.
    pub route: String,
    pub status: u16,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    claims: Counter,
    dispatch_wait: Histogram,
    dispatch_round: Histogram,
    runs: Family<OutcomeLabel, Counter>,
    run_duration: Histograms<OutcomeLabel>,
    lease_expiries: Counter,
    gateway_requests: Family<OutcomeLabel, Counter>,
    gateway_duration: Histogram,
    gateway_tokens: Family<TokenLabel, Counter>,
    bus_lag: Histograms<PathLabel>,
    chat_replies: Family<OutcomeLabel, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Histogram,
    spend_refusals: Counter,
    check_duration: Histograms<OutcomeLabel>,
    train_size: Histogram,
    train_bisections: Counter,
}

/// Seconds from 5 ms to about 40 s: requests, gateway calls, dispatch rounds.
fn short() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Seconds from 1 s to about 18 h: runs, and beads waiting to be claimed.
fn long() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 3.0, 10))
}

/// Seconds from 1 ms to about 16 s: events crossing between replicas.
fn lag() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's instruments.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let mut m = Metrics {
            claims: Counter::default(),
            dispatch_wait: long(),
            dispatch_round: short(),
            runs: Family::default(),
            run_duration: Family::new_with_constructor(long),
            lease_expiries: Counter::default(),
            gateway_requests: Family::default(),
            gateway_duration: short(),
            gateway_tokens: Family::default(),
            bus_lag: Family::new_with_constructor(lag),
            chat_replies: Family::default(),
            http_requests: Family::default(),
            http_duration: short(),
            spend_refusals: Counter::default(),
            check_duration: Family::new_with_constructor(long),
            train_size: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            train_bisections: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "loom_dispatch_claims",
            "Beads this replica claimed for an agent.",
            m.claims.clone(),
        );
        r.register_with_unit(
            "loom_dispatch_wait",
            "How long a bead waited, ready, before this replica claimed it.",
            Unit::Seconds,
            m.dispatch_wait.clone(),
        );
        r.register_with_unit(
            "loom_dispatch_round_duration",
            "Dispatch rounds that claimed something: lock, match and claim, in one transaction.",
            Unit::Seconds,
            m.dispatch_round.clone(),
        );
        r.register("loom_runs", "Runs this replica ended, by outcome.", m.runs.clone());
        r.register_with_unit(
            "loom_run_duration",
            "Runs this replica ended, from claim to end, by outcome.",
            Unit::Seconds,
            m.run_duration.clone(),
        );
        r.register(
            "loom_lease_expiries",
            "Claims whose lease ran out and that this replica's ticker ended.",
            m.lease_expiries.clone(),
        );
        r.register(
            "loom_gateway_requests",
            "Tries at the LLM gateway, by outcome (ok, unavailable, rejected, malformed).",
            m.gateway_requests.clone(),
        );
        r.register_with_unit(
            "loom_gateway_request_duration",
            "Tries at the LLM gateway, from send to the last byte.",
            Unit::Seconds,
            m.gateway_duration.clone(),
        );
        r.register(
            "loom_gateway_tokens",
            "Tokens the gateway reported, by kind (prompt, completion).",
            m.gateway_tokens.clone(),
        );
        r.register_with_unit(
            "loom_bus_delivery_lag",
            "From an event's creation to its delivery here, by path: own (this replica's rows, read back by its feed), peer (other replicas' rows), live (other replicas' unstored events, over NATS).",
            Unit::Seconds,
            m.bus_lag.clone(),
        );
        r.register(
            "loom_chat_replies",
            "Chat replies this replica finished, by outcome.",
            m.chat_replies.clone(),
        );
        r.register(
            "loom_http_requests",
            "HTTP requests answered, by method, route and status.",
            m.http_requests.clone(),
        );
        r.register_with_unit(
            "loom_http_request_duration",
            "HTTP requests, from arrival to the response head.",
            Unit::Seconds,
            m.http_duration.clone(),
        );
        r.register(
            "loom_spend_refusals",
            "Dispatch rounds that claimed nothing new because a token budget was spent.",
            m.spend_refusals.clone(),
        );
        r.register_with_unit(
            "loom_check_duration",
            "Project checks this replica's landing queues ran, by outcome (green, red, unavailable).",
            Unit::Seconds,
            m.check_duration.clone(),
        );
        r.register(
            "loom_train_size",
            "Beads in each train a landing queue checked first (before any bisection).",
            m.train_size.clone(),
        );
        r.register(
            "loom_train_bisections",
            "Trains of several beads whose check failed, so that the queue bisected them.",
            m.train_bisections.clone(),
        );
        m.registry = registry;
        m
    }

    /// The instruments, in OpenMetrics text, without the closing `# EOF`.
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }

    /// One of this replica's own activity rows, read by its feed after it committed.
    pub fn observe_own(&self, event: &Event) {
        let seconds = |field: &str| event.data.get(field).and_then(serde_json::Value::as_f64);
        match event.kind {
            Kind::BeadClaimed => {
                self.claims.inc();
                if let Some(s) = seconds("waited_s") {
                    self.dispatch_wait.observe(s.max(0.0));
                }
            }
            Kind::RunEnded => {
                let outcome =
                    event.data.get("outcome").and_then(|o| o.as_str()).unwrap_or("unknown");
                let label = OutcomeLabel { outcome: outcome.to_owned() };
                self.runs.get_or_create(&label).inc();
                if let Some(s) = seconds("seconds") {
                    self.run_duration.get_or_create(&label).observe(s.max(0.0));
                }
                if outcome == "lease_expired" {
                    self.lease_expiries.inc();
                }
            }
            Kind::CheckFinished => {
                let outcome =
                    event.data.get("outcome").and_then(|o| o.as_str()).unwrap_or("unknown");
                if event.data.get("command").and_then(serde_json::Value::as_bool) == Some(true)
                    && let Some(s) = seconds("seconds")
                {
                    let label = OutcomeLabel { outcome: outcome.to_owned() };
                    self.check_duration.get_or_create(&label).observe(s.max(0.0));
                }
                let beads = event.data.get("beads").and_then(|b| b.as_array()).map_or(0, Vec::len);
                let bisecting = event.data.get("bisecting").and_then(serde_json::Value::as_bool);
                if bisecting == Some(false) {
                    self.train_size.observe(beads as f64);
                    if outcome != "green" && beads > 1 {
                        self.train_bisections.inc();
                    }
                }
            }
            _ => {}
        }
    }

    /// An event that reached this replica `path`'s way.
    pub fn delivered(&self, path: &'static str, event: &Event) {
        let lag = (chrono::Utc::now() - event.created_at).num_microseconds().unwrap_or(0);
        self.bus_lag.get_or_create(&PathLabel { path }).observe((lag.max(0) as f64) / 1e6);
    }

    pub fn dispatch_round(&self, took: Duration) {
        self.dispatch_round.observe(took.as_secs_f64());
    }

    /// A try at the gateway: `outcome` is `ok` or the kind of failure.
    pub fn gateway_call(&self, outcome: &'static str, took: Duration, tokens: (u64, u64)) {
        self.gateway_requests.get_or_create(&OutcomeLabel { outcome: outcome.to_owned() }).inc();
        self.gateway_duration.observe(took.as_secs_f64());
        if tokens.0 > 0 {
            self.gateway_tokens.get_or_create(&TokenLabel { kind: "prompt" }).inc_by(tokens.0);
        }
        if tokens.1 > 0 {
            self.gateway_tokens.get_or_create(&TokenLabel { kind: "completion" }).inc_by(tokens.1);
        }
    }

    pub fn chat_reply(&self, outcome: &str) {
        self.chat_replies.get_or_create(&OutcomeLabel { outcome: outcome.to_owned() }).inc();
    }

    pub fn http_request(&self, labels: HttpLabels, took: Duration) {
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.observe(took.as_secs_f64());
    }

    pub fn spend_refused(&self) {
        self.spend_refusals.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut out = String::new();
        m.encode(&mut out).expect("encodes");
        out
    }

    #[test]
    fn own_rows_count_claims_run_ends_and_lease_expiries() {
        let m = Metrics::new();
        let claimed =
            Event::live(Kind::BeadClaimed, None, None, serde_json::json!({"waited_s": 2.5}));
        let expired = Event::live(
            Kind::RunEnded,
            None,
            None,
            serde_json::json!({"outcome": "lease_expired", "seconds": 90.0}),
        );
        m.observe_own(&claimed);
        m.observe_own(&expired);
        m.observe_own(&Event::live(Kind::BeadClosed, None, None, serde_json::json!({})));
        let out = text(&m);
        assert!(out.contains("loom_dispatch_claims_total 1"), "{out}");
        assert!(out.contains("loom_dispatch_wait_seconds_count 1"), "{out}");
        assert!(out.contains("loom_runs_total{outcome=\"lease_expired\"} 1"), "{out}");
        assert!(
            out.contains("loom_run_duration_seconds_count{outcome=\"lease_expired\"} 1"),
            "{out}"
        );
        assert!(out.contains("loom_lease_expiries_total 1"), "{out}");
    }

    #[test]
    fn gateway_calls_count_tokens_by_kind_and_failures_by_outcome() {
        let m = Metrics::new();
        m.gateway_call("ok", Duration::from_millis(20), (100, 7));
        m.gateway_call("unavailable", Duration::from_millis(5), (0, 0));
        let out = text(&m);
        assert!(out.contains("loom_gateway_requests_total{outcome=\"ok\"} 1"), "{out}");
        assert!(out.contains("loom_gateway_requests_total{outcome=\"unavailable\"} 1"), "{out}");
        assert!(out.contains("loom_gateway_tokens_total{kind=\"prompt\"} 100"), "{out}");
        assert!(out.contains("loom_gateway_tokens_total{kind=\"completion\"} 7"), "{out}");
        assert!(out.contains("loom_gateway_request_duration_seconds_count 2"), "{out}");
    }
}
