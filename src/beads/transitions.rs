//! Changing a bead: editing its fields under an optimistic version, and moving it between
//! statuses, each in one transaction with its activity row and the readiness of everything
//! that depends on it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Deserialize;

use super::graph::lock_graph;
use super::model::Bead;
use super::status::apply;
use super::types::PriorityInput;
use super::types::{
    BeadStatus, BeadType, BlockedReason, check_description, check_persona, check_title,
    normalize_labels,
};
use crate::activity::{Activity, Actor, Record};
use crate::db::Conn;
use crate::db::schema::beads;
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::personas::Persona;

/// Edits to a bead. `version` must match the stored one.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeadPatch {
    pub version: i32,
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<i16>)]
    pub priority: Option<PriorityInput>,
    #[serde(rename = "type")]
    pub bead_type: Option<BeadType>,
    pub labels: Option<Vec<String>>,
    /// Set to a persona name, or to null to clear it.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    pub persona: Option<Option<String>>,
    /// `open`, `deferred`, `blocked` or `closed` (`in_progress` belongs to the dispatcher).
    pub status: Option<BeadStatus>,
    /// With `status: deferred`: when the bead comes back (absent: until reopened).
    pub defer_until: Option<DateTime<Utc>>,
    /// With `status: blocked` or `closed`: why.
    pub reason: Option<String>,
}

/// A status change requested through its own endpoint.
#[derive(Debug, Clone)]
pub enum StatusChange {
    Close { reason: Option<String> },
    Reopen { reason: Option<String> },
    Block { reason: BlockedReason, note: Option<String> },
    Defer { until: Option<DateTime<Utc>> },
}

fn check_reason(reason: &Option<String>) -> Result<()> {
    if reason.as_ref().is_some_and(|r| r.len() > 10_000) {
        return Err(Error::invalid("reason_too_long", "a reason is at most 10000 bytes"));
    }
    Ok(())
}

impl Bead {
    pub async fn get(conn: &mut Conn, id: &str) -> Result<Bead> {
        beads::table
            .find(id)
            .select(Bead::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("bead {id}")))
    }

    /// Reads a bead and locks it for the rest of the transaction.
    pub async fn lock(conn: &mut Conn, id: &str) -> Result<Bead> {
        beads::table
            .find(id)
            .select(Bead::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("bead {id}")))
    }

    /// Applies a patch if `version` is current; a stale version is 409 `stale_version`.
    pub async fn patch(conn: &mut Conn, id: &str, patch: BeadPatch, actor: Actor) -> Result<Bead> {
        let title = patch.title.as_deref().map(check_title).transpose()?;
        let priority = patch.priority.as_ref().map(PriorityInput::parse).transpose()?;
        if let Some(d) = &patch.description {
            check_description(d)?;
        }
        let labels = patch.labels.clone().map(normalize_labels).transpose()?;
        if let Some(Some(p)) = &patch.persona {
            check_persona(p)?;
        }
        check_reason(&patch.reason)?;
        let change = match patch.status {
            None => None,
            Some(BeadStatus::Open) => Some(StatusChange::Reopen { reason: patch.reason.clone() }),
            Some(BeadStatus::Closed) => Some(StatusChange::Close { reason: patch.reason.clone() }),
            Some(BeadStatus::Deferred) => Some(StatusChange::Defer { until: patch.defer_until }),
            Some(BeadStatus::Blocked) => Some(StatusChange::Block {
                reason: BlockedReason::Manual,
                note: patch.reason.clone(),
            }),
            Some(BeadStatus::InProgress) => {
                return Err(Error::invalid(
                    "invalid_status",
                    "in_progress is set by the dispatcher when an agent claims a bead",
                ));
            }
            Some(BeadStatus::Review | BeadStatus::Landing) => {
                return Err(Error::invalid(
                    "invalid_status",
                    "review and landing follow an agent's done (and an approval); they are not set by hand",
                ));
            }
        };
        let id = id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            // A status change, or becoming an epic that may close itself, changes holds.
            if change.is_some() || patch.bead_type == Some(BeadType::Epic) {
                lock_graph(conn).await?;
            }
            let current = Bead::lock(conn, &id).await?;
            if current.version != patch.version {
                return Err(Error::conflict(
                    "stale_version",
                    format!(
                        "the bead changed since version {} (now {}); reload and retry",
                        patch.version, current.version
                    ),
                ));
            }
            if let Some(Some(p)) = &patch.persona
                && current.persona.as_ref() != Some(p)
            {
                Persona::require(conn, p).await?;
            }
            let mut changed: Vec<&str> = Vec::new();
            let mut track = |name: &'static str, differs: bool| {
                if differs {
                    changed.push(name)
                }
            };
            track("title", title.as_ref().is_some_and(|t| *t != current.title));
            track(
                "description",
                patch.description.as_ref().is_some_and(|d| *d != current.description),
            );
            track("priority", priority.is_some_and(|p| p != current.priority));
            track("type", patch.bead_type.is_some_and(|t| t != current.bead_type));
            track("labels", labels.as_ref().is_some_and(|l| *l != current.labels));
            track("persona", patch.persona.as_ref().is_some_and(|p| *p != current.persona));
            if patch.bead_type == Some(BeadType::Epic) && current.status == BeadStatus::InProgress {
                return Err(Error::conflict(
                    "bead_in_progress",
                    "an agent is working on this bead",
                ));
            }
            diesel::update(beads::table.find(&id))
                .set((
                    beads::title.eq(title.unwrap_or(current.title.clone())),
                    beads::description.eq(patch.description.unwrap_or(current.description.clone())),
                    beads::priority.eq(priority.unwrap_or(current.priority).get()),
                    beads::bead_type.eq(patch.bead_type.unwrap_or(current.bead_type)),
                    beads::labels.eq(labels.unwrap_or(current.labels.clone())),
                    beads::persona.eq(patch.persona.unwrap_or(current.persona.clone())),
                ))
                .execute(conn)
                .await?;
            if !changed.is_empty() {
                Activity::record(
                    conn,
                    Record {
                        kind: Kind::BeadUpdated,
                        project_id: Some(&current.project_id),
                        bead_id: Some(&id),
                        actor,
                        data: serde_json::json!({ "fields": changed }),
                    },
                )
                .await?;
            }
            // Asking for the status a bead already has changes nothing.
            if let Some(change) = change.filter(|_| patch.status != Some(current.status)) {
                let locked = Bead::get(conn, &id).await?;
                apply(conn, locked, change, actor).await?;
            }
            if patch.bead_type == Some(BeadType::Epic) && current.bead_type != BeadType::Epic {
                super::status::close_finished_epic(conn, Some(&id)).await?;
            }
            bump_version(conn, &id).await
        })
        .await
    }

    /// Moves a bead to another status through its own endpoint (close, reopen, block, defer).
    /// With `version`, a stale one is refused like a PATCH.
    pub async fn change_status(
        conn: &mut Conn,
        id: &str,
        change: StatusChange,
        version: Option<i32>,
        actor: Actor,
    ) -> Result<Bead> {
        match &change {
            StatusChange::Close { reason } | StatusChange::Reopen { reason } => {
                check_reason(reason)?
            }
            StatusChange::Block { note, .. } => check_reason(note)?,
            StatusChange::Defer { .. } => {}
        }
        let id = id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            lock_graph(conn).await?;
            let bead = Bead::lock(conn, &id).await?;
            if version.is_some_and(|v| v != bead.version) {
                return Err(Error::conflict("stale_version", "the bead changed; reload and retry"));
            }
            apply(conn, bead, change, actor).await?;
            bump_version(conn, &id).await
        })
        .await
    }
}

pub(super) async fn bump_version(conn: &mut Conn, id: &str) -> Result<Bead> {
    Ok(diesel::update(beads::table.find(id))
        .set((beads::version.eq(beads::version + 1), beads::updated_at.eq(diesel::dsl::now)))
        .returning(Bead::as_returning())
        .get_result(conn)
        .await?)
}
