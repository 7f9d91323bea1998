//! Login attempt limits, per account and per client address, kept in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed per key within the window before logins are refused.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    /// True while every key is under its limit.
    pub fn allowed(&self, keys: &[String]) -> bool {
        let now = Instant::now();
        let Ok(map) = self.failures.lock() else { return true };
        keys.iter().all(|k| match map.get(k) {
            Some((n, since)) if now.duration_since(*since) < WINDOW => *n < MAX_FAILURES,
            _ => true,
        })
    }

    pub fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else { return };
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        for k in keys {
            let entry = map.entry(k.clone()).or_insert((0, now));
            if now.duration_since(entry.1) >= WINDOW {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    pub fn succeeded(&self, account_key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(account_key);
        }
    }
}
