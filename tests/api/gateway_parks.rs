//! A gateway that answers `/models` but rate-limits one bead's calls for ever: the bead parks,
//! the ticker reopens it later each time (its park's back-off doubles), its fifth park is
//! charged, and people hear of the outage once, not at every park.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use loom::executor::Limits;
use loom::gateway::{Health, HealthState};
use loom::ticker::Ticker;

use crate::executor::count;
use crate::support::gateway::Reply;
use crate::support::work::Work;

const HEALTH_ROWS: &str = "SELECT count(*) AS n FROM activity WHERE kind = 'gateway.health'";
const DOWN_ROWS: &str = "SELECT count(*) AS n FROM activity WHERE kind = 'gateway.health' \
                         AND data->>'healthy' = 'false'";
const UP_ROWS: &str = "SELECT count(*) AS n FROM activity WHERE kind = 'gateway.health' \
                       AND data->>'healthy' = 'true'";

/// Waits (bounded) until `sql` counts at least `n`.
async fn until_count(w: &Work, sql: &str, n: i64) {
    for _ in 0..200 {
        if count(w, sql).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{sql} never reached {n}");
}

/// Records outages from `w.health` in the background, as `loom serve` does.
async fn outages(w: &Work, stable_up: Duration) -> CancellationToken {
    let cancel = CancellationToken::new();
    tokio::spawn(loom::gateway::record_outages(
        w.app.pool.clone(),
        w.health.clone(),
        w.app.bus().clone(),
        stable_up,
        cancel.clone(),
    ));
    // Let it start following the health before the test changes it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel
}

#[tokio::test]
async fn a_bead_rate_limited_for_ever_backs_off_between_parks_and_its_fifth_park_is_charged() {
    let mut w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let bead = w.bead("Too big for the rate limit").await;
    // Every call for this bead is refused 429; anything else (the canary) is answered.
    let key = bead.clone();
    w.script.respond_with(move |body| match body.to_string().contains(&key) {
        true => Reply::status_with(429, "rate limit exceeded"),
        false => Reply::text("pong"),
    });
    let stop = outages(&w, Duration::from_secs(3600)).await;
    let ticker = Ticker::new(
        w.app.pool.clone(),
        loom::beads::RetryPolicy::default(),
        w.health.clone(),
        loom::dispatch::Nudge::default(),
    );
    for park in 1..=4u32 {
        w.settle().await;
        let shown = w.show(&bead).await;
        assert_eq!(
            (shown["blocked_reason"].as_str(), shown["attempts"].as_i64()),
            (Some("gateway_unavailable"), Some(0)),
            "park {park}: {shown}"
        );
        assert_eq!(w.health.get(), Health::Down, "park {park}");
        if park == 1 {
            until_count(&w, DOWN_ROWS, 1).await;
        }
        // The probe's `/models` and canary answer: the gateway is up again.
        assert_eq!(w.gateway.probe().await, Health::Healthy, "park {park}");
        // The park's back-off (30 s doubled with each park) has to pass first.
        let back_off = chrono::Duration::seconds(30 * 2i64.pow(park - 1));
        let now = Utc::now();
        let early = now + back_off - chrono::Duration::seconds(10);
        assert_eq!(ticker.resume_parked_at(early).await.unwrap().healed, 0, "park {park}");
        let due = now + back_off + chrono::Duration::seconds(1);
        assert_eq!(ticker.resume_parked_at(due).await.unwrap().healed, 1, "park {park}");
    }
    w.settle().await;
    let charged = w.show(&bead).await;
    assert_eq!(
        (charged["status"].as_str(), charged["attempts"].as_i64()),
        (Some("open"), Some(1)),
        "{charged}"
    );
    assert!(
        charged["last_error"].as_str().unwrap_or_default().contains("failed on this bead 5 times"),
        "{charged}"
    );
    // Down and up five times over is one outage, said once; not back until it stays up.
    assert_eq!(count(&w, HEALTH_ROWS).await, 1);
    stop.cancel();
}

/// The end of an outage is told once the gateway has stayed up for `stable_up`.
#[tokio::test]
async fn the_end_of_an_outage_is_told_once_the_gateway_stays_up() {
    let w = Work::new(&[("a.txt", "a\n")], 1, Limits::default()).await;
    let health: &HealthState = &w.health;
    let stop = outages(&w, Duration::from_millis(200)).await;
    health.update(Health::Down, Some("503: scripted".to_owned()));
    until_count(&w, DOWN_ROWS, 1).await;
    health.update(Health::Healthy, None);
    until_count(&w, UP_ROWS, 1).await;
    assert_eq!(count(&w, HEALTH_ROWS).await, 2);
    stop.cancel();
}
