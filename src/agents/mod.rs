//! Agents: named workers, each bound to a persona and optionally to one project, holding at
//! most one bead at a time.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::activity::{Activity, Actor, Record};
use crate::beads::{BeadStatus, RetryPolicy, RunOutcome};
use crate::db::Conn;
use crate::db::schema::{agents, beads, projects, runs};
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::personas::Persona;

crate::db_enum!(
    /// What an agent is doing.
    AgentStatus, AgentStatus, "snake_case", {
    Idle => "idle",
    Working => "working",
    Paused => "paused",
    Offline => "offline",
});

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = agents)]
pub struct Agent {
    pub id: Uuid,
    pub name: String,
    pub persona: String,
    #[serde(rename = "project")]
    pub project_id: Option<String>,
    pub status: AgentStatus,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub name: String,
    pub persona: String,
    #[serde(default)]
    pub project: Option<String>,
}

/// Changes to an agent; `project: null` unbinds it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub persona: Option<String>,
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    pub project: Option<Option<String>>,
}

fn check_name(name: &str) -> Result<()> {
    crate::projects::check_slug(name, "invalid_agent_name", "an agent name")
}

async fn check_project_exists(conn: &mut Conn, project: &str) -> Result<()> {
    let found: i64 =
        projects::table.filter(projects::id.eq(project)).count().get_result(conn).await?;
    if found == 0 {
        return Err(Error::invalid("unknown_project", format!("no project {project:?}")));
    }
    Ok(())
}

fn taken(e: Error, name: &str) -> Error {
    if e.is_unique_violation() {
        Error::conflict("agent_exists", format!("an agent named {name:?} already exists"))
    } else {
        e
    }
}

async fn record(conn: &mut Conn, agent: &Agent, kind: Kind, actor: Actor) -> Result<()> {
    Activity::record(conn, Record {
        kind,
        project_id: agent.project_id.as_deref(),
        bead_id: None,
        actor,
        data: serde_json::json!({ "agent": agent.id, "name": agent.name, "status": agent.status }),
    })
    .await?;
    Ok(())
}

impl Agent {
    pub async fn create(conn: &mut Conn, new: NewAgent, actor: Actor) -> Result<Agent> {
        check_name(&new.name)?;
        conn.transaction::<_, Error, _>(async move |conn| {
            Persona::require(conn, &new.persona).await?;
            if let Some(p) = &new.project {
                check_project_exists(conn, p).await?;
            }
            let agent = diesel::insert_into(agents::table)
                .values((
                    agents::id.eq(Uuid::now_v7()),
                    agents::name.eq(&new.name),
                    agents::persona.eq(&new.persona),
                    agents::project_id.eq(&new.project),
                ))
                .returning(Agent::as_returning())
                .get_result(conn)
                .await
                .map_err(|e| taken(e.into(), &new.name))?;
            record(conn, &agent, Kind::AgentCreated, actor).await?;
            Ok(agent)
        })
        .await
    }

    pub async fn find(conn: &mut Conn, id: Uuid) -> Result<Agent> {
        agents::table
            .find(id)
            .select(Agent::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("agent {id}")))
    }

    /// The agent a person means by "this project's agent": one bound to the project, else one
    /// that takes work from any project; the first by name.
    pub async fn for_project(conn: &mut Conn, project: &str) -> Result<Option<Agent>> {
        Ok(agents::table
            .filter(agents::project_id.eq(project).or(agents::project_id.is_null()))
            .order((agents::project_id.is_null().asc(), agents::name.asc()))
            .select(Agent::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    pub async fn lock(conn: &mut Conn, id: Uuid) -> Result<Agent> {
        agents::table
            .find(id)
            .select(Agent::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("agent {id}")))
    }

    pub async fn list(
        conn: &mut Conn,
        project: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Agent>> {
        let mut q = agents::table.select(Agent::as_select()).order(agents::name).into_boxed();
        if let Some(p) = project {
            q = q.filter(agents::project_id.eq(p.to_owned()));
        }
        if let Some(after) = after {
            q = q.filter(agents::name.gt(after.to_owned()));
        }
        Ok(q.limit(limit).load(conn).await?)
    }

    /// Agents by status, every status in its order (zero when none).
    pub async fn count_by_status(conn: &mut Conn) -> Result<Vec<(AgentStatus, i64)>> {
        let rows: Vec<(AgentStatus, i64)> = agents::table
            .group_by(agents::status)
            .select((agents::status, diesel::dsl::count_star()))
            .load(conn)
            .await?;
        Ok(crate::db::every(AgentStatus::ALL.iter().copied(), &rows))
    }

    /// Renames or rebinds an agent; refused while it works on a bead.
    pub async fn update(
        conn: &mut Conn,
        id: Uuid,
        patch: AgentPatch,
        actor: Actor,
    ) -> Result<Agent> {
        if let Some(n) = &patch.name {
            check_name(n)?;
        }
        conn.transaction::<_, Error, _>(async move |conn| {
            let current = Agent::lock(conn, id).await?;
            let rebinding = patch.persona.is_some() || patch.project.is_some();
            if rebinding && current.status == AgentStatus::Working {
                return Err(Error::conflict(
                    "agent_working",
                    "pause the agent before changing its persona or project",
                ));
            }
            if let Some(p) = &patch.persona {
                Persona::require(conn, p).await?;
            }
            if let Some(Some(p)) = &patch.project {
                check_project_exists(conn, p).await?;
            }
            let name = patch.name.unwrap_or(current.name.clone());
            let agent = diesel::update(agents::table.find(id))
                .set((
                    agents::name.eq(&name),
                    agents::persona.eq(patch.persona.unwrap_or(current.persona)),
                    agents::project_id.eq(patch.project.unwrap_or(current.project_id)),
                    agents::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Agent::as_returning())
                .get_result(conn)
                .await
                .map_err(|e| taken(e.into(), &name))?;
            record(conn, &agent, Kind::AgentUpdated, actor).await?;
            Ok(agent)
        })
        .await
    }

    /// Deletes an agent; refused while it works on a bead.
    pub async fn delete(conn: &mut Conn, id: Uuid, actor: Actor) -> Result<()> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let agent = Agent::lock(conn, id).await?;
            if agent.status == AgentStatus::Working {
                return Err(Error::conflict("agent_working", "pause the agent before deleting it"));
            }
            diesel::delete(agents::table.find(id)).execute(conn).await?;
            record(conn, &agent, Kind::AgentDeleted, actor).await
        })
        .await
    }

    /// Sets the status (pause or resume), in one transaction with its activity row.
    pub(crate) async fn set_status(
        conn: &mut Conn,
        id: Uuid,
        status: AgentStatus,
        actor: Actor,
    ) -> Result<Agent> {
        let agent = diesel::update(agents::table.find(id))
            .set((agents::status.eq(status), agents::updated_at.eq(diesel::dsl::now)))
            .returning(Agent::as_returning())
            .get_result(conn)
            .await?;
        record(conn, &agent, Kind::AgentStatus, actor).await?;
        Ok(agent)
    }
}

impl Agent {
    /// Pauses an agent. A bead it is working on goes back to `open` (outcome `cancelled`,
    /// which costs the bead no attempt: pausing is a person's decision, not the bead's
    /// failure).
    pub async fn pause(conn: &mut Conn, id: Uuid, actor: Actor) -> Result<Agent> {
        conn.transaction::<_, Error, _>(async move |conn| {
            Agent::find(conn, id).await?;
            let open_run: Option<Uuid> = runs::table
                .filter(runs::agent_id.eq(id))
                .filter(runs::outcome.is_null())
                .select(runs::id)
                .first(conn)
                .await
                .optional()?;
            if let Some(run) = open_run {
                let error = Some("the agent was paused".to_owned());
                crate::beads::release_in(
                    conn,
                    run,
                    RunOutcome::Cancelled,
                    error,
                    RetryPolicy::default(),
                )
                .await?;
            }
            Agent::lock(conn, id).await?;
            Agent::set_status(conn, id, AgentStatus::Paused, actor).await
        })
        .await
    }

    /// Resumes a paused (or offline) agent: it is idle and takes work again.
    pub async fn resume(conn: &mut Conn, id: Uuid, actor: Actor) -> Result<Agent> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let agent = Agent::lock(conn, id).await?;
            match agent.status {
                AgentStatus::Idle | AgentStatus::Working => Ok(agent),
                AgentStatus::Paused | AgentStatus::Offline => {
                    Agent::set_status(conn, id, AgentStatus::Idle, actor).await
                }
            }
        })
        .await
    }
}

/// The bead an agent is working on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentBead {
    pub id: String,
    pub title: String,
}

impl Agent {
    /// For each agent among `ids` that holds a bead, that bead: the one assigned to it in
    /// progress, or in review while it reviews it (a claim holds at most one per agent).
    /// Agents without one are absent.
    pub async fn current_beads(
        conn: &mut Conn,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, CurrentBead>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Option<Uuid>, String, String)> = beads::table
            .filter(beads::status.eq_any(BeadStatus::HELD))
            .filter(beads::assignee_agent_id.eq_any(ids))
            .order(beads::id)
            .select((beads::assignee_agent_id, beads::id, beads::title))
            .load(conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(agent, id, title)| Some((agent?, CurrentBead { id, title })))
            .collect())
    }

    /// The names of the agents among `ids` that exist.
    pub async fn names(conn: &mut Conn, ids: &[Uuid]) -> Result<HashMap<Uuid, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, String)> = agents::table
            .filter(agents::id.eq_any(ids))
            .select((agents::id, agents::name))
            .load(conn)
            .await?;
        Ok(rows.into_iter().collect())
    }
}
