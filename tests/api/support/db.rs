//! A database per test, cloned from a template that is migrated once per migration set.

use std::sync::OnceLock;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

/// The server tests run against; any database on it works as the maintenance database.
pub fn server_url() -> String {
    std::env::var("LOOM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `server_url` with another database name.
pub fn url_for(db: &str) -> String {
    loom::db::database_url(&server_url(), db)
}

/// Named after a digest of the migration files, so a changed migration gets a new template.
fn template_name() -> String {
    let mut files: Vec<_> = walk("migrations");
    files.sort();
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(f.as_bytes());
        hasher.update(std::fs::read(&f).unwrap_or_default());
    }
    let digest: String = hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("loom_tmpl_{digest}")
}

fn walk(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path.to_string_lossy()));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}

async fn ensure_template() -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    if let Some(name) = NAME.get() {
        return name.clone();
    }
    let name = template_name();
    let mut conn =
        AsyncPgConnection::establish(&server_url()).await.expect("connect to the test server");
    // Serialises template creation across test processes.
    diesel::sql_query("SELECT pg_advisory_lock(4242424299)")
        .execute(&mut conn)
        .await
        .expect("lock");
    let ready: i64 = count(&mut conn, &format!("datname = '{name}' AND datistemplate")).await;
    if ready == 0 {
        drop_stale_templates(&mut conn, &name).await;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .expect("drop half-built template");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create template");
        loom::db::migrate(&url_for(&name)).await.expect("migrate template");
        diesel::sql_query(format!("ALTER DATABASE {name} WITH IS_TEMPLATE true"))
            .execute(&mut conn)
            .await
            .expect("mark template");
    }
    diesel::sql_query("SELECT pg_advisory_unlock(4242424299)")
        .execute(&mut conn)
        .await
        .expect("unlock");
    let _ = NAME.set(name.clone());
    name
}

/// Templates of older migration sets are of no further use, but the newest few are kept:
/// another checkout's test run (a branch with other migrations) may be cloning one now.
async fn drop_stale_templates(conn: &mut AsyncPgConnection, keep: &str) {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let stale: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE 'loom\\_tmpl\\_%' AND datname <> '{keep}' ORDER BY oid DESC OFFSET 3"
    ))
    .load(conn)
    .await
    .unwrap_or_default();
    for Name { datname } in stale {
        let _ = diesel::sql_query(format!("ALTER DATABASE {datname} WITH IS_TEMPLATE false"))
            .execute(conn)
            .await;
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
            .execute(conn)
            .await;
    }
}

async fn count(conn: &mut AsyncPgConnection, condition: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let row: N =
        diesel::sql_query(format!("SELECT count(*) AS n FROM pg_database WHERE {condition}"))
            .get_result(conn)
            .await
            .expect("count databases");
    row.n
}

/// A private, migrated database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let template = ensure_template().await;
        let name = format!("loom_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&server_url()).await.expect("connect");
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut conn)
            .await
            .expect("clone the template");
        TestDb { url: url_for(&name), name }
    }

    /// An empty, unmigrated database (for migration tests).
    pub async fn empty() -> TestDb {
        let name = format!("loom_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = AsyncPgConnection::establish(&server_url()).await.expect("connect");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create");
        TestDb { url: url_for(&name), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a separate thread with its own runtime can
        // block on the DROP without stalling it.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = AsyncPgConnection::establish(&server_url()).await.ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        let _ = dropped;
    }
}
