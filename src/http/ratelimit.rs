//! Login attempt limits, per account and per client address, kept in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts allowed per key within the window before logins are refused. Successful logins
/// give their attempt back.
const MAX_ATTEMPTS: u32 = 10;
const WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct LoginLimiter {
    attempts: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    /// Counts an attempt against every key, before the password is checked, so parallel
    /// guesses cannot all slip under the limit. False (and nothing counted) when a key is
    /// already at its limit.
    pub fn try_begin(&self, keys: &[String]) -> bool {
        let now = Instant::now();
        let Ok(mut map) = self.attempts.lock() else { return false };
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        let live = |entry: Option<&(u32, Instant)>| match entry {
            Some((n, since)) if now.duration_since(*since) < WINDOW => *n,
            _ => 0,
        };
        if keys.iter().any(|k| live(map.get(k)) >= MAX_ATTEMPTS) {
            return false;
        }
        for k in keys {
            let count = live(map.get(k));
            let since = map.get(k).filter(|_| count > 0).map_or(now, |(_, s)| *s);
            map.insert(k.clone(), (count + 1, since));
        }
        true
    }

    /// A successful login: its attempt is given back to every key.
    pub fn succeeded(&self, keys: &[String]) {
        let Ok(mut map) = self.attempts.lock() else { return };
        for k in keys {
            if let Some(entry) = map.get_mut(k) {
                entry.0 = entry.0.saturating_sub(1);
            }
        }
    }
}
