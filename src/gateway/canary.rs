//! The canary: the smallest chat completion there is (one word in, one token out), sent to
//! tell "the gateway refuses this request" from "the gateway refuses every request", and to
//! see that completions work again before health recovers from a failing call. It is sent at
//! most once per `canary_interval`; callers in between get the last verdict.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::client::{CallContext, Gateway};
use super::error::GatewayError;
use super::wire::{Message, Request};

/// What the canary learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A completion came back: the gateway serves trivial requests.
    Answered,
    /// Refused with this status (a 4xx or 501).
    Refused(u16),
    /// No answer (an outage, a rate limit, a malformed reply): it proves nothing.
    Failed,
}

/// The canary's state, one per client.
#[derive(Debug, Default)]
pub(super) struct Canary {
    /// The last verdict and when it was had; held across a canary so that callers at the
    /// same moment share one.
    last: tokio::sync::Mutex<Option<(Instant, Verdict)>>,
    /// Set when a completion put the gateway down: the probe's `/models` answering is then
    /// not enough to call it healthy, a completion must work first.
    calls_failing: AtomicBool,
}

impl Canary {
    pub(super) fn calls_failing(&self) -> bool {
        self.calls_failing.load(Ordering::Relaxed)
    }

    pub(super) fn set_calls_failing(&self, failing: bool) {
        self.calls_failing.store(failing, Ordering::Relaxed);
    }
}

impl Gateway {
    /// Sends the canary, or returns the last verdict when it is younger than `interval`.
    pub(super) async fn canary(&self, canary: &Canary, interval: Duration) -> Verdict {
        let mut last = canary.last.lock().await;
        if let Some((at, verdict)) = *last
            && at.elapsed() < interval
        {
            return verdict;
        }
        let messages = [Message::user("ping")];
        let request = Request {
            model: self.model(),
            messages: &messages,
            tools: &[],
            max_tokens: Some(1),
            stream: false,
            stream_options: None,
        };
        let verdict = match serde_json::to_vec(&request) {
            Ok(body) => match self.try_recorded(&body, CallContext::default()).await {
                Ok(()) => Verdict::Answered,
                Err(GatewayError::Rejected { status, .. }) => Verdict::Refused(status),
                Err(_) => Verdict::Failed,
            },
            Err(_) => Verdict::Failed,
        };
        tracing::debug!(?verdict, "the gateway canary");
        if verdict == Verdict::Answered {
            canary.set_calls_failing(false);
        }
        *last = Some((Instant::now(), verdict));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_failing_starts_clear_and_follows_what_is_set() {
        let c = Canary::default();
        assert!(!c.calls_failing());
        c.set_calls_failing(true);
        assert!(c.calls_failing());
    }
}
