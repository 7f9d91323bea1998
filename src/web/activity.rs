//! The activity page: the whole history, newest first, filtered by project, kind (or kind
//! family) and agent, paged by cursor; the first page follows the activity stream with the
//! same filters.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, Nav, PageError, Viewer, html};
use super::view::{ActivityLine, query_string};
use crate::activity::{Activity, ListQuery};
use crate::agents::Agent;
use crate::error::Error;
use crate::events::{Filter, Kind, KindFilter};
use crate::projects::Project;
use crate::users::User;

/// Rows per page.
const PER_PAGE: i64 = 50;
/// Projects offered in the filter.
const PROJECTS: i64 = 500;

/// The filters and the page, from the query string. Text throughout, so that a bad value
/// is shown back with the reason instead of failing to parse.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FeedQuery {
    #[serde(default)]
    pub project: String,
    /// A kind (`bead.closed`) or a family (`bead`).
    #[serde(default)]
    pub kind: String,
    /// Events this agent caused (its id).
    #[serde(default)]
    pub agent: String,
    /// Older than this activity id (the previous page's last row).
    #[serde(default)]
    pub before: String,
}

impl FeedQuery {
    fn filter(&self) -> Result<Filter, Error> {
        let kind =
            match self.kind.trim() {
                "" => None,
                k => Some(KindFilter::parse_for_feed(k).map_err(|_| {
                    Error::invalid("unknown_kind", format!("no kind of event {k:?}"))
                })?),
            };
        let agent = match self.agent.trim() {
            "" => None,
            a => Some(a.parse::<Uuid>().map_err(|_| {
                Error::invalid("invalid_agent", format!("{a:?} is not an agent id"))
            })?),
        };
        let project = Some(self.project.trim().to_owned()).filter(|p| !p.is_empty());
        Ok(Filter { project, bead: None, agent, kind })
    }

    fn before(&self) -> Result<Option<i64>, Error> {
        match self.before.trim() {
            "" => Ok(None),
            b => b.parse().map(Some).map_err(|_| {
                Error::bad_request("invalid_cursor", "that page of activity does not exist")
            }),
        }
    }

    /// The filters (not the page) as a query string: for links, and the stream's URL.
    fn encoded(&self, before: Option<i64>) -> String {
        let before = before.map(|b| b.to_string()).unwrap_or_default();
        query_string(&[
            ("project", &self.project),
            ("kind", &self.kind),
            ("agent", &self.agent),
            ("before", &before),
        ])
    }

    fn filtered(&self) -> bool {
        [&self.project, &self.kind, &self.agent].iter().any(|v| !v.trim().is_empty())
    }
}

/// A row of the page: the line, and who caused it.
pub struct FeedRow {
    pub line: ActivityLine,
    pub actor: Option<String>,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage {
    layout: Layout,
    query: FeedQuery,
    rows: Vec<FeedRow>,
    /// The stream's query string, on the first page only (older pages stay as they are).
    live: Option<String>,
    older: Option<String>,
    newest: Option<String>,
    projects: Vec<String>,
    families: Vec<&'static str>,
    kinds: Vec<&'static str>,
    agent_name: Option<String>,
    error: Option<String>,
}

/// The families of stored kinds (`bead`, `run`, ...) and the stored kinds, in their order.
fn kind_options() -> (Vec<&'static str>, Vec<&'static str>) {
    let kinds: Vec<&'static str> =
        Kind::ALL.iter().filter(|k| !k.is_ephemeral()).map(|k| k.as_str()).collect();
    let mut families: Vec<&'static str> = Vec::new();
    for family in kinds.iter().filter_map(|k| k.split('.').next()) {
        if !families.contains(&family) {
            families.push(family);
        }
    }
    (families, kinds)
}

/// Who caused each row, by name.
async fn actors(viewer: &Viewer, rows: &[Activity]) -> Result<Vec<Option<String>>, PageError> {
    let users: Vec<Uuid> = rows.iter().filter_map(|a| a.actor_user_id).collect();
    let agents: Vec<Uuid> = rows.iter().filter_map(|a| a.actor_agent_id).collect();
    let mut conn = viewer.state.pool.get().await?;
    let users: HashMap<Uuid, String> = User::names(&mut conn, &users).await?;
    let agents: HashMap<Uuid, String> = Agent::names(&mut conn, &agents).await?;
    Ok(rows
        .iter()
        .map(|a| {
            a.actor_user_id.and_then(|u| users.get(&u).cloned()).or_else(|| {
                a.actor_agent_id.and_then(|id| agents.get(&id).map(|n| format!("{n} (agent)")))
            })
        })
        .collect())
}

/// One page of rows and whether older ones follow.
async fn rows(viewer: &Viewer, query: &FeedQuery) -> Result<(Vec<Activity>, bool), Error> {
    let q = ListQuery {
        filter: query.filter()?,
        since: None,
        before: query.before()?,
        limit: PER_PAGE + 1,
    };
    let mut rows = Activity::list(&mut *viewer.state.pool.get().await?, &q).await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    Ok((rows, more))
}

/// The projects the filter offers (the one asked for too, even if it is gone), and the
/// name of the agent filtered by.
async fn filter_choices(
    viewer: &Viewer,
    query: &FeedQuery,
) -> Result<(Vec<String>, Option<String>), PageError> {
    let mut conn = viewer.state.pool.get().await?;
    let mut projects: Vec<String> =
        Project::list(&mut conn, None, PROJECTS).await?.into_iter().map(|p| p.id).collect();
    let wanted = query.project.trim();
    if !wanted.is_empty() && !projects.iter().any(|p| p == wanted) {
        projects.insert(0, wanted.to_owned());
    }
    let agent_name = match query.filter().ok().and_then(|f| f.agent) {
        Some(a) => Agent::names(&mut conn, &[a]).await?.remove(&a),
        None => None,
    };
    Ok((projects, agent_name))
}

/// `GET /activity`.
pub async fn page(viewer: Viewer, query: web::Query<FeedQuery>) -> Result<HttpResponse, PageError> {
    let query = query.into_inner();
    let layout = viewer.layout("Activity", Nav::Activity).await?;
    let (found, more, error) = match rows(&viewer, &query).await {
        Ok((found, more)) => (found, more, None),
        // A bad filter shows an empty page with the reason, not an error page.
        Err(e @ (Error::Invalid { .. } | Error::BadRequest { .. })) => (Vec::new(), false, Some(e)),
        Err(e) => return Err(e.into()),
    };
    let names = actors(&viewer, &found).await?;
    let older =
        more.then(|| found.last().map(|a| format!("/activity{}", query.encoded(Some(a.id)))));
    let first_page = query.before.trim().is_empty();
    let (projects, agent_name) = filter_choices(&viewer, &query).await?;
    let (families, kinds) = kind_options();
    let status = super::page::status_of(error.as_ref());
    let page = ActivityPage {
        layout,
        live: (first_page && error.is_none()).then(|| query.encoded(None)),
        older: older.flatten(),
        newest: (!first_page).then(|| format!("/activity{}", query.encoded(None))),
        rows: found
            .iter()
            .zip(names)
            .map(|(a, actor)| FeedRow { line: ActivityLine::from(a), actor })
            .collect(),
        projects,
        families,
        kinds,
        agent_name,
        error: error.map(|e| e.to_string()),
        query,
    };
    Ok(html(status, page.render()))
}
