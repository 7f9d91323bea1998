//! Cron expressions of recurring work: standard five-field cron (minute, hour, day of month,
//! month, day of week) or an alias such as `@daily`, evaluated in UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Timelike, Utc};
use croner::parser::{CronParser, Seconds};

use crate::error::{Error, Result};

/// A parsed, valid cron expression.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr> {
        let text = text.trim();
        if text.len() > 200 {
            return Err(Error::invalid("invalid_cron", "a cron expression is at most 200 bytes"));
        }
        let cron = CronParser::builder().seconds(Seconds::Disallowed).build().parse(text).map_err(
            |e| {
                Error::invalid(
                    "invalid_cron",
                    format!(
                        "{text:?} is not a cron expression (five fields: minute hour \
                         day-of-month month day-of-week, or @hourly/@daily/@weekly/@monthly): {e}"
                    ),
                )
            },
        )?;
        let expr = CronExpr { text: text.to_owned(), cron };
        // An expression that never fires (30 February) is a mistake worth reporting now.
        expr.next_after(Utc::now())?;
        Ok(expr)
    }

    /// The first time strictly after `t` that the expression fires.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        // The library carries the start's fraction of a second into its answer.
        let t = t.with_nanosecond(0).unwrap_or(t);
        self.cron.find_next_occurrence(&t, false).map_err(|e| {
            Error::invalid("invalid_cron", format!("{:?} never fires: {e}", self.text))
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl FromStr for CronExpr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        CronExpr::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).single().unwrap_or_default()
    }

    #[test]
    fn five_fields_and_aliases_parse_and_fire_after_the_given_time() {
        let every_15 = CronExpr::parse("*/15 * * * *").map_err(|e| e.to_string());
        assert_eq!(
            every_15.and_then(|c| c.next_after(at(10, 15)).map_err(|e| e.to_string())),
            Ok(at(10, 30))
        );
        let daily = CronExpr::parse("@daily").map_err(|e| e.to_string());
        assert_eq!(
            daily.and_then(|c| c.next_after(at(10, 0)).map_err(|e| e.to_string())),
            Ok(Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).single().unwrap_or_default())
        );
    }

    #[test]
    fn the_next_time_is_on_the_minute_whatever_the_fraction_of_the_start() {
        let start = at(10, 14) + chrono::Duration::milliseconds(1234);
        let next = CronExpr::parse("*/15 * * * *").and_then(|c| c.next_after(start));
        assert_eq!(next.map_err(|e| e.to_string()), Ok(at(10, 15)));
    }

    #[test]
    fn seconds_garbage_and_impossible_dates_are_refused_with_invalid_cron() {
        for bad in ["* * * * * *", "every day", "", "61 * * * *", "0 0 30 2 *"] {
            let err = CronExpr::parse(bad).map(|c| c.as_str().to_owned());
            assert!(matches!(&err, Err(e) if e.code() == "invalid_cron"), "{bad:?}: {err:?}");
        }
    }
}
