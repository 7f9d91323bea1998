//! Who did something, by name, read in the same query as the row that records it: a user's
//! username, else an agent's name; null for Loom itself or for someone since deleted.

use diesel::expression::SqlLiteral;
use diesel::sql_types::{Nullable, Text};

/// The SQL type of [`who`], for `#[diesel(select_expression_type = ...)]`.
pub type Who = SqlLiteral<Nullable<Text>>;

/// The name of the user in `table.user_column`, else of the agent in `table.agent_column`.
/// The arguments are column names, never input.
pub fn who(table: &'static str, user_column: &'static str, agent_column: &'static str) -> Who {
    diesel::dsl::sql(&format!(
        "COALESCE((SELECT u.username FROM users u WHERE u.id = {table}.{user_column}), \
                  (SELECT a.name FROM agents a WHERE a.id = {table}.{agent_column}))"
    ))
}
