//! Start-up: database, migrations, HTTP server. `Application::build` binds (port 0 in tests)
//! and returns the running pieces, so tests start the real thing.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, middleware, web};
use anyhow::Context;
use utoipa_actix_web::AppExt;

use crate::activity::Feed;
use crate::config::{Config, DatabaseSource, DbConfig, EventsConfig};
use crate::db::local::{LocalPostgres, StoppedBy};
use crate::db::{self, Pool};
use crate::dispatch::{Dispatcher, Nudge};
use crate::events::{Bus, NatsBackend};
use crate::executor::Executors;
use crate::gateway::{Gateway, HealthState};
use crate::http::{self, AppState};
use crate::notifications::NotificationWakers;
use crate::personas::Persona;
use crate::ticker::Ticker;
use crate::workbench::{Sandbox, SandboxMode};
use tokio_util::sync::CancellationToken;

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    pool: Pool,
    local_pg: Option<LocalPostgres>,
    /// Cancels the background loops at shutdown, last.
    cancel: CancellationToken,
    workers: Vec<tokio::task::JoinHandle<()>>,
    /// The dispatchers: stopped first, once no request is in flight.
    dispatch: Stage,
    /// The executors: stopped next, letting running turns reach a checkpoint.
    executors: Stage,
    /// How long running turns have to reach a checkpoint at shutdown.
    grace: std::time::Duration,
    ticker: Option<tokio_cron_scheduler::JobScheduler>,
    bus: Bus,
    notification_wakers: NotificationWakers,
    chat: crate::chat::Chat,
    /// Stops the chat replies being written at shutdown.
    chat_stop: CancellationToken,
    /// Ends the SSE streams at shutdown.
    streams: CancellationToken,
    /// The data dir, this process's alone until it has stopped.
    _claim: crate::data_dir::Claim,
}

/// Resolves the database URL, starting the private cluster when none is configured.
pub async fn open_database(config: &Config) -> anyhow::Result<(String, Option<LocalPostgres>)> {
    match &config.database {
        DatabaseSource::Url(url) => Ok((url.expose().to_owned(), None)),
        DatabaseSource::Embedded => {
            let pg = LocalPostgres::start(&config.data_dir).await?;
            Ok((pg.url().expose().to_owned(), Some(pg)))
        }
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // Before anything is written under it: clones, worktrees, homes, the database.
        let embedded = matches!(config.database, DatabaseSource::Embedded);
        crate::data_dir::secure(
            &config.data_dir,
            crate::data_dir::server_user_traverses(embedded),
        )?;
        let claim = crate::data_dir::claim(&config.data_dir)?;
        // Alone in the data dir and before any clone is touched: a git lock there is stale.
        crate::git::Repos::new(config.data_dir.clone())
            .clear_stale_locks()
            .await
            .context("removing the git locks a stopped process left")?;
        let (url, local_pg) = open_database(&config).await?;
        let applied = db::migrate(&url).await.context("applying database migrations")?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
        // Names this replica: its connections' application_name is the origin of the
        // activity rows it writes.
        let origin = format!("loom-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let db_config = DbConfig { application_name: origin.clone(), ..config.db.clone() };
        let pool = db::connect(&url, &db_config).await.context("connecting to the database")?;
        crate::users::password::warm_up();
        let report = Persona::load(&mut *pool.get().await?, config.personas_dir.as_deref()).await?;
        tracing::info!(
            loaded = report.loaded.len(),
            skipped = report.errors.len(),
            "loaded personas"
        );
        let listener = TcpListener::bind(&config.bind)
            .with_context(|| format!("binding the HTTP address {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let nudge = Nudge::default();
        let cancel = CancellationToken::new();
        let mut workers = Vec::new();
        let bus = open_bus(&config.events, &origin, &cancel, &mut workers).await?;
        let feed = Feed::start(pool.clone(), bus.clone(), config.events.feed_poll).await?;
        workers.push(tokio::spawn(feed.run(cancel.clone())));
        if config.events.notifier {
            workers.push(tokio::spawn(
                crate::notifications::Notifier::new(pool.clone(), bus.clone()).run(cancel.clone()),
            ));
        }
        // One bus reader for this process's notification streams, rather than one each, and
        // one query per poll for all of them.
        let wakers = NotificationWakers::new(config.events.notification_poll);
        let wakers_task = wakers.clone().run(pool.clone(), bus.subscribe(), cancel.clone());
        workers.push(tokio::spawn(wakers_task));
        let health = HealthState::default();
        let sandbox = Sandbox::new(config.sandbox.clone());
        report_sandbox(&sandbox).await;
        let gateway = match &config.gateway {
            Some(gw) => Some(Gateway::new(gw.clone(), health.clone(), Some(pool.clone()))?),
            None => None,
        };
        // Claims start their runs at once: this process's directly, others' from the bus.
        let claimed = Arc::new(tokio::sync::Notify::new());
        workers.push(tokio::spawn(crate::dispatch::bus_wakes::follow(
            bus.clone(),
            nudge.clone(),
            claimed.clone(),
            cancel.clone(),
        )));
        let mut executor_stage = Stage::default();
        let mut executor_owner = None;
        let mut executor_active = crate::executor::ActiveBeads::default();
        if let Some(gw) = &gateway {
            tracing::info!(gateway.url = %gw_url(&config), gateway.model = gw.model(), "using the LLM gateway");
            workers.push(tokio::spawn(gw.clone().run_probe(cancel.clone())));
            workers.push(tokio::spawn(crate::gateway::record_outages(
                pool.clone(),
                health.clone(),
                bus.clone(),
                gw.stable_up(),
                cancel.clone(),
            )));
            // Agents' commands run here for runs and for conversations alike.
            crate::workbench::shield_loom_from_commands(config.sandbox.mode == SandboxMode::Off);
            if let Some(ex) = &config.executors {
                let ex = crate::executor::ExecutorConfig { sandbox: sandbox.clone(), ..ex.clone() };
                let executors =
                    Executors::start(pool.clone(), gw.clone(), &config.data_dir, config.retry, ex)
                        .woken_by(claimed.clone())
                        .publishing_to(bus.clone());
                executor_owner = Some(executors.owner_id());
                executor_active = executors.active_beads();
                executor_stage.spawn(executors.run(executor_stage.cancel.clone()));
            }
        } else {
            tracing::warn!("{}", crate::http::api::meta::NO_GATEWAY);
        }
        let mut dispatch = Stage::default();
        for _ in 0..config.dispatchers {
            let dispatcher = Dispatcher::new(pool.clone(), config.dispatch.clone(), nudge.clone())
                .on_claim(claimed.clone())
                .with_bus(bus.clone());
            dispatch.spawn(dispatcher.run(dispatch.cancel.clone()));
        }
        let nudge_for_ticker = nudge.clone();
        let mut state = AppState::new(pool.clone(), config.personas_dir.clone(), nudge);
        state.gateway = gateway.clone();
        state.gateway_health = health.clone();
        state.bus = bus.clone();
        state.notification_wakers = wakers.clone();
        state.events = config.events.clone();
        state.sessions = config.sessions;
        state.repos = crate::git::Repos::new(config.data_dir.clone());
        state.metrics_token = config.metrics_token.clone();
        state.spend = config.dispatch.spend.clone();
        state.trusted_proxies = config.trusted_proxies.clone();
        state.sandbox = sandbox.clone();
        // One bus reader and one poll for every conversation stream of this process, and
        // the replies it writes.
        let chat_wakers = crate::chat::ChatWakers::new(config.chat.poll);
        // Replies being written end at their own turn in the shutdown.
        let chat_stop = CancellationToken::new();
        workers.push(tokio::spawn(chat_wakers.clone().run(
            pool.clone(),
            bus.subscribe(),
            cancel.clone(),
        )));
        state.chat = crate::chat::Chat::new(
            crate::chat::ChatParts {
                pool: pool.clone(),
                bus: bus.clone(),
                gateway: gateway.clone(),
                repos: state.repos.clone(),
                data_dir: config.data_dir.clone(),
                wakers: chat_wakers,
                shutdown: chat_stop.clone(),
                executor: executor_owner,
                active: executor_active,
                sandbox: sandbox.clone(),
            },
            config.chat.clone(),
        );
        workers.push(tokio::spawn(state.chat.clone().follow(bus.subscribe(), cancel.clone())));
        let streams = state.streams.clone();
        let chat = state.chat.clone();
        let repos = state.repos.clone();
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            let (app, doc) = App::new().into_utoipa_app().configure(http::routes).split_for_parts();
            let doc = web::Data::new(http::finish_openapi(doc));
            app.app_data(state.clone())
                .app_data(doc)
                .configure(http::extractor_config)
                .route("/api/openapi.json", web::get().to(http::api::meta::openapi))
                .configure(crate::web::routes)
                .default_service(web::to(http::error::not_found))
                .wrap(middleware::from_fn(http::wake_feed))
                .wrap(middleware::from_fn(http::count_request))
                .wrap(crate::web::security_headers())
                .wrap(middleware::NormalizePath::trim())
                .wrap(middleware::Compress::default())
                .wrap(tracing_middleware())
        })
        .listen(listener)?
        .shutdown_timeout(30)
        // Signals are handled in `run_until_stopped`: open streams must end first, or the
        // graceful stop would wait its whole timeout for them.
        .disable_signals()
        .run();
        // Started once the address is bound, so a failed start leaves nothing running.
        let ticker = match &config.ticker {
            Some(schedule) => {
                let ticker = Ticker::new(pool.clone(), config.retry, health, nudge_for_ticker)
                    .with_sandbox(sandbox.clone())
                    .with_repos(repos)
                    .with_bus(bus.clone());
                Some(ticker.start(schedule).await?)
            }
            None => None,
        };
        tracing::info!(port, "Loom is listening");
        Ok(Application {
            port,
            server,
            pool,
            local_pg,
            cancel,
            workers,
            dispatch,
            executors: executor_stage,
            grace: config.executors.as_ref().map(|e| e.shutdown_grace).unwrap_or_default(),
            ticker,
            bus,
            notification_wakers: wakers,
            chat,
            chat_stop,
            streams,
            _claim: claim,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// What wakes this process's notification streams (tests read its counters).
    pub fn notification_wakers(&self) -> &NotificationWakers {
        &self.notification_wakers
    }

    /// Serves until SIGINT or SIGTERM, then stops in order: no new connections and the
    /// event streams end; requests in flight finish; dispatching and the ticker stop;
    /// running turns reach a checkpoint (within the executors' grace) and their runs are
    /// handed over with the projects; chat replies being written record that they were
    /// interrupted; the rest of the loops stop, the feed publishing what they wrote; the
    /// bus flushes; the private database, if Loom started it, stops last. A second signal
    /// exits at once: every change is already committed, and what was running is taken
    /// over when its leases lapse.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (handle, streams) = (self.server.handle(), self.streams.clone());
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new requests; finishing those in flight");
            streams.cancel();
            tokio::spawn(async {
                shutdown_signal().await;
                tracing::warn!(
                    "a second signal: exiting at once; leases lapse and others take over"
                );
                std::process::exit(130);
            });
            handle.stop(true).await;
        });
        let served = self.server.await;
        tracing::info!("shutdown: requests finished; stopping dispatch");
        self.dispatch.stop(std::time::Duration::from_secs(10), "a dispatcher").await;
        if let Some(mut ticker) = self.ticker
            && let Err(e) = ticker.shutdown().await
        {
            tracing::warn!(error = %e, "the ticker did not stop cleanly");
        }
        tracing::info!("shutdown: dispatch stopped; letting running turns reach a checkpoint");
        self.executors.stop(self.grace + std::time::Duration::from_secs(10), "an executor").await;
        tracing::info!("shutdown: runs handed over; ending chat replies");
        // Replies being written record that they were interrupted before the bus flushes.
        self.chat_stop.cancel();
        self.chat.drain(std::time::Duration::from_secs(10)).await;
        self.cancel.cancel();
        for worker in self.workers {
            if tokio::time::timeout(std::time::Duration::from_secs(10), worker).await.is_err() {
                tracing::warn!("a background loop did not stop within 10 s");
            }
        }
        self.bus.flush().await;
        tracing::info!("shutdown: the bus is flushed");
        if let Some(pg) = self.local_pg {
            match pg.stop().await? {
                StoppedBy::ThisProcess => {
                    tracing::info!("shutdown: the private database is stopped")
                }
                StoppedBy::Owner(pid) => tracing::info!(
                    owner.pid = pid,
                    "shutdown: the private database is left running for the Loom process that \
                     started it"
                ),
            }
        }
        served.map_err(Into::into)
    }

    /// Serves in the background (tests): the handle stops it.
    pub fn spawn(self) -> (u16, Pool, actix_web::dev::ServerHandle) {
        let handle = self.server.handle();
        // Background loops live as long as the runtime (tests end with it).
        drop(self.workers);
        drop((self.dispatch, self.executors));
        // The data dir is let go: a test runs a `loom serve` on it to take this one's work
        // over, as the next replica would.
        drop(self._claim);
        tokio::spawn(self.server);
        (self.port, self.pool, handle)
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The in-process bus, or NATS when configured (whose sender and receiver join `workers`).
async fn open_bus(
    config: &EventsConfig,
    origin: &str,
    cancel: &CancellationToken,
    workers: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<Bus> {
    let Some(nats) = &config.nats else {
        return Ok(Bus::in_process(origin));
    };
    let hub = Bus::new_hub();
    let committed = Arc::new(tokio::sync::Notify::new());
    let (backend, tasks) =
        NatsBackend::start(nats.clone(), origin, hub.clone(), committed.clone(), cancel.clone())
            .await
            .context("connecting to NATS")?;
    workers.extend(tasks);
    tracing::info!(stream = %nats.stream, prefix = %nats.prefix, "events go through NATS JetStream");
    Ok(Bus::with_backend(origin, hub, committed, backend))
}

/// Wakes this process's dispatchers and executors on events from any replica: work that may
/// have become ready, beads claimed.
/// The gateway's URL for the log: scheme, host and path, never credentials in it.
fn gw_url(config: &Config) -> String {
    let raw = config.gateway.as_ref().map(|g| g.url.as_str()).unwrap_or_default();
    match reqwest::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// One line per request, except the probes and scrapes that come every few seconds and would
/// bury everything else (their failures show in the probes themselves).
fn tracing_middleware() -> middleware::Logger {
    middleware::Logger::new("%r %s %Dms")
        .log_target("loom::http")
        .exclude("/healthz")
        .exclude("/readyz")
        .exclude("/metrics")
}

/// Tasks that stop together, at their turn in the shutdown.
#[derive(Default)]
struct Stage {
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stage {
    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Cancels the stage and waits for its tasks, each for at most `limit`.
    async fn stop(self, limit: std::time::Duration, what: &str) {
        self.cancel.cancel();
        for task in self.tasks {
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!("{what} did not stop within {} s", limit.as_secs());
            }
        }
    }
}

/// Says at start where agents' commands will run: loudly when they run unconfined.
async fn report_sandbox(sandbox: &Sandbox) {
    let status = sandbox.status().await;
    match (status.mode, status.available) {
        (SandboxMode::Off, _) => tracing::warn!(
            "LOOM_SANDBOX=off: agents' commands run UNCONFINED, as Loom's own user, and can read \
             and change anything it can; this is shown on the overview and in /api/v1/status"
        ),
        (SandboxMode::Auto, true) => {
            tracing::info!(backend = status.backend, "agents' commands run in a sandbox")
        }
        // The probe has said why, once; runs that need a command park until it is fixed.
        (SandboxMode::Auto, false) => {}
    }
}
