//! Who runs each project's executor: a lease row per project in `executor_leases`. A process
//! claims the projects whose row is missing, its own, or lapsed, all in one statement, and
//! renews them by claiming again; a process that dies stops renewing, and after the lease
//! time another takes its projects over.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{Interval, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::db::{Conn, Prepared, interval};
use crate::error::Result;

/// Takes or renews every project this process may own: rows missing, already its own, or
/// lapsed. Projects owned by a live peer are left alone. Returns the projects owned now.
const CLAIM: &str = "INSERT INTO executor_leases (project_id, owner, owner_name, expires_at) \
     SELECT p.id, $1, $2, now() + $3 FROM projects p \
     ON CONFLICT (project_id) DO UPDATE \
        SET owner = excluded.owner, owner_name = excluded.owner_name, \
            expires_at = excluded.expires_at, \
            acquired_at = CASE WHEN executor_leases.owner = excluded.owner \
                               THEN executor_leases.acquired_at ELSE now() END \
      WHERE executor_leases.owner = excluded.owner OR executor_leases.expires_at < now() \
     RETURNING project_id";

#[derive(QueryableByName)]
struct Owned {
    #[diesel(sql_type = Text)]
    project_id: String,
}

/// This process's identity as an executor owner.
#[derive(Debug, Clone)]
pub struct Owner {
    pub id: Uuid,
    /// For people: host and process id.
    pub name: String,
}

impl Owner {
    pub fn new() -> Owner {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "loom".into());
        Owner { id: Uuid::new_v4(), name: format!("{host}:{}", std::process::id()) }
    }

    /// Claims or renews; the projects this process owns for `lease` from now.
    pub async fn claim(&self, conn: &mut Conn, lease: Duration) -> Result<Vec<String>> {
        let rows: Vec<Owned> = Prepared(
            diesel::sql_query(CLAIM)
                .bind::<SqlUuid, _>(self.id)
                .bind::<Text, _>(&self.name)
                .bind::<Interval, _>(interval(lease)),
        )
        .load(conn)
        .await?;
        let mut owned: Vec<String> = rows.into_iter().map(|r| r.project_id).collect();
        owned.sort();
        Ok(owned)
    }

    /// Whether some project has no live owner (new, or its owner's lease lapsed): a cheap
    /// read, so that a new project is taken on at the next tick, not the next renewal.
    pub async fn any_unowned(conn: &mut Conn) -> Result<bool> {
        #[derive(QueryableByName)]
        struct Any {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            any: bool,
        }
        let q = "SELECT EXISTS (SELECT 1 FROM projects p \
                   LEFT JOIN executor_leases l ON l.project_id = p.id \
                  WHERE l.project_id IS NULL OR l.expires_at < now()) AS any";
        Ok(Prepared(diesel::sql_query(q)).get_result::<Any>(conn).await?.any)
    }

    /// Gives up every project (at shutdown), so a peer takes them over at once.
    pub async fn release_all(&self, conn: &mut Conn) -> Result<usize> {
        use crate::db::schema::executor_leases;
        use diesel::{ExpressionMethods, QueryDsl};
        Ok(diesel::delete(executor_leases::table.filter(executor_leases::owner.eq(self.id)))
            .execute(conn)
            .await?)
    }
}

impl Default for Owner {
    fn default() -> Self {
        Owner::new()
    }
}
