//! The current user's notifications, newest first (all, or only the unread), each linked to
//! what it is about; marking one or all of them read. Everyone signed in manages their own,
//! viewers included, as in the API.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::page::{Layout, Nav, PageError, Viewer, ok, see_other};
use super::view::{ago, query_string};
use crate::error::Error;
use crate::notifications::{GATEWAY, ListQuery, Notification};

/// Notifications per page.
const PER_PAGE: i64 = 50;

/// `GET /notifications?unread=true&before=<id>`; text, so that nothing fails to parse.
#[derive(Debug, Default, Deserialize)]
pub struct NotificationsQuery {
    #[serde(default)]
    unread: String,
    #[serde(default)]
    before: String,
}

fn is_on(v: &str) -> bool {
    matches!(v.trim(), "true" | "1" | "on" | "yes")
}

/// The page a form came from (the filter and page it showed), to go back to after it.
fn back_to(unread: bool, before: Option<i64>) -> String {
    let before = before.map(|b| b.to_string()).unwrap_or_default();
    let unread = if unread { "true" } else { "" };
    format!("/notifications{}", query_string(&[("unread", unread), ("before", &before)]))
}

fn cursor(raw: &str) -> Result<Option<i64>, Error> {
    match raw.trim() {
        "" => Ok(None),
        c => c.parse().map(Some).map_err(|_| {
            Error::bad_request("invalid_cursor", "that page of notifications does not exist")
        }),
    }
}

/// A notification, ready to render.
pub struct NotificationRow {
    pub id: i64,
    pub title: String,
    pub reason: &'static str,
    /// Where it points, and how that link reads.
    pub link: Option<(String, String)>,
    pub count: i32,
    pub unread: bool,
    pub when: String,
    pub at: String,
}

fn reason_label(reason: &str) -> &'static str {
    match reason {
        "bead_closed" => "closed",
        "bead_blocked" => "blocked",
        "needs_human" => "needs a person",
        "mention" => "mentioned you",
        "p0_filed" => "P0 filed",
        "gateway_down" => "gateway down",
        "gateway_up" => "gateway back",
        "review_requested" => "review requested",
        "changes_requested" => "changes requested",
        "landed" => "landed",
        "check_failed" => "check failed",
        _ => "notice",
    }
}

fn row(n: Notification) -> NotificationRow {
    let link = match (&n.bead_id, &n.project_id) {
        (Some(b), _) => Some((format!("/beads/{b}"), b.clone())),
        (None, Some(p)) => Some((format!("/projects/{p}"), p.clone())),
        // The overview shows the gateway's health.
        (None, None) if n.subject == GATEWAY => Some(("/".to_owned(), "overview".to_owned())),
        (None, None) => None,
    };
    NotificationRow {
        id: n.id,
        reason: reason_label(&n.reason),
        link,
        count: n.count,
        unread: n.read_at.is_none(),
        when: ago(n.updated_at),
        at: n.updated_at.to_rfc3339(),
        title: n.title,
    }
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    layout: Layout,
    unread_only: bool,
    before: Option<i64>,
    rows: Vec<NotificationRow>,
    older: Option<String>,
    newest: Option<String>,
}

/// `GET /notifications`.
pub async fn list(
    viewer: Viewer,
    query: web::Query<NotificationsQuery>,
) -> Result<HttpResponse, PageError> {
    let unread_only = is_on(&query.unread);
    let before = cursor(&query.before)?;
    let q = ListQuery { unread_only, before, limit: PER_PAGE };
    let page = Notification::list(&mut *viewer.state.pool.get().await?, viewer.user.id, &q).await?;
    let layout = viewer.layout("Notifications", Nav::Notifications).await?;
    let older =
        page.next_cursor.and_then(|c| c.parse().ok()).map(|c| back_to(unread_only, Some(c)));
    ok(NotificationsPage {
        layout,
        unread_only,
        before,
        rows: page.items.into_iter().map(row).collect(),
        older,
        newest: before.is_some().then(|| back_to(unread_only, None)),
    })
}

/// What the mark-read forms carry: the token, and the page to go back to.
#[derive(Debug, Default, Deserialize)]
pub struct MarkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    unread: String,
    #[serde(default)]
    before: String,
}

impl MarkForm {
    fn back(&self) -> String {
        back_to(is_on(&self.unread), cursor(&self.before).ok().flatten())
    }
}

/// `POST /notifications/{id}/read`: one of the user's own (someone else's is not found).
pub async fn read(
    viewer: Viewer,
    id: web::Path<String>,
    form: web::Form<MarkForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let id: i64 = id.parse().map_err(|_| Error::not_found("notification"))?;
    Notification::mark_read(&mut *viewer.state.pool.get().await?, viewer.user.id, id).await?;
    Ok(see_other(&form.back()))
}

/// `POST /notifications/read-all`.
pub async fn read_all(
    viewer: Viewer,
    form: web::Form<MarkForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    Notification::mark_all_read(&mut *viewer.state.pool.get().await?, viewer.user.id).await?;
    // Every row of the unread filter is gone: its first page.
    Ok(see_other(&back_to(is_on(&form.unread), None)))
}
