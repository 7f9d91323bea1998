//! The database layer: the connection pool, embedded migrations, the managed local
//! Postgres cluster and the generated schema. Nothing here knows about HTTP.

pub mod enums;
pub mod local;
pub mod names;
mod page;
mod prepared;
pub mod schema;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

use crate::config::DbConfig;
pub use page::{Page, database_url};
pub use prepared::Prepared;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type Pool = DeadPool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;
pub type Conn = AsyncPgConnection;

/// Builds a pool whose connections carry a `statement_timeout`, and checks that one
/// connection can be opened.
pub async fn connect(url: &str, cfg: &DbConfig) -> anyhow::Result<Pool> {
    let timeout_ms = cfg.statement_timeout.as_millis();
    let app_name = quote_literal(&cfg.application_name);
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.custom_setup = Box::new(move |url| {
        let app_name = app_name.clone();
        async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            conn.batch_execute(&format!(
                "SET statement_timeout = {timeout_ms}; SET TIME ZONE 'UTC'; SET application_name = {app_name};"
            ))
            .await
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        }
        .boxed()
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    let pool = DeadPool::builder(manager)
        .max_size(cfg.pool_size)
        .wait_timeout(Some(cfg.acquire_timeout))
        .create_timeout(Some(cfg.acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?;
    drop(pool.get().await?);
    Ok(pool)
}

/// A string as an SQL literal.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Applies every pending migration. Runs the synchronous migration harness on a blocking
/// thread, which works on any runtime flavour.
pub async fn migrate(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)?;
        // Two replicas starting together must not race each other's DDL.
        SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_lock(4242424201)")?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
        SimpleConnection::batch_execute(&mut conn, "SELECT pg_advisory_unlock(4242424201)")?;
        applied
    })
    .await?
}

/// Reverts every applied migration (used by tests of `down.sql`).
pub async fn revert_all(url: &str) -> anyhow::Result<()> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)?;
        conn.revert_all_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("revert failed: {e}"))?;
        Ok(())
    })
    .await?
}

/// True when every embedded migration has been applied.
pub async fn migrations_current(pool: &Pool) -> anyhow::Result<bool> {
    use diesel::migration::MigrationSource;
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let mut conn = pool.get().await?;
    let applied: Vec<Version> =
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations").load(&mut conn).await?;
    let known = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(known.iter().all(|m| {
        let name = m.name().version().to_string();
        applied.iter().any(|a| a.version == name)
    }))
}

/// A cheap round trip, for readiness checks.
pub async fn ping(pool: &Pool) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let mut conn = pool.get().await?;
    conn.batch_execute("SELECT 1").await?;
    Ok(started.elapsed())
}

/// A duration as a Postgres `interval` bind (`now() + $1`).
pub fn interval(d: Duration) -> diesel::pg::data_types::PgInterval {
    diesel::pg::data_types::PgInterval::from_microseconds(d.as_micros().min(i64::MAX as u128) as i64)
}

/// Every key of `all`, in its order, with its count in `rows` (zero when it has none): what
/// a `GROUP BY` leaves out.
pub fn every<K: PartialEq + Copy>(
    all: impl IntoIterator<Item = K>,
    rows: &[(K, i64)],
) -> Vec<(K, i64)> {
    all.into_iter()
        .map(|k| (k, rows.iter().find(|(r, _)| *r == k).map_or(0, |(_, n)| *n)))
        .collect()
}
