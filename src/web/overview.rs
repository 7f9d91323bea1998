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

/// How many beads the overview lists as waiting for a person.
const WAITING_SHOWN: i64 = 20;

/// A bead a person must act on: why it waits and what clears it.
struct Waiting {
    bead: Bead,
    reason: &'static str,
    remedy: &'static str,
}

impl From<Bead> for Waiting {
    fn from(bead: Bead) -> Self {
        let reason = bead.blocked_reason.map_or("blocked", |r| r.as_str());
        let remedy = bead.blocked_reason.and_then(|r| r.remedy()).unwrap_or_default();
        Waiting { bead, reason, remedy }
    }
}

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
    /// Beads a person must act on, with what clears each, and how many there are in all.
    waiting: Vec<Waiting>,
    waiting_total: i64,
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
    let (waiting, waiting_total) = stats::waiting_for_a_person(&mut conn, WAITING_SHOWN).await?;
    let waiting = waiting.into_iter().map(Waiting::from).collect();
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
        waiting,
        waiting_total,
        recent,
        feed_query: String::new(),
    })
}
