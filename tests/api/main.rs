//! Integration tests against real Postgres and the real HTTP server.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location
#![allow(clippy::cloned_ref_to_slice_refs)] // `[id.clone()]` reads better in assertions

mod activity;
mod agents;
mod auth;
mod beads;
mod browser;
mod chat;
mod chat_replies;
mod cli;
mod cli_agents;
mod cli_chat;
mod cli_feed;
mod cli_schedules;
mod dependencies;
mod dispatch;
mod embedded;
mod executor;
mod gateway;
mod invariants;
mod limits;
mod metrics;
mod migrations;
mod nats;
mod notifications;
mod openapi;
mod pairing;
mod personas;
mod project_urls;
mod projects;
mod readiness;
mod roles;
mod sandbox;
mod sandbox_status;
mod schedules;
mod schema;
mod secrets;
mod sessions;
mod shutdown;
mod support;
mod ticker;
mod web;
mod web_admin;
mod web_chat;
mod web_pages;
mod web_work;
