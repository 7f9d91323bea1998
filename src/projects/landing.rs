//! A project's landing settings (API.md, "Landing and sandbox settings"): the check its
//! merge queue runs on the merged tree, how long it may take, whether work is reviewed
//! before it lands, how many beads one train checks together, and how many review rounds a
//! bead may take before it waits for a person.

use serde::Serialize;

use super::sandbox::command_line;
use crate::error::{Error, Result};

/// Who reviews a bead's work before it lands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    diesel::AsExpression,
    diesel::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "snake_case")]
pub enum Review {
    /// Straight to the landing queue.
    #[default]
    None,
    /// An agent of a reviewing persona, never the author.
    Agent,
    /// A member, on the bead page, the API or the CLI.
    Human,
}

crate::pg_enum!(Review, diesel::sql_types::Text, {
    None => "none",
    Agent => "agent",
    Human => "human",
});

pub const DEFAULT_CHECK_TIMEOUT_S: i32 = 1800;
pub const DEFAULT_MAX_TRAIN: i32 = 8;
pub const DEFAULT_MAX_REVIEW_ROUNDS: i32 = 3;

/// `review` as the API gives it.
pub fn parse_review(value: &str) -> Result<Review> {
    value.parse().map_err(|_| {
        Error::invalid(
            "invalid_review",
            format!("review is \"none\", \"agent\" or \"human\", not {value:?}"),
        )
    })
}

/// A `check_command`: a shell command line; an empty one means none (merges are then
/// serialised and pushed unchecked).
pub fn check_check_command(command: Option<&str>) -> Result<Option<String>> {
    command_line(command, "invalid_check_command", "check_command")
}

/// The numeric landing settings, where given.
pub fn check_landing_limits(
    check_timeout_s: Option<i32>,
    max_train: Option<i32>,
    max_review_rounds: Option<i32>,
) -> Result<()> {
    if check_timeout_s.is_some_and(|n| !(1..=86_400).contains(&n)) {
        return Err(Error::invalid(
            "invalid_check_timeout_s",
            "check_timeout_s is between 1 and 86400 seconds",
        ));
    }
    if max_train.is_some_and(|n| !(1..=64).contains(&n)) {
        return Err(Error::invalid("invalid_max_train", "max_train is between 1 and 64"));
    }
    if max_review_rounds.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(Error::invalid(
            "invalid_max_review_rounds",
            "max_review_rounds is between 1 and 100",
        ));
    }
    Ok(())
}
