//! Who hears of an activity row, and how it reads. A `Trigger` is what a row can notify
//! about, read from its kind and data alone; `Facts` are what the database says about the
//! people concerned; `targets` derives the notifications from both without any I/O.
//!
//! The rules:
//! - a bead a user filed is closed: `bead_closed`; blocked: `bead_blocked` (not when Loom
//!   parks it for an unavailable gateway: that heals itself and `gateway_down` says it);
//! - a bead asks for a human (blocked `needs_human`): `needs_human` to its creator and to
//!   every watcher of its project;
//! - a bead's work waits for a review: `review_requested` to its creator and the watchers;
//!   a review asks for changes: `changes_requested` to its creator;
//! - a bead's work lands (closed by the merge queue): `landed`, instead of `bead_closed`;
//!   the project's check fails on it: `check_failed`, both to its creator;
//! - an `@username` in a comment: `mention` to that user;
//! - a P0 bead filed in a watched project: `p0_filed` to the watchers;
//! - the gateway goes down or comes back: `gateway_down` / `gateway_up` to every user.
//!
//! Nobody is notified of their own change.

use std::collections::HashSet;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::activity::Activity;
use crate::beads::BlockedReason;
use crate::db::Conn;
use crate::db::schema::{agents, beads, project_watchers, users};
use crate::error::Result;
use crate::events::Kind;

/// Why someone is notified: the `reason` of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    BeadClosed,
    BeadBlocked,
    NeedsHuman,
    Mention,
    P0Filed,
    GatewayDown,
    GatewayUp,
    SpendLimited,
    SpendResumed,
    ReviewRequested,
    ChangesRequested,
    Landed,
    CheckFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BeadClosed => "bead_closed",
            Reason::BeadBlocked => "bead_blocked",
            Reason::NeedsHuman => "needs_human",
            Reason::Mention => "mention",
            Reason::P0Filed => "p0_filed",
            Reason::GatewayDown => "gateway_down",
            Reason::GatewayUp => "gateway_up",
            Reason::SpendLimited => "spend_limited",
            Reason::SpendResumed => "spend_resumed",
            Reason::ReviewRequested => "review_requested",
            Reason::ChangesRequested => "changes_requested",
            Reason::Landed => "landed",
            Reason::CheckFailed => "check_failed",
        }
    }
}

/// The subject of gateway notifications (bead notifications have the bead's id).
pub const GATEWAY: &str = "gateway";

/// What an activity row can notify about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Closed,
    /// Closed by the merge queue: its work is on `branch`.
    Landed {
        branch: String,
    },
    ReviewRequested,
    ChangesRequested,
    CheckFailed,
    /// Blocked for a reason other than a question for a human; `why` reads after "blocked: ".
    Blocked {
        why: String,
    },
    NeedsHuman,
    Mentioned {
        usernames: Vec<String>,
    },
    P0Filed {
        title: String,
    },
    Gateway {
        healthy: bool,
        reason: Option<String>,
    },
    /// A token budget was reached (new claims stop) or has room again; `scope` is `fleet`
    /// or the project's id.
    Spend {
        limited: bool,
        scope: String,
    },
}

/// Longest free text (a manual block's note, the gateway's reason) quoted in a title.
const QUOTE: usize = 80;

fn shortened(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTE) {
        Some((cut, _)) => format!("{}…", text[..cut].trim_end()),
        None => text.to_owned(),
    }
}

fn text(data: &serde_json::Value, key: &str) -> Option<String> {
    data.get(key).and_then(|v| v.as_str()).map(str::to_owned)
}

impl Trigger {
    /// The trigger in a row, if any. Rows a newer version wrote in a shape this one does
    /// not know notify nobody rather than fail.
    pub fn of(row: &Activity) -> Option<Trigger> {
        let kind: Kind = row.kind.parse().ok()?;
        let data = &row.data;
        let on_bead = row.bead_id.is_some();
        match kind {
            Kind::BeadClosed if on_bead => Some(match text(data, "landed_on") {
                Some(branch) => Trigger::Landed { branch },
                None => Trigger::Closed,
            }),
            // A review asked of an agent is no person's to do (yet).
            Kind::BeadReview if on_bead && text(data, "by").as_deref() != Some("agent") => {
                Some(Trigger::ReviewRequested)
            }
            Kind::BeadChangesRequested if on_bead => Some(Trigger::ChangesRequested),
            Kind::BeadSentBack
                if on_bead && text(data, "why").as_deref() == Some("check_failed") =>
            {
                Some(Trigger::CheckFailed)
            }
            Kind::BeadBlocked if on_bead => {
                let reason = text(data, "reason").and_then(|r| r.parse::<BlockedReason>().ok());
                let why = match reason {
                    Some(BlockedReason::NeedsHuman) => return Some(Trigger::NeedsHuman),
                    Some(BlockedReason::GatewayUnavailable) => return None,
                    Some(BlockedReason::MergeConflict) => "a merge conflict".to_owned(),
                    Some(BlockedReason::TooManyAttempts) => "too many failed attempts".to_owned(),
                    Some(BlockedReason::LoopDetected) => "an agent went round in circles".into(),
                    Some(BlockedReason::SandboxUnavailable) => {
                        "no sandbox could be made for the agent's commands".into()
                    }
                    Some(BlockedReason::CheckUnavailable) => {
                        "the project's check could not run".into()
                    }
                    Some(BlockedReason::Manual) | None => match text(data, "note") {
                        Some(note) if !note.trim().is_empty() => shortened(&note),
                        _ => "by hand".to_owned(),
                    },
                };
                Some(Trigger::Blocked { why })
            }
            Kind::CommentAdded if on_bead => {
                let usernames: Vec<String> = data
                    .get("mentions")
                    .and_then(|m| m.as_array())
                    .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                (!usernames.is_empty()).then_some(Trigger::Mentioned { usernames })
            }
            Kind::BeadCreated if on_bead && row.project_id.is_some() => {
                let p0 = data.get("priority").and_then(|p| p.as_i64()) == Some(0);
                p0.then(|| Trigger::P0Filed { title: text(data, "title").unwrap_or_default() })
            }
            Kind::GatewayHealth => {
                let healthy = data.get("healthy").and_then(|h| h.as_bool())?;
                Some(Trigger::Gateway { healthy, reason: text(data, "reason") })
            }
            Kind::SpendLimited | Kind::SpendResumed => Some(Trigger::Spend {
                limited: kind == Kind::SpendLimited,
                scope: text(data, "scope")?,
            }),
            _ => None,
        }
    }
}

/// What the database says about the people a row may notify. Only what the trigger needs
/// is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The bead's current title and the user who filed it; `None` when it is gone.
    pub bead: Option<(String, Option<Uuid>)>,
    /// Users watching the row's project.
    pub watchers: Vec<Uuid>,
    /// Users whose usernames were mentioned.
    pub mentioned: Vec<Uuid>,
    /// Every user.
    pub everyone: Vec<Uuid>,
    /// Who made the change, as a title names them (`@ana`, an agent's name, `Loom`).
    pub actor: String,
}

impl Facts {
    pub async fn load(conn: &mut Conn, row: &Activity, trigger: &Trigger) -> Result<Facts> {
        let mut facts = Facts::default();
        // The rules about a bead's state name it and tell whoever filed it.
        let of_bead = matches!(
            trigger,
            Trigger::Closed
                | Trigger::Landed { .. }
                | Trigger::Blocked { .. }
                | Trigger::NeedsHuman
                | Trigger::ReviewRequested
                | Trigger::ChangesRequested
                | Trigger::CheckFailed
        );
        if let Some(bead) = row.bead_id.as_ref().filter(|_| of_bead) {
            facts.bead = beads::table
                .find(bead)
                .select((beads::title, beads::created_by_user_id))
                .first(conn)
                .await
                .optional()?;
        }
        match trigger {
            Trigger::NeedsHuman | Trigger::P0Filed { .. } | Trigger::ReviewRequested => {
                if let Some(project) = &row.project_id {
                    facts.watchers = project_watchers::table
                        .filter(project_watchers::project_id.eq(project))
                        .order(project_watchers::created_at)
                        .select(project_watchers::user_id)
                        .load(conn)
                        .await?;
                }
            }
            Trigger::Mentioned { usernames } => {
                facts.mentioned = users::table
                    .filter(users::username.eq_any(usernames))
                    .select(users::id)
                    .load(conn)
                    .await?;
                facts.actor = actor_name(conn, row).await?;
            }
            Trigger::Gateway { .. } | Trigger::Spend { .. } => {
                facts.everyone =
                    users::table.order(users::created_at).select(users::id).load(conn).await?;
            }
            Trigger::Closed
            | Trigger::Landed { .. }
            | Trigger::Blocked { .. }
            | Trigger::ChangesRequested
            | Trigger::CheckFailed => {}
        }
        Ok(facts)
    }
}

async fn actor_name(conn: &mut Conn, row: &Activity) -> Result<String> {
    if let Some(user) = row.actor_user_id {
        let name: Option<String> =
            users::table.find(user).select(users::username).first(conn).await.optional()?;
        return Ok(name.map_or_else(|| "someone".to_owned(), |n| format!("@{n}")));
    }
    if let Some(agent) = row.actor_agent_id {
        let name: Option<String> =
            agents::table.find(agent).select(agents::name).first(conn).await.optional()?;
        return Ok(name.unwrap_or_else(|| "an agent".to_owned()));
    }
    Ok("Loom".to_owned())
}

/// One notification to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user_id: Uuid,
    pub reason: Reason,
    pub subject: String,
    pub title: String,
    pub project_id: Option<String>,
    pub bead_id: Option<String>,
}

/// The notifications a row raises: each user at most once, never the one who acted.
pub fn targets(row: &Activity, trigger: &Trigger, facts: &Facts) -> Vec<Target> {
    let (reason, users, title) = match audience(row, trigger, facts) {
        Some(found) => found,
        None => return Vec::new(),
    };
    let subject = match trigger {
        Trigger::Gateway { .. } => GATEWAY.to_owned(),
        Trigger::Spend { scope, .. } => format!("spend:{scope}"),
        _ => row.bead_id.clone().unwrap_or_default(),
    };
    let mut seen = HashSet::new();
    users
        .into_iter()
        .filter(|u| Some(*u) != row.actor_user_id && seen.insert(*u))
        .map(|user_id| Target {
            user_id,
            reason,
            subject: subject.clone(),
            title: title.clone(),
            project_id: row.project_id.clone(),
            bead_id: row.bead_id.clone(),
        })
        .collect()
}

/// The reason, who may hear of it, and the title.
fn audience(
    row: &Activity,
    trigger: &Trigger,
    facts: &Facts,
) -> Option<(Reason, Vec<Uuid>, String)> {
    let bead = row.bead_id.as_deref().unwrap_or_default();
    let named = |title: &str| format!("{bead} \"{title}\"");
    let creator = || facts.bead.as_ref().and_then(|(_, by)| *by).into_iter().collect::<Vec<_>>();
    let current = || facts.bead.as_ref().map(|(t, _)| named(t));
    Some(match trigger {
        Trigger::Closed => (Reason::BeadClosed, creator(), format!("{} was closed", current()?)),
        Trigger::Landed { branch } => {
            (Reason::Landed, creator(), format!("{} landed on {branch}", current()?))
        }
        Trigger::ReviewRequested => {
            let users = creator().into_iter().chain(facts.watchers.iter().copied()).collect();
            (Reason::ReviewRequested, users, format!("{} is ready for review", current()?))
        }
        Trigger::ChangesRequested => (
            Reason::ChangesRequested,
            creator(),
            format!("Changes were requested on {}", current()?),
        ),
        Trigger::CheckFailed => {
            (Reason::CheckFailed, creator(), format!("{} failed the project's check", current()?))
        }
        Trigger::Blocked { why } => {
            (Reason::BeadBlocked, creator(), format!("{} is blocked: {why}", current()?))
        }
        Trigger::NeedsHuman => {
            let users = creator().into_iter().chain(facts.watchers.iter().copied()).collect();
            (Reason::NeedsHuman, users, format!("{} needs a human", current()?))
        }
        Trigger::Mentioned { .. } => (
            Reason::Mention,
            facts.mentioned.clone(),
            format!("{} mentioned you on {bead}", facts.actor),
        ),
        Trigger::P0Filed { title } => {
            let project = row.project_id.as_deref().unwrap_or_default();
            (
                Reason::P0Filed,
                facts.watchers.clone(),
                format!("P0 filed in {project}: {}", named(title)),
            )
        }
        Trigger::Gateway { healthy: false, reason } => {
            let title = match reason.as_deref().map(str::trim) {
                Some(r) if !r.is_empty() => format!("The LLM gateway is down: {}", shortened(r)),
                _ => "The LLM gateway is down".to_owned(),
            };
            (Reason::GatewayDown, facts.everyone.clone(), title)
        }
        Trigger::Gateway { healthy: true, .. } => {
            (Reason::GatewayUp, facts.everyone.clone(), "The LLM gateway is back up".to_owned())
        }
        Trigger::Spend { limited, scope } => {
            let whose = match scope.as_str() {
                "fleet" => "The fleet's".to_owned(),
                project => format!("{project}'s"),
            };
            let (reason, title) = match limited {
                true => (
                    Reason::SpendLimited,
                    format!("{whose} token budget is spent: no new work is claimed"),
                ),
                false => (
                    Reason::SpendResumed,
                    format!("{whose} token budget has room again: work resumes"),
                ),
            };
            (reason, facts.everyone.clone(), title)
        }
    })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
