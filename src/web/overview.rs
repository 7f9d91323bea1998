//! The overview: how much work is where, who is doing it, whether the gateway answers, what
//! just happened, and what waits for a person.

use actix_web::HttpResponse;
use askama::Template;

use super::page::{Layout, Nav, PageError, Viewer, ok};
use super::view::{ActivityLine, status_label};
use crate::activity::{Activity, ListQuery};
use crate::agents::Agent;
use crate::beads::{Bead, stats};
use crate::http::api::meta::{GatewayStatus, SpendStatus, gateway_status, spend_status};

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    beads: Vec<(&'static str, &'static str, i64)>,
    priorities: Vec<(i16, i64)>,
    agents: Vec<(String, i64)>,
    gateway: GatewayStatus,
    spend: SpendStatus,
    sandbox: crate::workbench::SandboxStatus,
    needing: Vec<Bead>,
    recent: Vec<ActivityLine>,
    /// The live feed's stream filter (none: everything).
    feed_query: String,
}

pub async fn page(viewer: Viewer) -> Result<HttpResponse, PageError> {
    let layout = viewer.layout("Overview", Nav::Overview).await?;
    let mut conn = viewer.state.pool.get().await?;
    let beads = stats::by_status(&mut conn, None)
        .await?
        .into_iter()
        .map(|(s, n)| (s.as_str(), status_label(s), n))
        .collect();
    let priorities = stats::open_by_priority(&mut conn).await?;
    let agents = Agent::count_by_status(&mut conn)
        .await?
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    let needing = stats::needing_a_human(&mut conn, 20).await?;
    let spend = spend_status(&mut conn, &viewer.state.spend).await?;
    let recent = Activity::list(&mut conn, &ListQuery { limit: 15, ..ListQuery::default() })
        .await?
        .iter()
        .map(ActivityLine::from)
        .collect();
    ok(OverviewPage {
        layout,
        beads,
        priorities,
        agents,
        gateway: gateway_status(&viewer.state),
        spend,
        sandbox: viewer.state.sandbox.status().await,
        needing,
        recent,
        feed_query: String::new(),
    })
}
