//! The dashboard: server-rendered pages (askama templates in `templates/`, one typed struct
//! per page), their forms, and the assets they load. Pages read through the same domain
//! modules as the API and write through the same calls, in the same transactions; they are
//! usable without JavaScript, which only adds live updates.

mod activity;
mod admin;
mod agents;
mod analytics;
pub mod assets;
mod auth;
mod bead;
mod bead_parts;
mod board;
mod charts;
mod chat;
mod graph;
mod landing;
mod markdown;
mod notifications;
mod overview;
pub mod page;
mod personas;
mod projects;
mod view;

use actix_web::middleware::DefaultHeaders;
use actix_web::web;

/// Everything a page may load: its own origin only, no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers every response is served with (harmless on JSON, essential on pages).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "same-origin"))
}

/// The dashboard's routes, outside `/api`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(overview::page))
        .route("/login", web::get().to(auth::login_page))
        .route("/login", web::post().to(auth::login_submit))
        .route("/logout", web::post().to(auth::logout))
        .route("/setup", web::get().to(auth::setup_page))
        .route("/setup", web::post().to(auth::setup_submit))
        .route("/static/{name}", web::get().to(assets::serve))
        .route("/projects", web::get().to(projects::list))
        .route("/projects", web::post().to(projects::create))
        .route("/projects/{id}", web::get().to(board::page))
        .route("/projects/{id}/board", web::get().to(board::fragment))
        .route("/projects/{id}/queue", web::get().to(landing::fragment))
        .route("/projects/{id}/graph", web::get().to(graph::page))
        .route("/projects/{id}/beads", web::post().to(board::file_bead))
        .route("/projects/{id}/settings", web::post().to(projects::settings))
        .route("/projects/{id}/delete", web::post().to(projects::delete))
        .route("/beads/{id}", web::get().to(bead::page))
        .route("/beads/{id}/{action}", web::post().to(bead::act))
        .route("/conversations/{id}", web::get().to(chat::page))
        .route("/conversations/{id}/{action}", web::post().to(chat::act))
        .route("/analytics", web::get().to(analytics::page))
        .route("/admin/users", web::get().to(admin::users))
        .route("/admin/users", web::post().to(admin::create_user))
        .route("/admin/users/{id}/{action}", web::post().to(admin::change_user))
        .route("/account/tokens", web::get().to(admin::tokens))
        .route("/account/tokens", web::post().to(admin::create_token))
        .route("/account/tokens/{id}/revoke", web::post().to(admin::revoke_token));
    // agents, personas, activity, notifications
    cfg.route("/agents", web::get().to(agents::list))
        .route("/agents", web::post().to(agents::create))
        .route("/agents/{id}/pause", web::post().to(agents::pause))
        .route("/agents/{id}/resume", web::post().to(agents::resume))
        .route("/personas", web::get().to(personas::list))
        .route("/personas/{name}", web::get().to(personas::show))
        .route("/activity", web::get().to(activity::page))
        .route("/notifications", web::get().to(notifications::list))
        .route("/notifications/read-all", web::post().to(notifications::read_all))
        .route("/notifications/{id}/read", web::post().to(notifications::read));
}
