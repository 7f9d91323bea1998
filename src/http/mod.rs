//! The HTTP layer: routes, handlers, authentication and the single error mapping. It calls
//! into the domain modules and never the other way round.

pub mod api;
pub mod auth;
pub mod error;
pub mod extract;
pub mod login;
pub mod paging;
pub mod ratelimit;
pub mod sse;

use std::time::Instant;

use actix_web::web;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::db::Pool;

/// Shared by every handler.
pub struct AppState {
    pub pool: Pool,
    pub started_at: Instant,
    pub login_limiter: ratelimit::LoginLimiter,
    /// Where `POST /personas/reload` reads from.
    pub personas_dir: Option<std::path::PathBuf>,
    /// Wakes this process's dispatcher after a change that may make work dispatchable.
    pub nudge: crate::dispatch::Nudge,
    /// The LLM gateway, when one is configured.
    pub gateway: Option<crate::gateway::Gateway>,
    pub gateway_health: crate::gateway::HealthState,
    pub bus: crate::events::Bus,
    /// Wakes the notification streams of this process (a task `app` starts runs it).
    pub notification_wakers: crate::notifications::NotificationWakers,
    /// Pair-programming replies: started, stopped and followed here.
    pub chat: crate::chat::Chat,
    pub events: crate::config::EventsConfig,
    /// Open SSE streams, for `/api/v1/status` and the metrics.
    pub sse_clients: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Ends every SSE stream at shutdown (they never end on their own).
    pub streams: tokio_util::sync::CancellationToken,
    pub sessions: crate::users::sessions::SessionConfig,
    /// Loom's clones of the projects, read for the commits pages show.
    pub repos: crate::git::Repos,
    /// When set, `/metrics` answers only this bearer token (`LOOM_METRICS_TOKEN`).
    pub metrics_token: Option<crate::config::Secret>,
    /// The token budgets, for the status and the dashboard.
    pub spend: crate::dispatch::limits::SpendPolicy,
    /// Proxies whose `X-Forwarded-For` names the client (`LOOM_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Where agents' commands run (its status is shown in `/api/v1/status`).
    pub sandbox: crate::workbench::Sandbox,
}

impl AppState {
    pub fn new(
        pool: Pool,
        personas_dir: Option<std::path::PathBuf>,
        nudge: crate::dispatch::Nudge,
    ) -> Self {
        let chat = crate::chat::Chat::new(
            crate::chat::ChatParts {
                pool: pool.clone(),
                bus: crate::events::Bus::in_process("loom"),
                gateway: None,
                repos: crate::git::Repos::new(std::path::PathBuf::from(".loom")),
                data_dir: std::path::PathBuf::from(".loom"),
                wakers: Default::default(),
                shutdown: Default::default(),
                executor: None,
                active: Default::default(),
                sandbox: Default::default(),
            },
            Default::default(),
        );
        AppState {
            pool,
            started_at: Instant::now(),
            login_limiter: ratelimit::LoginLimiter::default(),
            personas_dir,
            nudge,
            gateway: None,
            gateway_health: crate::gateway::HealthState::default(),
            bus: crate::events::Bus::in_process("loom"),
            notification_wakers: Default::default(),
            chat,
            events: crate::config::EventsConfig::default(),
            sse_clients: Default::default(),
            streams: Default::default(),
            sessions: Default::default(),
            repos: crate::git::Repos::new(std::path::PathBuf::from(".loom")),
            metrics_token: None,
            spend: Default::default(),
            trusted_proxies: Vec::new(),
            sandbox: Default::default(),
        }
    }
}

/// Wakes the activity feed after every request that may have written (anything but GET
/// and HEAD), once the handler has returned and so its transaction has committed.
pub async fn wake_feed(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::Method;
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let bus = req.app_data::<web::Data<AppState>>().map(|s| s.bus.clone());
    let res = next.call(req).await;
    if writes && let Some(bus) = bus {
        bus.committed();
    }
    res
}

/// Counts every request by method, route pattern and status, and times it to its
/// response head (`loom_http_requests_total`, `loom_http_request_duration_seconds`).
pub async fn count_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let res = next.call(req).await?;
    // Known only once routed; a path no route matched is one series, not one per path.
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let labels = crate::metrics::HttpLabels { method, route, status: res.status().as_u16() };
    crate::metrics::get().http_request(labels, started.elapsed());
    Ok(res)
}

/// Every documented route. Order matters where paths overlap: `/beads/ready` before
/// `/beads/{id}`.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(api::meta::healthz).service(api::meta::readyz).service(api::metrics::metrics);
    cfg.service(utoipa_actix_web::scope("/api/v1").configure(api::v1));
}

/// Extractor settings that turn malformed input into the JSON error format.
pub fn extractor_config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default().limit(extract::JSON_LIMIT).error_handler(error::json_error),
    )
    .app_data(web::FormConfig::default().limit(256 << 10).error_handler(error::form_error))
    .app_data(web::QueryConfig::default().error_handler(error::query_error))
    .app_data(web::PathConfig::default().error_handler(error::path_error));
}

/// Fills in what the route annotations cannot: title, version, the token scheme.
pub fn finish_openapi(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.title = "Loom".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some("Run a team of AI agents on software projects.".into());
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    doc
}
