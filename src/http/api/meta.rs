//! Health, readiness, status and metrics.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use crate::agents::Agent;
use crate::error::Error;
use crate::events::BusState;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::users::Role;

/// The process is alive.
#[utoipa::path(tag = "meta", responses((status = 200, description = "alive")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub database: String,
    pub migrations: String,
    /// The event bus. A NATS bus that lost its server does not make Loom unready: events
    /// then reach other replicas through Postgres, a little later.
    pub bus: BusState,
}

/// The database answers, migrations are applied and the event bus is connected.
#[utoipa::path(tag = "meta", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = match crate::db::ping(&state.pool).await {
        Ok(_) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            "unreachable".to_owned()
        }
    };
    let migrations = match crate::db::migrations_current(&state.pool).await {
        Ok(true) => "current",
        Ok(false) => "pending",
        Err(_) => "unknown",
    }
    .to_owned();
    let ready = database == "ok" && migrations == "current";
    let body = Readiness { ready, database, migrations, bus: state.bus.state() };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub version: String,
    pub uptime_s: u64,
    /// Count of beads per status, every status present.
    pub beads: std::collections::BTreeMap<String, i64>,
    pub agents: std::collections::BTreeMap<String, i64>,
    pub gateway: GatewayStatus,
    pub bus: BusState,
    /// Open SSE streams in this replica.
    pub sse_clients: usize,
    /// Chat replies this replica is writing now.
    pub chat_replies: usize,
    /// Token budgets over the spend window; a spent one holds new claims back.
    pub spend: SpendStatus,
    /// Where agents' commands run: unavailable or off is said here, with why.
    pub sandbox: crate::workbench::SandboxStatus,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SpendStatus {
    pub window_hours: u64,
    /// True when any budget is spent: new work waits (what runs goes on).
    pub limited: bool,
    /// The fleet's budget (when set) and each project's that has one.
    pub budgets: Vec<crate::dispatch::limits::Spend>,
}

/// Why agents do not work without a gateway, and what fixes it.
pub const NO_GATEWAY: &str = "no LLM gateway is configured: restart `loom serve` with \
     LOOM_GATEWAY_URL (its base URL, ending in /v1) and LOOM_GATEWAY_MODEL (the model to ask \
     for), and LOOM_GATEWAY_API_KEY if it needs a key";

/// The LLM gateway as this process sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GatewayStatus {
    /// False when `LOOM_GATEWAY_URL` is unset: agents do not work.
    pub configured: bool,
    pub model: Option<String>,
    pub health: crate::gateway::Health,
    /// Why it is not healthy, when known.
    pub reason: Option<String>,
}

impl GatewayStatus {
    /// Why agents cannot work now, said so a person can act on it; `None` while they can.
    pub fn stops_agents(&self) -> Option<String> {
        if !self.configured {
            return Some(NO_GATEWAY.to_owned());
        }
        (self.health == crate::gateway::Health::Down).then(|| {
            let why = self.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            format!(
                "the LLM gateway is down{why}: beads wait without using their attempts and \
                 resume when it answers"
            )
        })
    }
}

/// Counts of beads and agents by status, gateway health and version.
#[utoipa::path(tag = "meta", security(("token" = [])), responses(
    (status = 200, body = Status), (status = 401, body = crate::http::error::ErrorBody)))]
#[get("/status")]
pub async fn status(state: web::Data<AppState>, auth: Auth) -> Result<HttpResponse, Error> {
    auth.require(Role::Viewer)?;
    let mut conn = state.pool.get().await?;
    let beads_map = crate::beads::stats::by_status(&mut conn, None)
        .await?
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    let agents_map = Agent::count_by_status(&mut conn)
        .await?
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    Ok(HttpResponse::Ok().json(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: state.started_at.elapsed().as_secs(),
        beads: beads_map,
        agents: agents_map,
        gateway: gateway_status(&state),
        bus: state.bus.state(),
        sse_clients: std::sync::atomic::AtomicUsize::load(
            &state.sse_clients,
            std::sync::atomic::Ordering::Relaxed,
        ),
        chat_replies: state.chat.writing(),
        spend: spend_status(&mut conn, &state.spend).await?,
        sandbox: state.sandbox.status().await,
    }))
}

pub async fn spend_status(
    conn: &mut crate::db::Conn,
    policy: &crate::dispatch::limits::SpendPolicy,
) -> Result<SpendStatus, Error> {
    let budgets = crate::dispatch::limits::standing(conn, policy).await?;
    Ok(SpendStatus {
        window_hours: policy.window.as_secs() / 3600,
        limited: budgets.iter().any(|b| b.held),
        budgets,
    })
}

pub fn gateway_status(state: &AppState) -> GatewayStatus {
    let report = state.gateway_health.report();
    let reason = match &state.gateway {
        None => Some(NO_GATEWAY.to_owned()),
        Some(_) => report.reason,
    };
    GatewayStatus {
        configured: state.gateway.is_some(),
        model: state.gateway.as_ref().map(|g| g.model().to_owned()),
        health: report.health,
        reason,
    }
}

/// The OpenAPI 3 document of this API, generated from the route annotations.
pub async fn openapi(doc: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(doc.get_ref())
}
