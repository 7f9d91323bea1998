//! A project's sandbox settings (API.md, "Landing and sandbox settings"): whether its
//! agents' commands may reach the network, and the command that prepares a worktree before
//! a run's first turn.

use serde::Serialize;

use crate::error::{Error, Result};

/// Whether a project's commands may reach the network.
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
pub enum Network {
    /// Loopback only, in a namespace of the command's own.
    #[default]
    None,
    /// The host's network, as Loom has it.
    Open,
}

crate::pg_enum!(Network, diesel::sql_types::Text, { None => "none", Open => "open" });

/// The longest `setup_command` or `check_command`.
const COMMAND_MAX_CHARS: usize = 10_000;

/// `network` as the API gives it.
pub fn parse_network(value: &str) -> Result<Network> {
    value.parse().map_err(|_| {
        Error::invalid("invalid_network", format!("network is \"none\" or \"open\", not {value:?}"))
    })
}

/// A `setup_command`: a shell command line; an empty one means none.
pub fn check_setup_command(command: Option<&str>) -> Result<Option<String>> {
    command_line(command, "invalid_setup_command", "setup_command")
}

/// A project's command setting named `field`: a shell command line; an empty one means none.
pub(super) fn command_line(
    command: Option<&str>,
    code: &'static str,
    field: &str,
) -> Result<Option<String>> {
    let Some(command) = command.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if command.chars().count() > COMMAND_MAX_CHARS || command.contains('\0') {
        return Err(Error::invalid(
            code,
            format!("{field} is a shell command of at most {COMMAND_MAX_CHARS} characters"),
        ));
    }
    Ok(Some(command.to_owned()))
}
