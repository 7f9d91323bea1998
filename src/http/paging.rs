//! `limit` and `cursor` query parameters, shared by every list.

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 500; default 50.
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<i64> {
        check_limit(self.limit)
    }
}

pub fn check_limit(limit: Option<i64>) -> Result<i64> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Error::invalid("invalid_limit", format!("limit is 1-{MAX_LIMIT}, got {n}"))),
    }
}

/// A cursor that is an id (lists ordered by a time-ordered uuid): a 400 when it is not one.
pub fn uuid_cursor(raw: Option<&str>) -> Result<Option<uuid::Uuid>> {
    raw.map(|c| {
        uuid::Uuid::parse_str(c).map_err(|_| {
            Error::bad_request("invalid_cursor", "the cursor is not one this API gave out")
        })
    })
    .transpose()
}
