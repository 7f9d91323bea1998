//! People watching projects: P0 beads filed there and questions for a human notify them.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::Conn;
use crate::db::schema::project_watchers;
use crate::error::{Error, Result};
use crate::projects::Project;

/// A user's watch on a project.
pub struct ProjectWatch;

impl ProjectWatch {
    /// Starts watching; watching again changes nothing. An unknown project is not found.
    pub async fn add(conn: &mut Conn, project: &str, user: Uuid) -> Result<()> {
        let inserted = diesel::insert_into(project_watchers::table)
            .values((project_watchers::project_id.eq(project), project_watchers::user_id.eq(user)))
            .on_conflict_do_nothing()
            .execute(conn)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            // The foreign key says so in one statement, even against a concurrent delete.
            Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                Err(Error::not_found(format!("project {project}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stops watching; not watching is fine. An unknown project is not found.
    pub async fn remove(conn: &mut Conn, project: &str, user: Uuid) -> Result<()> {
        let removed = diesel::delete(
            project_watchers::table
                .filter(project_watchers::project_id.eq(project))
                .filter(project_watchers::user_id.eq(user)),
        )
        .execute(conn)
        .await?;
        if removed == 0 {
            Project::find(conn, project).await?;
        }
        Ok(())
    }

    /// Whether the user watches the project.
    pub async fn watching(conn: &mut Conn, project: &str, user: Uuid) -> Result<bool> {
        Ok(diesel::select(diesel::dsl::exists(
            project_watchers::table
                .filter(project_watchers::project_id.eq(project))
                .filter(project_watchers::user_id.eq(user)),
        ))
        .get_result(conn)
        .await?)
    }
}
