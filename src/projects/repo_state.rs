//! Whether Loom could reach a project's repository the last time it tried. A run that cannot
//! fetch or clone it marks the project `unreachable` (the dispatcher then skips it); the
//! ticker tries again and marks it `ok` once it answers; changing `repo` starts it afresh.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use crate::activity::{Activity, Actor, Record};
use crate::db::Conn;
use crate::db::schema::projects;
use crate::error::{Error, Result};
use crate::events::Kind;

/// The state of a project's repository.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    diesel::AsExpression,
    diesel::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "snake_case")]
pub enum RepoState {
    /// Reached the last time (or never tried yet).
    #[default]
    Ok,
    /// Fetching or cloning failed: `repo_error` says why. No bead of it is dispatched.
    Unreachable,
}

crate::pg_enum!(RepoState, diesel::sql_types::Text, { Ok => "ok", Unreachable => "unreachable" });

/// A project whose repository the ticker should try again.
#[derive(Debug, Clone, Queryable)]
pub struct Unreachable {
    pub id: String,
    pub repo: String,
    pub branch: String,
}

/// Marks the project's repository `state` with `error` (already redacted: it is shown),
/// recording a `project.repo` event when the state changes. `repo`, when given, is the URL
/// the check was made with: a project whose repository changed meanwhile is left alone.
/// True when the state changed.
pub async fn mark(
    conn: &mut Conn,
    project: &str,
    repo: Option<&str>,
    state: RepoState,
    error: Option<&str>,
) -> Result<bool> {
    let (project, repo, error) =
        (project.to_owned(), repo.map(str::to_owned), error.map(str::to_owned));
    conn.transaction::<_, Error, _>(async move |conn| {
        let found: Option<(RepoState, String)> = projects::table
            .find(&project)
            .select((projects::repo_state, projects::repo))
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some((before, current)) = found else { return Ok(false) };
        if repo.as_ref().is_some_and(|repo| *repo != current) {
            return Ok(false);
        }
        diesel::update(projects::table.find(&project))
            .set((
                projects::repo_state.eq(state),
                projects::repo_error.eq(&error),
                projects::repo_checked_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        if before == state {
            return Ok(false);
        }
        Activity::record(
            conn,
            Record {
                kind: Kind::ProjectRepo,
                project_id: Some(&project),
                bead_id: None,
                actor: Actor::System,
                data: serde_json::json!({ "state": state, "error": error }),
            },
        )
        .await?;
        Ok(true)
    })
    .await
}

/// The projects whose repository is marked unreachable.
pub async fn unreachable(conn: &mut Conn) -> Result<Vec<Unreachable>> {
    Ok(projects::table
        .filter(projects::repo_state.eq(RepoState::Unreachable))
        .select((projects::id, projects::repo, projects::branch))
        .order(projects::id)
        .load(conn)
        .await?)
}
