//! Several replicas on one database and one NATS JetStream: events and work cross between
//! them, each event is published once, and losing NATS loses nothing.

use std::time::Duration;

use loom::events::{Event, Kind};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::replica::{self, PrivateNats, Replica, nats_config, nats_url};
use crate::support::sse::{SseClient, data};
use crate::support::{TestApp, spawn_with};

/// Two replicas sharing the test database and a NATS; the second reads Postgres only
/// every `poll`, so what reaches it sooner came through NATS.
async fn pair(url: &str, poll: Duration) -> (TestApp, Replica, loom::events::NatsConfig) {
    let nats = nats_config(url);
    let a_nats = nats.clone();
    let a = spawn_with(move |c| c.events.nats = Some(a_nats)).await;
    let b_nats = nats.clone();
    let b = replica::start(a.database_url(), move |c| {
        c.events.nats = Some(b_nats);
        c.events.feed_poll = poll;
    })
    .await;
    wait_connected(&a.base, &a.member).await;
    wait_connected(&b.base, &a.member).await;
    (a, b, nats)
}

async fn status(base: &str, token: &str) -> serde_json::Value {
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn wait_for(
    base: &str,
    token: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(base, token).await;
        if ok(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_connected(base: &str, token: &str) {
    wait_for(base, token, "connected to NATS", |s| {
        s["bus"]["connected"] == true && s["bus"]["backend"] == "nats"
    })
    .await;
}

#[tokio::test]
async fn an_event_from_one_replica_reaches_an_sse_client_of_the_other_through_nats() {
    let (a, b, nats) = pair(&nats_url(), Duration::from_secs(600)).await;
    a.project("cross").await;
    let mut on_b =
        SseClient::open(&format!("{}/api/v1/activity/stream?kind=bead", b.base), &a.viewer, None)
            .await;
    let bead = a.bead("cross", "filed on a", json!({})).await;
    let f = on_b.next_event().await;
    assert_eq!(
        (f.event.as_str(), data(&f)["bead_id"].as_str()),
        ("bead.created", Some(bead.as_str()))
    );
    assert_eq!(
        f.id.clone().unwrap(),
        data(&f)["id"].to_string(),
        "the same activity id on every replica"
    );
    let s = status(&b.base, &a.member).await;
    assert!(s["bus"]["received"].as_u64().unwrap() >= 1, "{s}");

    // Ephemeral events cross too, without an id.
    let mut live = SseClient::open(
        &format!("{}/api/v1/activity/stream?kind=run.step", a.base),
        &a.viewer,
        None,
    )
    .await;
    b.bus.publish(Event::live(Kind::RunStep, Some("cross"), Some(&bead), json!({"turn": 1})));
    let f = live.next_event().await;
    assert_eq!((f.event.as_str(), f.id.as_deref()), ("run.step", None));
    assert_eq!(data(&f)["data"]["turn"], 1);
    replica::drop_stream(&nats).await;
}

#[tokio::test]
async fn each_stored_event_is_published_to_jetstream_once_whatever_the_number_of_replicas() {
    let (a, b, nats) = pair(&nats_url(), Duration::from_millis(200)).await;
    a.project("once").await;
    for i in 0..5 {
        a.bead("once", &format!("a{i}"), json!({})).await;
    }
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/beads", b.base))
        .bearer_auth(&a.member)
        .json(&json!({"project": "once", "title": "from b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let subject = format!("{}.bead.created", nats.prefix);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while replica::stream_count(&nats, &subject).await < 6 {
        assert!(tokio::time::Instant::now() < deadline, "six bead.created in the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both feeds have read all six by now; neither published another's.
    wait_for(&b.base, &a.member, "b read a's events", |s| {
        s["bus"]["received"].as_u64().unwrap() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replica::stream_count(&nats, &subject).await, 6);
    replica::drop_stream(&nats).await;
}

#[tokio::test]
async fn work_filed_on_one_replica_is_dispatched_promptly_by_the_other_and_only_once() {
    let nats = nats_config(&nats_url());
    let a_nats = nats.clone();
    // The filing replica dispatches nothing; the other sweeps only every ten minutes, so a
    // prompt claim there means the bus woke it.
    let a = spawn_with(move |c| c.events.nats = Some(a_nats)).await;
    let b_nats = nats.clone();
    let b = replica::start(a.database_url(), move |c| {
        c.events.nats = Some(b_nats);
        c.dispatchers = 1;
        c.dispatch.sweep_interval = Duration::from_secs(600);
    })
    .await;
    wait_connected(&a.base, &a.member).await;
    wait_connected(&b.base, &a.member).await;
    a.project("work").await;
    let agent = a
        .post(
            "/api/v1/agents",
            json!({"name": "w1", "persona": "software-engineer", "project": "work"}),
        )
        .await;
    assert_eq!(agent.status, StatusCode::CREATED, "{:?}", agent.body);
    let bead = a.bead("work", "do it", json!({})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let shown = a.show(&bead).await;
        if shown["status"] == "in_progress" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never claimed: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = a.get(&format!("/api/v1/beads/{bead}/runs")).await;
    assert_eq!(runs.body["items"].as_array().unwrap().len(), 1, "{:?}", runs.body);
    drop(b);
    replica::drop_stream(&nats).await;
}

#[tokio::test]
async fn losing_nats_loses_nothing_and_the_bus_reports_it_until_it_is_back() {
    let mut server = PrivateNats::start().await;
    let (a, b, _) = pair(&server.url, Duration::from_millis(200)).await;
    a.project("outage").await;
    let mut on_b =
        SseClient::open(&format!("{}/api/v1/activity/stream?kind=bead", b.base), &a.viewer, None)
            .await;

    server.stop();
    wait_for(&a.base, &a.member, "a notices", |s| s["bus"]["connected"] == false).await;
    let ready = reqwest::get(format!("{}/readyz", a.base)).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "losing NATS does not make a replica unready");
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["bus"]["connected"], false);

    // Work goes on; the other replica still hears of it, from Postgres.
    let during = a.bead("outage", "while NATS is down", json!({})).await;
    let f = on_b.next_event().await;
    assert_eq!(data(&f)["bead_id"], during.as_str());

    server.resume().await;
    wait_connected(&a.base, &a.member).await;
    wait_connected(&b.base, &a.member).await;
    let after = a.bead("outage", "after", json!({})).await;
    let f = on_b.next_event().await;
    assert_eq!(data(&f)["bead_id"], after.as_str());
}
