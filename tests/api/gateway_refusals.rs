//! What a real gateway answers beyond 200 and the textbook errors: provider statuses passed
//! through (529 overloaded), 501, and a gateway that refuses every request (LiteLLM answers
//! a wrong key with 400 in some setups) told from one that refuses one bead's request.

use std::time::Duration;

use serde_json::json;

use loom::executor::Limits;
use loom::gateway::{CallContext, Gateway, GatewayError, Health, HealthState, Message};

use crate::support::gateway::{Reply, ScriptedGateway};
use crate::support::work::{KEY, Work, gateway_config};

/// 529 (a provider overloaded) and 503 are temporary: retried, and through every retry an
/// outage that parks the bead without cost.
#[tokio::test]
async fn a_529_or_a_503_through_every_retry_parks_the_bead_without_an_attempt() {
    for code in [529, 503] {
        let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
        let bead = w.bead("Wait out the overload").await;
        for _ in 0..3 {
            w.script.push_for(&bead, Reply::status_with(code, "Overloaded"));
        }
        w.settle().await;
        let shown = w.show(&bead).await;
        assert_eq!(
            (
                shown["status"].as_str(),
                shown["blocked_reason"].as_str(),
                shown["attempts"].as_i64()
            ),
            (Some("blocked"), Some("gateway_unavailable"), Some(0)),
            "{code}: {shown}"
        );
        assert_eq!(shown["runs"][0]["outcome"], "gateway_unavailable", "{code}");
        assert_eq!(w.script.completions().len(), 3, "{code}: retried up to max_attempts");
        assert_eq!(w.health.get(), Health::Down, "{code}");
    }
}

/// 501 says the server does not do this at all: not worth a retry, the run's failure.
#[tokio::test]
async fn a_501_is_a_refusal_that_costs_the_bead_an_attempt() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Ask the unimplemented").await;
    w.script.push_for(&bead, Reply::status_with(501, "tools are not implemented"));
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("open"), Some(1)));
    assert_eq!(shown["runs"][0]["outcome"], "failed");
    assert_eq!(w.script.completions().len(), 1, "not retried");
}

/// A gateway refusing every request the same way (a 400 for a wrong key) is down, with its
/// reason (never the key): beads park without cost instead of burning their attempts, and
/// the probe does not call it healthy while even a one-word request is refused.
#[tokio::test]
async fn a_gateway_refusing_every_call_is_down_with_the_reason_and_beads_park_without_cost() {
    let mut w = Work::new(&[("a.txt", "a\n")], 2, Limits::default()).await;
    let beads = [w.bead("One").await, w.bead("Two").await];
    let said = format!("Authentication Error, Invalid proxy server token passed: {KEY}");
    w.script.fallback(Reply::status_with(400, &said));
    w.settle().await;
    for bead in &beads {
        let shown = w.show(bead).await;
        assert_eq!(
            (shown["blocked_reason"].as_str(), shown["attempts"].as_i64()),
            (Some("gateway_unavailable"), Some(0)),
            "{shown}"
        );
        assert!(!shown.to_string().contains(KEY), "the key leaked: {shown}");
    }
    let report = w.health.report();
    assert_eq!(report.health, Health::Down);
    let reason = report.reason.unwrap_or_default();
    assert!(reason.contains("refuses every request") && reason.contains("400"), "{reason}");
    assert!(reason.contains("Invalid proxy server token") && !reason.contains(KEY), "{reason}");
    assert!(w.script.canaries() >= 1);
    assert_eq!(w.gateway.probe().await, Health::Down, "/models answers, completions do not");

    // Fixed: the probe's canary is answered, the gateway is back.
    w.script.fallback(Reply::text("pong"));
    assert_eq!(w.gateway.probe().await, Health::Healthy);
}

/// A 400 for one bead's request while the gateway answers a trivial one is that bead's own
/// fault: it costs the bead an attempt and the gateway stays healthy.
#[tokio::test]
async fn a_request_refused_for_one_bead_only_charges_that_bead() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Too long a prompt").await;
    w.script.push_for(&bead, Reply::status_with(400, "context length exceeded"));
    w.settle().await;
    let shown = w.show(&bead).await;
    assert_eq!((shown["status"].as_str(), shown["attempts"].as_i64()), (Some("open"), Some(1)));
    assert!(shown["last_error"].as_str().unwrap_or_default().contains("context length"));
    assert_eq!(w.script.canaries(), 1);
    assert_eq!(w.health.get(), Health::Healthy);
}

/// Refusals at the same moment share one canary: the gateway is not asked once per refusal.
#[tokio::test]
async fn the_canary_is_sent_at_most_once_per_interval() {
    let script = ScriptedGateway::start().await;
    script.fallback(Reply::status_with(400, "bad request"));
    let mut config = gateway_config(&script.url());
    config.canary_interval = Duration::from_secs(3600);
    let gateway = Gateway::new(config, HealthState::default(), None).expect("gateway");
    let ask = [Message::user(json!({"task": "anything"}).to_string())];
    for _ in 0..3 {
        let err = gateway.complete(&ask, &[], CallContext::default()).await.expect_err("refused");
        assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    }
    assert_eq!(script.canaries(), 1);
    assert_eq!(script.completions().len(), 4);
}
