//! `src/db/schema.rs` must describe the migrated database exactly: every table, column,
//! type and nullability. (Regenerate it with `diesel print-schema` after a migration.)

use std::collections::BTreeMap;

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::support::db::TestDb;

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

/// Diesel's name for a Postgres type, as print-schema writes it.
fn diesel_type(udt: &str) -> String {
    let base = |t: &str| match t {
        "int2" => "Int2".to_owned(),
        "int4" => "Int4".to_owned(),
        "int8" => "Int8".to_owned(),
        "text" => "Text".to_owned(),
        "bool" => "Bool".to_owned(),
        "uuid" => "Uuid".to_owned(),
        "bytea" => "Bytea".to_owned(),
        "jsonb" => "Jsonb".to_owned(),
        "timestamptz" => "Timestamptz".to_owned(),
        custom => custom.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect(),
    };
    match udt.strip_prefix('_') {
        // Arrays: schema.patch declares label arrays NOT NULL elementwise (a CHECK holds it).
        Some(inner) => format!("Array<{}>", base(inner)),
        None => base(udt),
    }
}

/// `table -> [(column, type)]` from the `diesel::table!` blocks of schema.rs.
fn declared() -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string("src/db/schema.rs").unwrap();
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) =
            line.strip_suffix('{').and_then(|l| l.split_once(" (")).map(|(n, _)| n.trim())
        {
            current = Some(name.to_owned());
            tables.insert(name.to_owned(), Vec::new());
        } else if let (Some(table), Some((col, ty))) = (&current, line.split_once(" -> ")) {
            tables
                .get_mut(table)
                .unwrap()
                .push((col.to_owned(), ty.trim_end_matches(',').to_owned()));
        } else if line == "}" {
            current = None;
        }
    }
    tables
}

#[tokio::test]
async fn schema_rs_matches_the_migrated_database() {
    let db = TestDb::new().await;
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, udt_name::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = 'public' \
           AND table_name <> '__diesel_schema_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let mut actual: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for c in columns {
        let ty = diesel_type(&c.udt_name);
        let ty = if c.is_nullable == "YES" { format!("Nullable<{ty}>") } else { ty };
        actual.entry(c.table_name).or_default().push((c.column_name, ty));
    }
    assert_eq!(declared(), actual, "src/db/schema.rs is out of date: run `diesel print-schema`");
}
