//! Schedules: recurring work. A cron expression and the template of the bead it files; the
//! ticker files that bead when the schedule is due, unless a bead it filed is still open.

mod cron;
mod fire;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use cron::CronExpr;
pub use fire::{FireOutcome, Fired};

use crate::activity::{Activity, Actor, Record};
use crate::beads::{BeadType, PriorityInput, check_description, check_persona, check_title};
use crate::beads::{Priority, normalize_labels};
use crate::db::Conn;
use crate::db::schema::{projects, schedules};
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::personas::Persona;

/// The bead a schedule files each time it fires.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeadTemplate {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "type")]
    pub bead_type: Option<BeadType>,
    #[serde(default)]
    #[schema(value_type = Option<i16>)]
    pub priority: Option<PriorityInput>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub persona: Option<String>,
}

/// A template whose every field passed the same checks as a new bead's.
struct CheckedTemplate {
    title: String,
    description: String,
    bead_type: BeadType,
    priority: Priority,
    labels: Vec<String>,
    persona: Option<String>,
}

impl BeadTemplate {
    fn check(self) -> Result<CheckedTemplate> {
        let title = check_title(&self.title)?;
        let description = self.description.unwrap_or_default();
        check_description(&description)?;
        if let Some(p) = &self.persona {
            check_persona(p)?;
        }
        if self.bead_type == Some(BeadType::Epic) {
            return Err(Error::invalid(
                "invalid_type",
                "a schedule files work an agent can do; an epic is only a container",
            ));
        }
        Ok(CheckedTemplate {
            title,
            description,
            bead_type: self.bead_type.unwrap_or(BeadType::Task),
            priority: self
                .priority
                .as_ref()
                .map(PriorityInput::parse)
                .transpose()?
                .unwrap_or(Priority::DEFAULT),
            labels: normalize_labels(self.labels.unwrap_or_default())?,
            persona: self.persona,
        })
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    pub project: String,
    /// Five-field cron (minute hour day-of-month month day-of-week) or `@daily` etc., in UTC.
    pub cron: String,
    pub bead: BeadTemplate,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Changes to a schedule; `bead` replaces the whole template.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    /// When given, the change is refused (409 `stale_version`) unless it is the current one.
    pub version: Option<i32>,
    pub cron: Option<String>,
    pub bead: Option<BeadTemplate>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = schedules)]
pub struct Schedule {
    pub id: Uuid,
    pub project_id: String,
    pub cron: String,
    pub title: String,
    pub description: String,
    pub bead_type: BeadType,
    pub priority: i16,
    pub labels: Vec<String>,
    pub persona: Option<String>,
    pub enabled: bool,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_bead_id: Option<String>,
    pub created_by_user_id: Option<Uuid>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub id: Uuid,
    pub project: String,
    pub cron: String,
    pub bead: TemplateView,
    pub enabled: bool,
    /// When it fires next (while enabled).
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// The bead it filed last.
    pub last_bead: Option<String>,
    pub created_by: Option<Uuid>,
    /// Send it back with a PATCH to refuse overwriting someone else's change.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TemplateView {
    pub title: String,
    pub description: String,
    #[serde(rename = "type")]
    pub bead_type: BeadType,
    pub priority: i16,
    pub labels: Vec<String>,
    pub persona: Option<String>,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> Self {
        ScheduleView {
            id: s.id,
            project: s.project_id,
            cron: s.cron,
            bead: TemplateView {
                title: s.title,
                description: s.description,
                bead_type: s.bead_type,
                priority: s.priority,
                labels: s.labels,
                persona: s.persona,
            },
            enabled: s.enabled,
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_bead: s.last_bead_id,
            created_by: s.created_by_user_id,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

async fn check_references(conn: &mut Conn, project: &str, persona: Option<&str>) -> Result<()> {
    let found: i64 =
        projects::table.filter(projects::id.eq(project)).count().get_result(conn).await?;
    if found == 0 {
        return Err(Error::invalid("unknown_project", format!("no project {project:?}")));
    }
    if let Some(persona) = persona {
        Persona::require(conn, persona).await?;
    }
    Ok(())
}

async fn record(conn: &mut Conn, s: &Schedule, kind: Kind, actor: Actor) -> Result<()> {
    Activity::record(conn, Record {
        kind,
        project_id: Some(&s.project_id),
        bead_id: None,
        actor,
        data: serde_json::json!({ "schedule": s.id, "cron": s.cron, "title": s.title, "enabled": s.enabled }),
    })
    .await?;
    Ok(())
}

impl Schedule {
    pub async fn create(conn: &mut Conn, new: NewSchedule, actor: Actor) -> Result<Schedule> {
        let cron = CronExpr::parse(&new.cron)?;
        let t = new.bead.check()?;
        conn.transaction::<_, Error, _>(async move |conn| {
            check_references(conn, &new.project, t.persona.as_deref()).await?;
            let schedule = diesel::insert_into(schedules::table)
                .values((
                    schedules::id.eq(Uuid::now_v7()),
                    schedules::project_id.eq(&new.project),
                    schedules::cron.eq(cron.as_str()),
                    schedules::title.eq(&t.title),
                    schedules::description.eq(&t.description),
                    schedules::bead_type.eq(t.bead_type),
                    schedules::priority.eq(t.priority.get()),
                    schedules::labels.eq(&t.labels),
                    schedules::persona.eq(&t.persona),
                    schedules::enabled.eq(new.enabled.unwrap_or(true)),
                    schedules::next_run_at.eq(cron.next_after(Utc::now())?),
                    schedules::created_by_user_id.eq(actor.user_id()),
                ))
                .returning(Schedule::as_returning())
                .get_result(conn)
                .await?;
            record(conn, &schedule, Kind::ScheduleCreated, actor).await?;
            Ok(schedule)
        })
        .await
    }

    pub async fn find(conn: &mut Conn, id: Uuid) -> Result<Schedule> {
        schedules::table
            .find(id)
            .select(Schedule::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("schedule {id}")))
    }

    /// The schedule, locked until the transaction ends; `not_found` when there is none.
    pub(crate) async fn lock(conn: &mut Conn, id: Uuid) -> Result<Schedule> {
        schedules::table
            .find(id)
            .select(Schedule::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("schedule {id}")))
    }

    /// Schedules in creation order (ids are time-ordered), after the cursor id.
    pub async fn list(
        conn: &mut Conn,
        project: Option<&str>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Schedule>> {
        let mut q =
            schedules::table.select(Schedule::as_select()).order(schedules::id).into_boxed();
        if let Some(p) = project {
            q = q.filter(schedules::project_id.eq(p.to_owned()));
        }
        if let Some(after) = after {
            q = q.filter(schedules::id.gt(after));
        }
        Ok(q.limit(limit).load(conn).await?)
    }

    /// Changes the expression, the template or whether it is enabled. A new expression (or
    /// enabling it again) counts from now: missed firings are not made up.
    pub async fn update(
        conn: &mut Conn,
        id: Uuid,
        patch: SchedulePatch,
        actor: Actor,
    ) -> Result<Schedule> {
        let cron = patch.cron.as_deref().map(CronExpr::parse).transpose()?;
        let template = patch.bead.map(BeadTemplate::check).transpose()?;
        conn.transaction::<_, Error, _>(async move |conn| {
            let current = Schedule::lock(conn, id).await?;
            if let Some(v) = patch.version
                && v != current.version
            {
                return Err(Error::conflict(
                    "stale_version",
                    format!(
                        "the schedule changed since version {v} (now {}); reload and retry",
                        current.version
                    ),
                ));
            }
            if let Some(t) = &template {
                check_references(conn, &current.project_id, t.persona.as_deref()).await?;
            }
            let enabling = patch.enabled == Some(true) && !current.enabled;
            let next = match &cron {
                Some(c) => c.next_after(Utc::now())?,
                None if enabling => CronExpr::parse(&current.cron)?.next_after(Utc::now())?,
                None => current.next_run_at,
            };
            let t = template.unwrap_or(CheckedTemplate {
                title: current.title,
                description: current.description,
                bead_type: current.bead_type,
                priority: Priority::new(current.priority.into())?,
                labels: current.labels,
                persona: current.persona,
            });
            let schedule = diesel::update(schedules::table.find(id))
                .set((
                    schedules::cron.eq(cron.as_ref().map_or(current.cron.as_str(), |c| c.as_str())),
                    schedules::title.eq(&t.title),
                    schedules::description.eq(&t.description),
                    schedules::bead_type.eq(t.bead_type),
                    schedules::priority.eq(t.priority.get()),
                    schedules::labels.eq(&t.labels),
                    schedules::persona.eq(&t.persona),
                    schedules::enabled.eq(patch.enabled.unwrap_or(current.enabled)),
                    schedules::next_run_at.eq(next),
                    schedules::version.eq(schedules::version + 1),
                    schedules::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Schedule::as_returning())
                .get_result(conn)
                .await?;
            record(conn, &schedule, Kind::ScheduleUpdated, actor).await?;
            Ok(schedule)
        })
        .await
    }

    /// Deletes a schedule; the beads it filed stay.
    pub async fn delete(conn: &mut Conn, id: Uuid, actor: Actor) -> Result<()> {
        conn.transaction::<_, Error, _>(async move |conn| {
            let schedule: Schedule = diesel::delete(schedules::table.find(id))
                .returning(Schedule::as_returning())
                .get_result(conn)
                .await
                .optional()?
                .ok_or_else(|| Error::not_found(format!("schedule {id}")))?;
            record(conn, &schedule, Kind::ScheduleDeleted, actor).await
        })
        .await
    }
}
