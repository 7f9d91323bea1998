//! Small pieces pages share: how times, priorities, statuses and activity rows read.

use chrono::{DateTime, Utc};

use crate::activity::Activity;
use crate::beads::BeadStatus;

/// "just now", "5 min ago", "3 h ago", "2 days ago", then the date.
pub fn ago(t: DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        86400..2_592_000 => format!("{} days ago", s / 86400),
        _ => t.format("%Y-%m-%d").to_string(),
    }
}

/// How a status reads on a page.
pub fn status_label(s: BeadStatus) -> &'static str {
    match s {
        BeadStatus::Open => "Open",
        BeadStatus::InProgress => "In progress",
        BeadStatus::Blocked => "Blocked",
        BeadStatus::Deferred => "Deferred",
        BeadStatus::Closed => "Closed",
        BeadStatus::Review => "In review",
        BeadStatus::Landing => "Landing",
    }
}

/// One line of the activity feed on a page.
pub struct ActivityLine {
    pub id: i64,
    pub kind: String,
    /// The family (`bead`, `run`, ...), for styling.
    pub family: String,
    pub project: Option<String>,
    pub bead: Option<String>,
    pub summary: String,
    pub when: String,
    pub at: String,
}

impl From<&Activity> for ActivityLine {
    fn from(a: &Activity) -> Self {
        let text = |k: &str| a.data.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let summary = text("title")
            .or_else(|| text("note"))
            .or_else(|| text("reason"))
            .or_else(|| text("summary"))
            .or_else(|| text("name"))
            .unwrap_or_default();
        ActivityLine {
            id: a.id,
            kind: a.kind.clone(),
            family: a.kind.split('.').next().unwrap_or_default().to_owned(),
            project: a.project_id.clone(),
            bead: a.bead_id.clone(),
            summary: summary.chars().take(140).collect(),
            when: ago(a.created_at),
            at: a.created_at.to_rfc3339(),
        }
    }
}

/// `?k=v&...` of the pairs whose value is not blank (values percent-encoded), or nothing.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", super::page::urlencode(v.trim())))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_person_says_them() {
        let now = Utc::now();
        assert_eq!(ago(now), "just now");
        assert_eq!(ago(now - chrono::Duration::minutes(5)), "5 min ago");
        assert_eq!(ago(now - chrono::Duration::hours(3)), "3 h ago");
        assert_eq!(ago(now - chrono::Duration::days(2)), "2 days ago");
        let old = now - chrono::Duration::days(400);
        assert_eq!(ago(old), old.format("%Y-%m-%d").to_string());
    }

    #[test]
    fn query_strings_leave_out_blank_values_and_encode_the_rest() {
        assert_eq!(query_string(&[("a", ""), ("b", " ")]), "");
        assert_eq!(
            query_string(&[("project", "web"), ("kind", ""), ("q", "a&b")]),
            "?project=web&q=a%26b"
        );
    }
}
