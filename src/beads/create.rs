//! Filing a new bead.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Deserialize;

use super::graph;
use super::model::Bead;
use super::types::{
    BeadId, BeadStatus, BeadType, EdgeKind, Priority, PriorityInput, check_description,
    check_persona, check_title, normalize_labels,
};
use crate::activity::{Activity, Actor, Record};
use crate::db::Conn;
use crate::db::schema::{bead_dependencies, beads, projects};
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::personas::Persona;

/// A new bead, as the API receives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBead {
    pub project: String,
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
    /// Makes the new bead a child of this one (its id becomes `<parent>.<n>`).
    #[serde(default)]
    pub parent: Option<String>,
    /// Beads that must close before this one is ready (`blocks` dependencies).
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
}

/// Root ids start at four base36 characters and grow when a project gets crowded, so a
/// collision costs one cheap retry, never an error.
const ID_LENGTHS: [usize; 8] = [4, 4, 5, 5, 6, 7, 8, 10];

struct Checked {
    priority: Priority,
    title: String,
    description: String,
    labels: Vec<String>,
    depends_on: Vec<String>,
}

fn check(new: &NewBead) -> Result<Checked> {
    let title = check_title(&new.title)?;
    let description = new.description.clone().unwrap_or_default();
    check_description(&description)?;
    let labels = normalize_labels(new.labels.clone().unwrap_or_default())?;
    if let Some(p) = &new.persona {
        check_persona(p)?;
    }
    let mut depends_on = new.depends_on.clone().unwrap_or_default();
    depends_on.sort();
    depends_on.dedup();
    if depends_on.len() > 100 {
        return Err(Error::invalid("too_many_dependencies", "at most 100 depends_on at once"));
    }
    let priority = new.priority.as_ref().map(PriorityInput::parse).transpose()?;
    Ok(Checked {
        priority: priority.unwrap_or(Priority::DEFAULT),
        title,
        description,
        labels,
        depends_on,
    })
}

impl Bead {
    /// Files a bead, its `blocks` edges and its activity row in one transaction.
    pub async fn create(conn: &mut Conn, new: NewBead, actor: Actor) -> Result<Bead> {
        let checked = check(&new)?;
        conn.transaction::<_, Error, _>(async move |conn| {
            // Filing under a parent or behind blockers touches the graph: serialise with
            // other graph changes, before taking any row lock.
            if new.parent.is_some() || !checked.depends_on.is_empty() {
                graph::lock_graph(conn).await?;
            }
            let prefix: String = projects::table
                .find(&new.project)
                .select(projects::prefix)
                .for_share()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| {
                    Error::invalid("unknown_project", format!("no project {:?}", new.project))
                })?;
            if let Some(persona) = &new.persona {
                Persona::require(conn, persona).await?;
            }
            let parent = match &new.parent {
                Some(parent) => Some(claim_child_slot(conn, parent, &new.project).await?),
                None => None,
            };
            let blockers = graph::lock_existing(conn, &checked.depends_on).await?;
            if let Some((parent, _)) = &parent {
                graph::check_new_child(conn, &parent.id, &checked.depends_on).await?;
            }
            let open_blockers = blockers.iter().filter(|(_, s)| *s != BeadStatus::Closed).count();
            let held_by = match &parent {
                Some((parent, _)) => graph::hold_from_parent(parent),
                None => None,
            };
            let mut row = BeadInsert {
                id: String::new(),
                project_id: &new.project,
                title: &checked.title,
                description: &checked.description,
                bead_type: new.bead_type.unwrap_or(BeadType::Task),
                priority: checked.priority.get(),
                labels: &checked.labels,
                persona: new.persona.as_deref(),
                parent_id: parent.as_ref().map(|(p, _)| p.id.as_str()),
                created_by_user_id: actor.user_id(),
                created_by_agent_id: actor.agent_id(),
                open_blockers: open_blockers as i32,
                held_by,
            };
            let bead = match &parent {
                Some((_, child_id)) => {
                    row.id = child_id.to_string();
                    insert(conn, &row).await?.ok_or_else(|| {
                        Error::conflict("bead_exists", format!("a bead {child_id} already exists"))
                    })?
                }
                None => insert_with_fresh_id(conn, &prefix, row).await?,
            };
            let edges: Vec<_> = checked
                .depends_on
                .iter()
                .map(|d| {
                    (
                        bead_dependencies::bead_id.eq(&bead.id),
                        bead_dependencies::depends_on.eq(d),
                        bead_dependencies::kind.eq(EdgeKind::Blocks),
                    )
                })
                .collect();
            if !edges.is_empty() {
                diesel::insert_into(bead_dependencies::table).values(edges).execute(conn).await?;
            }
            Activity::record(
                conn,
                Record {
                    kind: Kind::BeadCreated,
                    project_id: Some(&bead.project_id),
                    bead_id: Some(&bead.id),
                    actor,
                    data: serde_json::json!({
                        "title": bead.title,
                        "priority": bead.priority,
                        "type": bead.bead_type,
                        "parent": bead.parent_id,
                        "depends_on": checked.depends_on,
                    }),
                },
            )
            .await?;
            Ok(bead)
        })
        .await
    }
}

/// Locks the parent, checks it can take a child, and hands out the child's id.
async fn claim_child_slot(
    conn: &mut Conn,
    parent_id: &str,
    project: &str,
) -> Result<(Bead, BeadId)> {
    let parent = beads::table
        .find(parent_id)
        .select(Bead::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| Error::invalid("unknown_parent", format!("no bead {parent_id:?}")))?;
    if parent.project_id != project {
        return Err(Error::invalid(
            "cross_project_parent",
            "a bead's parent must be in the same project",
        ));
    }
    if parent.status == BeadStatus::Closed {
        return Err(Error::conflict(
            "parent_closed",
            format!("{parent_id} is closed; reopen it before adding children"),
        ));
    }
    let seq: i32 = diesel::update(beads::table.find(parent_id))
        .set(beads::child_seq.eq(beads::child_seq + 1))
        .returning(beads::child_seq)
        .get_result(conn)
        .await?;
    let child_id = BeadId::child(parent_id, seq);
    Ok((parent, child_id))
}

#[derive(Insertable)]
#[diesel(table_name = beads)]
struct BeadInsert<'a> {
    id: String,
    project_id: &'a str,
    title: &'a str,
    description: &'a str,
    bead_type: BeadType,
    priority: i16,
    labels: &'a [String],
    persona: Option<&'a str>,
    parent_id: Option<&'a str>,
    created_by_user_id: Option<uuid::Uuid>,
    created_by_agent_id: Option<uuid::Uuid>,
    open_blockers: i32,
    held_by: Option<String>,
}

/// Inserts unless the id is taken (then None, without aborting the transaction).
async fn insert(conn: &mut Conn, row: &BeadInsert<'_>) -> Result<Option<Bead>> {
    Ok(diesel::insert_into(beads::table)
        .values(row)
        .on_conflict(beads::id)
        .do_nothing()
        .returning(Bead::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

async fn insert_with_fresh_id(
    conn: &mut Conn,
    prefix: &str,
    mut row: BeadInsert<'_>,
) -> Result<Bead> {
    for length in ID_LENGTHS {
        row.id = BeadId::random(prefix, length)?.to_string();
        if let Some(bead) = insert(conn, &row).await? {
            return Ok(bead);
        }
    }
    Err(Error::Internal(anyhow::anyhow!("could not find a free bead id in project {prefix}")))
}
