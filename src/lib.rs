//! Loom: a self-hosted service that runs a team of AI agents on software projects.
//!
//! The crate is layered so that arrows point one way: `http` and `cli` sit on top of the
//! domain modules (`beads`, `projects`, `users`, `activity`), which sit on `db`.

pub mod activity;
pub mod agents;
pub mod analytics;
pub mod app;
pub mod beads;
pub mod chat;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod db;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod executor;
pub mod gateway;
pub mod git;
pub mod http;
pub mod landing;
pub mod metrics;
pub mod notifications;
pub mod personas;
pub mod projects;
pub mod schedules;
pub mod serde_ext;
pub mod telemetry;
pub mod ticker;
pub mod users;
pub mod web;
pub mod workbench;

pub use error::{Error, Result};
