//! `/api/v1` handlers, one file per resource.

pub mod activity;
pub mod agents;
pub mod auth;
pub mod beads;
pub mod conversations;
pub mod landing;
pub mod links;
pub mod meta;
pub mod metrics;
pub mod notifications;
pub mod personas;
pub mod projects;
pub mod schedules;
pub mod users;

use utoipa_actix_web::service_config::ServiceConfig;

pub fn v1(cfg: &mut ServiceConfig) {
    cfg.service(meta::status);
    cfg.service(auth::login).service(auth::logout).service(auth::me);
    cfg.service(auth::list_tokens).service(auth::create_token).service(auth::revoke_token);
    cfg.service(users::list).service(users::create).service(users::update).service(users::delete);
    cfg.service(projects::list)
        .service(projects::create)
        .service(projects::show)
        .service(projects::update)
        .service(projects::delete)
        .service(projects::graph)
        .service(landing::queue);
    cfg.service(agents::list)
        .service(agents::create)
        .service(agents::show)
        .service(agents::update)
        .service(agents::delete)
        .service(agents::pause)
        .service(agents::resume);
    cfg.service(personas::list).service(personas::reload).service(personas::show);
    cfg.service(schedules::list)
        .service(schedules::create)
        .service(schedules::show)
        .service(schedules::update)
        .service(schedules::delete)
        .service(schedules::run);
    cfg.service(beads::list)
        .service(beads::create)
        .service(beads::ready)
        .service(beads::blocked)
        .service(beads::show)
        .service(beads::update)
        .service(beads::close)
        .service(beads::reopen)
        .service(beads::block)
        .service(landing::approve)
        .service(landing::request_changes);
    cfg.service(links::add_dependency)
        .service(links::remove_dependency)
        .service(links::list_comments)
        .service(links::add_comment)
        .service(links::bead_runs)
        .service(links::show_run);
    cfg.service(conversations::list)
        .service(conversations::create)
        .service(conversations::show)
        .service(conversations::post_message)
        .service(conversations::stop)
        .service(conversations::stream)
        .service(conversations::handoff);
    cfg.service(activity::list).service(activity::stream);
    cfg.service(notifications::list)
        .service(notifications::stream)
        .service(notifications::read_all)
        .service(notifications::read)
        .service(notifications::watch)
        .service(notifications::unwatch);
}
