//! The actions that touch the tracker rather than the worktree: filing discovered work
//! (limited per run by the machine, de-duplicated here) and commenting on the bead.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::activity::Actor;
use crate::beads::{
    Bead, BeadStatus, BeadType, Comment, Dependency, DependencyKind, NewBead, NewComment, Priority,
    PriorityInput,
};
use crate::db::Conn;
use crate::error::{Error, Result};

/// What a run files.
pub struct Discovered {
    pub title: String,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub bead_type: Option<BeadType>,
    pub labels: Option<Vec<String>>,
}

/// Files `found` in `project`, linked `discovered-from` the bead being worked on (when
/// there is one: a conversation may be on none), in one transaction; returns what the
/// model reads. An unfinished bead with the same title
/// (ignoring case and spaces) is not filed twice: its id is returned instead.
pub async fn file_discovered(
    conn: &mut Conn,
    project: &str,
    from_bead: Option<&str>,
    found: Discovered,
    actor: Actor,
) -> Result<String> {
    let (project, from_bead) = (project.to_owned(), from_bead.map(str::to_owned));
    conn.transaction::<_, Error, _>(async move |conn| {
        // Two runs filing the same title at once: one waits for the other, then finds it.
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || lower(btrim($2))))")
            .bind::<Text, _>(&project)
            .bind::<Text, _>(&found.title)
            .execute(conn)
            .await?;
        if let Some(id) = open_with_title(conn, &project, &found.title).await? {
            return Ok(format!("not filed: {id} already tracks \"{}\"", found.title.trim()));
        }
        let new = NewBead {
            project: project.clone(),
            title: found.title,
            description: found.description,
            bead_type: found.bead_type,
            priority: found.priority.map(|p| PriorityInput::Number(p.get().into())),
            labels: found.labels,
            persona: None,
            parent: None,
            depends_on: None,
        };
        let bead = Bead::create(conn, new, actor).await?;
        if let Some(depends_on) = from_bead {
            let link = Dependency { depends_on, kind: DependencyKind::DiscoveredFrom };
            Bead::add_dependency(conn, &bead.id, link, actor).await?;
        }
        Ok(format!("filed {}: {}", bead.id, bead.title))
    })
    .await
}

async fn open_with_title(conn: &mut Conn, project: &str, title: &str) -> Result<Option<String>> {
    use crate::db::schema::beads;
    use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
    let same = diesel::dsl::sql::<diesel::sql_types::Bool>("lower(btrim(title)) = lower(btrim(")
        .bind::<Text, _>(title.to_owned())
        .sql("))");
    Ok(beads::table
        .filter(beads::project_id.eq(project))
        .filter(beads::status.ne(BeadStatus::Closed))
        .filter(same)
        .select(beads::id)
        .first(conn)
        .await
        .optional()?)
}

/// A comment on the bead, by the agent.
pub async fn comment(conn: &mut Conn, bead: &str, body: String, actor: Actor) -> Result<String> {
    let c = Comment::add(conn, bead, NewComment { body }, actor).await?;
    Ok(format!("commented on {} ({})", c.bead_id, c.id))
}
