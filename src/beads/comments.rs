//! Comments on beads, from people and agents.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::Bead;
use crate::activity::{Activity, Actor, Record};
use crate::db::schema::comments;
use crate::db::{Conn, Page};
use crate::error::{Error, Result};
use crate::events::Kind;

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = comments)]
pub struct Comment {
    pub id: Uuid,
    #[serde(rename = "bead")]
    pub bead_id: String,
    pub author_user_id: Option<Uuid>,
    pub author_agent_id: Option<Uuid>,
    /// The author's name: the user's, else the agent's (`author_agent_id` says which).
    #[diesel(select_expression = crate::db::names::who("comments", "author_user_id", "author_agent_id"))]
    #[diesel(select_expression_type = crate::db::names::Who)]
    pub author: Option<String>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub body: String,
}

/// The `@username` mentions in a text, each once, in order of appearance.
pub fn mentions(body: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '@');
        if *c != '@' || !starts_word {
            continue;
        }
        let name: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(**c))
            .collect();
        let name = name.trim_end_matches(['.', '-']).to_owned();
        if !name.is_empty() && !found.contains(&name) {
            found.push(name);
        }
    }
    found
}

impl Comment {
    pub async fn add(
        conn: &mut Conn,
        bead_id: &str,
        new: NewComment,
        actor: Actor,
    ) -> Result<Comment> {
        let body = new.body.trim().to_owned();
        if body.is_empty() {
            return Err(Error::invalid("body_required", "a comment needs a body"));
        }
        if body.len() > 65_536 {
            return Err(Error::invalid("body_too_long", "a comment is at most 65536 bytes"));
        }
        let bead_id = bead_id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            let bead = Bead::get(conn, &bead_id).await?;
            let comment = diesel::insert_into(comments::table)
                .values((
                    comments::id.eq(Uuid::now_v7()),
                    comments::bead_id.eq(&bead_id),
                    comments::author_user_id.eq(actor.user_id()),
                    comments::author_agent_id.eq(actor.agent_id()),
                    comments::body.eq(&body),
                ))
                .returning(Comment::as_returning())
                .get_result(conn)
                .await?;
            Activity::record(
                conn,
                Record {
                    kind: Kind::CommentAdded,
                    project_id: Some(&bead.project_id),
                    bead_id: Some(&bead_id),
                    actor,
                    data: serde_json::json!({ "comment": comment.id, "mentions": mentions(&body) }),
                },
            )
            .await?;
            Ok(comment)
        })
        .await
    }

    /// A bead's comments, oldest first, ordered and paged by comment id (a time-ordered
    /// UUIDv7), so order and cursor always agree.
    pub async fn list(
        conn: &mut Conn,
        bead_id: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Page<Comment>> {
        let mut q = comments::table
            .filter(comments::bead_id.eq(bead_id))
            .select(Comment::as_select())
            .order(comments::id.asc())
            .into_boxed();
        if let Some(after) = after {
            q = q.filter(comments::id.gt(after));
        }
        let rows: Vec<Comment> = q.limit(limit + 1).load(conn).await?;
        Ok(Page::from_rows(rows, limit, |c| c.id.to_string()))
    }

    /// The bead's newest `limit` comments, oldest first.
    pub async fn latest(conn: &mut Conn, bead_id: &str, limit: i64) -> Result<Vec<Comment>> {
        let mut rows: Vec<Comment> = comments::table
            .filter(comments::bead_id.eq(bead_id))
            .order(comments::id.desc())
            .limit(limit)
            .select(Comment::as_select())
            .load(conn)
            .await?;
        rows.reverse();
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn mentions_are_found_once_each_and_not_inside_emails() {
        assert_eq!(mentions("@ana please ask @bob.k, and @ana again"), vec!["ana", "bob.k"]);
        assert!(mentions("mail me at ana@example.com").is_empty());
        assert_eq!(mentions("(@ops-team) done."), vec!["ops-team"]);
    }
}
