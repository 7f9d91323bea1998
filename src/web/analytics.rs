//! The analytics page: how work went over recent days, drawn from the recorded data.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::charts::{BarChart, bars, format_value};
use super::page::{Layout, Nav, PageError, Viewer, ok};
use crate::analytics::{AgentUse, Outcome, report};
use crate::projects::Project;

#[derive(Template)]
#[template(path = "analytics.html")]
struct AnalyticsPage {
    layout: Layout,
    days: i32,
    project: String,
    projects: Vec<Project>,
    closed: BarChart,
    tokens: BarChart,
    latency: BarChart,
    lead_p50: String,
    lead_p90: String,
    closed_total: i64,
    mean_attempts: String,
    outcomes: Vec<Outcome>,
    agents: Vec<AgentUse>,
}

#[derive(Debug, Deserialize)]
pub struct Query {
    #[serde(default = "thirty")]
    days: i32,
    #[serde(default)]
    project: String,
}

fn thirty() -> i32 {
    30
}

fn hours(h: Option<f64>) -> String {
    match h {
        None => "—".into(),
        Some(h) if h < 1.0 => format!("{:.0} min", h * 60.0),
        Some(h) if h < 48.0 => format!("{h:.1} h"),
        Some(h) => format!("{:.1} days", h / 24.0),
    }
}

/// `GET /analytics`.
pub async fn page(viewer: Viewer, query: web::Query<Query>) -> Result<HttpResponse, PageError> {
    let project = Some(query.project.trim()).filter(|p| !p.is_empty());
    let mut conn = viewer.state.pool.get().await?;
    let r = report(&mut conn, query.days, project).await?;
    let projects = Project::list(&mut conn, None, 500).await?;
    drop(conn);
    let series = |f: &dyn Fn(&crate::analytics::Day) -> f64| -> Vec<(String, f64)> {
        r.days.iter().map(|d| (d.day.format("%b %d").to_string(), f(d))).collect()
    };
    ok(AnalyticsPage {
        layout: viewer.layout("Analytics", Nav::Analytics).await?,
        days: query.days,
        project: project.unwrap_or_default().to_owned(),
        projects,
        closed: bars(
            "Beads closed per day",
            &series(&|d| d.closed as f64),
            "beads",
            "No bead was closed in this window: each day's closed beads appear here as a bar.",
        ),
        tokens: bars(
            "Gateway tokens per day",
            &series(&|d| d.tokens as f64),
            "tokens",
            "No tokens were spent in this window: once agents call the gateway, the tokens \
             of each day appear here.",
        ),
        latency: bars(
            "Median gateway latency per day",
            &series(&|d| d.latency_p50_ms.unwrap_or(0.0)),
            "ms",
            "No gateway calls in this window: the median time a call took each day appears \
             here.",
        ),
        lead_p50: hours(r.lead.p50_hours),
        lead_p90: hours(r.lead.p90_hours),
        closed_total: r.lead.closed,
        mean_attempts: r.lead.mean_attempts.map_or_else(|| "—".into(), format_value),
        outcomes: r.outcomes,
        agents: r.agents,
    })
}
