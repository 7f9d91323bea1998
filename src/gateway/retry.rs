//! When and how long to wait before calling the gateway again: which failures are worth a
//! retry, exponential back-off with jitter, and the server's own `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// The back-off before the first retry; it doubles with each further one.
    pub base: Duration,
    /// No back-off grows past this.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out: the call fails as unavailable, and
    /// the run parks instead of holding its lease through a long outage.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Statuses that say "try again later" rather than "this request is wrong": a timeout, a
/// rate limit, and every server error but 501 (the server does not do this at all). That
/// includes the non-standard ones providers send through gateways, such as 529 (overloaded).
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 529) || ((500..=599).contains(&status) && status != 501)
}

impl RetryPolicy {
    /// How long to wait after failed try number `attempt` (1 for the first), or `None` when
    /// no try is left or the server asks for longer than is worth waiting.
    /// `unit` is a random number in [0, 1) that spreads competing clients apart.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if let Some(asked) = retry_after {
            return (asked <= self.max_retry_after).then_some(asked);
        }
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        let ceiling = self.base.saturating_mul(doubling).min(self.max_delay);
        // Half fixed, half random: never a thundering herd, never a zero wait.
        Some(ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0))
    }
}

/// Reads a `Retry-After` header: whole seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// A random number in [0, 1) for jitter.
pub fn jitter_unit() -> f64 {
    // The top 53 bits make an evenly spread double.
    getrandom::u64().map(|v| (v >> 11) as f64 / (1u64 << 53) as f64).unwrap_or(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_with_jitter_within_bounds_and_stops_after_the_last_try() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait(1, None, 0.0), Some(Duration::from_millis(250)));
        assert_eq!(p.wait(1, None, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(p.wait(2, None, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(p.wait(3, None, 1.0), Some(Duration::from_secs(2)));
        let big = RetryPolicy { max_attempts: 100, ..p };
        assert_eq!(big.wait(60, None, 1.0), Some(Duration::from_secs(20)));
        assert_eq!(p.wait(5, None, 0.5), None);
    }

    #[test]
    fn retry_after_is_honoured_unless_it_asks_for_too_long() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait(1, Some(Duration::from_secs(3)), 0.9), Some(Duration::from_secs(3)));
        assert_eq!(p.wait(1, Some(Duration::from_secs(61)), 0.9), None);
        assert_eq!(p.wait(5, Some(Duration::from_secs(1)), 0.9), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").expect("date").to_utc();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [408, 429, 500, 502, 503, 504, 520, 524, 529, 599] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 422, 501, 600] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
