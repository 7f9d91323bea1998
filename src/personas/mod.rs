//! Personas: who an agent is. Defined as `personas/<name>/PERSONA.md` (YAML front matter plus
//! markdown instructions): the default team is compiled in (`builtin`), and a directory
//! (`LOOM_PERSONAS_DIR`) adds to it or overrides it by name. Both are stored in the `personas`
//! table at start and on reload. A malformed file is reported with its path and line and skipped.

mod builtin;
mod parse;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

pub use parse::{LoadError, PersonaDef, parse, read_dir};

use crate::db::Conn;
use crate::db::schema::personas;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = personas)]
pub struct Persona {
    pub name: String,
    pub display_name: String,
    pub role: String,
    pub description: String,
    /// The kinds of work this persona is good at; the dispatcher matches them to bead labels.
    pub labels: Vec<String>,
    /// Markdown instructions an agent with this persona follows.
    pub instructions: String,
    pub updated_at: DateTime<Utc>,
}

/// What a load of the personas did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct LoadReport {
    /// Every persona stored, built in or from the directory, by name.
    pub loaded: Vec<String>,
    /// Those the personas directory defined (adding to the built-in team or overriding one).
    pub from_dir: Vec<String>,
    pub errors: Vec<LoadError>,
}

impl Persona {
    /// Upserts every definition in one transaction. Personas that disappeared from disk are
    /// kept: agents may still be bound to them.
    pub async fn store(conn: &mut Conn, defs: &[PersonaDef]) -> Result<()> {
        if defs.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = defs
            .iter()
            .map(|d| {
                (
                    personas::name.eq(&d.name),
                    personas::display_name.eq(&d.display_name),
                    personas::role.eq(&d.role),
                    personas::description.eq(&d.description),
                    personas::labels.eq(&d.labels),
                    personas::instructions.eq(&d.instructions),
                )
            })
            .collect();
        conn.transaction::<_, Error, _>(async move |conn| {
            diesel::insert_into(personas::table)
                .values(rows)
                .on_conflict(personas::name)
                .do_update()
                .set((
                    personas::display_name.eq(excluded(personas::display_name)),
                    personas::role.eq(excluded(personas::role)),
                    personas::description.eq(excluded(personas::description)),
                    personas::labels.eq(excluded(personas::labels)),
                    personas::instructions.eq(excluded(personas::instructions)),
                    personas::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Stores the built-in team and, over it, what parsed in `dir`; errors are reported, not
    /// fatal.
    pub async fn load(conn: &mut Conn, dir: Option<&std::path::Path>) -> Result<LoadReport> {
        let dir = dir.map(std::path::Path::to_owned);
        let (defs, from_dir, errors) = tokio::task::spawn_blocking(move || {
            let (mut defs, mut errors) = builtin::team();
            let mut from_dir = Vec::new();
            if let Some(dir) = dir {
                let (own, own_errors) = read_dir(&dir);
                errors.extend(own_errors);
                for def in own {
                    defs.retain(|d| d.name != def.name);
                    from_dir.push(def.name.clone());
                    defs.push(def);
                }
            }
            defs.sort_by(|a, b| a.name.cmp(&b.name));
            (defs, from_dir, errors)
        })
        .await
        .map_err(|e| Error::Internal(e.into()))?;
        Persona::store(conn, &defs).await?;
        for e in &errors {
            tracing::warn!(path = %e.path, line = ?e.line, error = %e.message, "a persona was not loaded");
        }
        Ok(LoadReport { loaded: defs.into_iter().map(|d| d.name).collect(), from_dir, errors })
    }

    pub async fn list(conn: &mut Conn) -> Result<Vec<Persona>> {
        Ok(personas::table.order(personas::name).select(Persona::as_select()).load(conn).await?)
    }

    pub async fn find(conn: &mut Conn, name: &str) -> Result<Persona> {
        personas::table
            .find(name)
            .select(Persona::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("persona {name:?}")))
    }

    /// For what names a persona (an agent, a bead, a schedule): 422 `unknown_persona` unless
    /// it exists.
    pub async fn require(conn: &mut Conn, name: &str) -> Result<()> {
        let found: i64 =
            personas::table.filter(personas::name.eq(name)).count().get_result(conn).await?;
        if found == 0 {
            return Err(Error::invalid(
                "unknown_persona",
                format!("no persona {name:?}: `loom persona list` shows those there are"),
            ));
        }
        Ok(())
    }
}
