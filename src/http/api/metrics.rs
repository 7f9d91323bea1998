//! `/metrics`: this process's instruments (`crate::metrics`) and, read at scrape time, the
//! state every replica shares (beads by status, the ready queue, token spend) and this
//! replica's own (its connection pool, streams, bus and gateway). OpenMetrics text.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::http::AppState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectStatus {
    project: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabel {
    project: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Prometheus (OpenMetrics) text. Open by default, as scrapers expect; with
/// `LOOM_METRICS_TOKEN` set it answers only `Authorization: Bearer <that token>`.
#[utoipa::path(tag = "meta", responses(
    (status = 200, content_type = "application/openmetrics-text", body = String),
    (status = 401, body = crate::http::error::ErrorBody)))]
#[get("/metrics")]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    if let Some(token) = &state.metrics_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| crate::users::secret::same(g, token.expose())) {
            return Err(Error::Unauthenticated(
                "the metrics need the bearer token that LOOM_METRICS_TOKEN sets".into(),
            ));
        }
    }
    let shared = shared_state(&state).await?;
    let mut out = String::new();
    let encoded = crate::metrics::get()
        .encode(&mut out)
        .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut out, &shared))
        .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
    encoded.map_err(|e| Error::Internal(anyhow::anyhow!("could not encode the metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(out))
}

/// The gauges read now: a registry of its own per scrape, so a project or state that is
/// gone leaves no stale series behind.
async fn shared_state(state: &AppState) -> Result<Registry> {
    let mut conn = state.pool.get().await?;
    let by_status = crate::beads::stats::by_project_and_status(&mut conn).await?;
    let ready = crate::beads::stats::ready_by_project(&mut conn).await?;
    drop(conn);
    let mut r = Registry::default();

    let beads = Family::<ProjectStatus, Gauge>::default();
    let landing = Family::<ProjectLabel, Gauge>::default();
    for (project, status, n) in by_status {
        if status == crate::beads::BeadStatus::Landing {
            landing.get_or_create(&ProjectLabel { project: project.clone() }).set(n);
        }
        beads.get_or_create(&ProjectStatus { project, status: status.to_string() }).set(n);
    }
    r.register("loom_beads", "Beads by project and status.", beads);
    r.register(
        "loom_landing_queue_depth",
        "Beads waiting in each project's landing queue (checked or not yet).",
        landing,
    );
    let depth = Family::<ProjectLabel, Gauge>::default();
    for (project, n) in ready {
        depth.get_or_create(&ProjectLabel { project }).set(n);
    }
    r.register("loom_ready_beads", "Beads ready to dispatch, by project.", depth);

    let pool = state.pool.status();
    let connections = Family::<StateLabel, Gauge>::default();
    connections.get_or_create(&StateLabel { state: "idle" }).set(pool.available as i64);
    connections
        .get_or_create(&StateLabel { state: "in_use" })
        .set(pool.size.saturating_sub(pool.available) as i64);
    r.register("loom_db_pool_connections", "This replica's database connections.", connections);
    r.register("loom_db_pool_max_connections", "The pool's size limit.", gauge(pool.max_size));
    r.register(
        "loom_db_pool_waiting",
        "Tasks waiting for a database connection.",
        gauge(pool.waiting),
    );

    let clients = state.sse_clients.load(std::sync::atomic::Ordering::Relaxed);
    r.register("loom_sse_clients", "Open event streams (SSE) on this replica.", gauge(clients));
    r.register(
        "loom_chat_replies_in_progress",
        "Chat replies this replica is writing.",
        gauge(state.chat.writing()),
    );

    let bus = state.bus.state();
    r.register(
        "loom_bus_connected",
        "1 when the event bus is connected.",
        gauge(bus.connected as u8),
    );
    r.register("loom_bus_published", "Events sent to the other replicas.", counter(bus.published));
    r.register("loom_bus_send_failures", "Sends that failed or were dropped.", counter(bus.failed));
    r.register(
        "loom_bus_received",
        "Events received from the other replicas.",
        counter(bus.received),
    );
    r.register(
        "loom_bus_subscriber_lags",
        "Times a stream in this replica fell behind and caught up from Postgres.",
        counter(bus.lagged),
    );

    let health = state.gateway_health.report().health;
    let gateway = Family::<StateLabel, Gauge>::default();
    for h in crate::gateway::Health::ALL {
        gateway.get_or_create(&StateLabel { state: h.as_str() }).set((health == h) as i64);
    }
    r.register("loom_gateway_health", "The LLM gateway's health as this replica sees it.", gateway);

    let version = Family::<VersionLabel, Gauge>::default();
    version.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
    r.register("loom_build_info", "The running version.", version);
    r.register(
        "loom_uptime_seconds",
        "Seconds since this replica started.",
        gauge(state.started_at.elapsed().as_secs()),
    );
    Ok(r)
}

/// A counter kept elsewhere (the bus's own), as its value now.
fn counter(n: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(n);
    c
}

fn gauge(n: impl TryInto<i64>) -> Gauge {
    let g = Gauge::default();
    g.set(n.try_into().unwrap_or(i64::MAX));
    g
}
