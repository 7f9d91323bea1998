//! What every benchmark shares: where its databases live and how its numbers reach
//! docs/PERFORMANCE.md.
#![allow(dead_code, clippy::unwrap_used)] // each benchmark uses a different part

/// The server each benchmark creates and drops its own databases on.
pub fn server_url() -> String {
    std::env::var("LOOM_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn url_for(db: &str) -> String {
    loom::db::database_url(&server_url(), db)
}

/// Replaces the section between `<!-- bench:<name>:start -->` and its end marker in
/// docs/PERFORMANCE.md with `table` and the time it was measured, or appends one.
pub fn write_doc(name: &str, table: &str) {
    let path = "docs/PERFORMANCE.md";
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let section = format!("{start}\nMeasured {stamp} (release build):\n\n{table}{end}");
    let new = match (doc.find(&start), doc.find(&end)) {
        (Some(s), Some(e)) => format!("{}{section}{}", &doc[..s], &doc[e + end.len()..]),
        _ => format!("{doc}\n{section}\n"),
    };
    std::fs::write(path, new).unwrap();
}
