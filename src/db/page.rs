//! One page of a list, cut from `limit + 1` fetched rows.

use serde::Serialize;

/// One page of results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Queries fetch one row more than asked: its presence says another page exists, and
    /// the last row kept gives the cursor.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        let next_cursor = if more { rows.last().map(cursor_of) } else { None };
        Page { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

/// `server_url` pointing at another database on the same server; a `?host=` socket
/// parameter and the credentials are kept.
pub fn database_url(server_url: &str, db: &str) -> String {
    let (before, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server_url, String::new()),
    };
    let scheme_end = before.find("://").map_or(0, |i| i + 3);
    let root = match before[scheme_end..].find('/') {
        Some(i) => &before[..scheme_end + i],
        None => before,
    };
    format!("{root}/{db}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_limit_rows_and_a_cursor_only_when_more_exist() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((page.items, page.next_cursor), (vec![1, 2], Some("2".into())));
        let last = Page::from_rows(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn database_urls_keep_credentials_and_sockets() {
        assert_eq!(database_url("postgres://u:p@h:5432/postgres", "x"), "postgres://u:p@h:5432/x");
        assert_eq!(
            database_url("postgres://postgres@/postgres?host=/run/pg", "x"),
            "postgres://postgres@/x?host=/run/pg"
        );
        assert_eq!(database_url("postgres://h", "x"), "postgres://h/x");
    }
}
