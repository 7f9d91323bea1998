//! Several replicas on one database and one NATS JetStream: events and work cross between
//! them, each event is published once, and losing NATS loses nothing.

use std::time::Duration;

use loom::events::{Event, Kind};
use loom::gateway::GatewayCall;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::gateway::{Reply, ScriptedGateway};
use crate::support::replica::{self, PrivateNats, Replica, nats_config, nats_url};
use crate::support::sse::{SseClient, data};
use crate::support::work::{KEY, Upstream, gateway_config};
use crate::support::{TestApp, spawn_with};

/// Two replicas on one database and one NATS, both connected to it.
async fn pair(url: &str, poll: Duration) -> (TestApp, Replica, loom::events::NatsConfig) {
    let (a, b, nats) = replica::pair(url, poll).await;
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

/// Work filed on a replica that runs no dispatcher and no executor is done, once, by the
/// other: claimed, worked against the scripted model, merged upstream and closed. Both read
/// Postgres only every ten minutes and the worker sweeps as seldom, so the claim coming
/// promptly, and the filing replica's client hearing the run end, is NATS at work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_filed_on_one_replica_is_done_once_by_the_other_woken_through_nats() {
    let nats = nats_config(&nats_url());
    let slow = Duration::from_secs(600);
    let a_nats = nats.clone();
    let a = spawn_with(move |c| {
        c.events.nats = Some(a_nats);
        c.events.feed_poll = slow;
    })
    .await;
    let script = ScriptedGateway::start().await;
    script.require_key(KEY);
    let (b_nats, gateway_url) = (nats.clone(), script.url());
    let b = replica::start(a.database_url(), move |c| {
        c.events.nats = Some(b_nats);
        c.events.feed_poll = slow;
        c.gateway = Some(gateway_config(&gateway_url));
        c.executors = Some(loom::executor::ExecutorConfig::default());
        c.dispatchers = 1;
        c.dispatch.sweep_interval = slow;
    })
    .await;
    wait_connected(&a.base, &a.member).await;
    wait_connected(&b.base, &a.member).await;

    let upstream = Upstream::new(&[("README.md", "# Web\n")]);
    let body = json!({"id": "web", "name": "Web", "repo": upstream.path(), "branch": "main"});
    let res = a.call(Method::POST, "/api/v1/projects", Some(&a.admin.clone()), Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let res =
        a.post("/api/v1/agents", json!({"name": "ada", "persona": "software-engineer"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    // B's consumer takes only messages newer than itself: once it has heard of either, the
    // bead's creation will reach it.
    wait_for(&b.base, &a.member, "b hears a", |s| s["bus"]["received"].as_u64() >= Some(1)).await;
    let mut on_a = SseClient::open(
        &format!("{}/api/v1/activity/stream?kind=run.ended", a.base),
        &a.viewer,
        None,
    )
    .await;
    // Scripted before the bead exists, so B cannot ask before there is an answer.
    let summary = "Added a usage section.";
    script.push(Reply::action(
        json!({"action": "edit_file", "path": "README.md", "old": "# Web\n", "new": "# Web\n\nRun `make`.\n"}),
    ));
    script.push(Reply::action(json!({"action": "done", "summary": summary})));
    let bead = a.bead("web", "Add a usage section", json!({})).await;

    let shown = until_closed(&a, &bead).await;
    assert_eq!(shown["close_reason"], summary, "{shown}");
    let runs = a.get(&format!("/api/v1/beads/{bead}/runs")).await.body;
    let runs = runs["items"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "success", "{runs:?}");
    let run = runs[0]["id"].as_str().unwrap().to_owned();

    // A's client hears B's run end: A's feed reads Postgres only when NATS says so.
    let ended = data(&on_a.next_event().await);
    assert_eq!(
        (
            ended["bead_id"].as_str(),
            ended["data"]["run"].as_str(),
            ended["data"]["outcome"].as_str()
        ),
        (Some(bead.as_str()), Some(run.as_str()), Some("success")),
        "{ended}"
    );

    // The history has each step once, and B wrote all but the filing.
    let feed = a.get(&format!("/api/v1/activity?bead={bead}&limit=500")).await.body;
    let kinds: Vec<&str> =
        feed["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in
        ["bead.created", "bead.claimed", "run.started", "git.merged", "run.ended", "bead.closed"]
    {
        assert_eq!(kinds.iter().filter(|k| **k == kind).count(), 1, "one {kind} in {kinds:?}");
    }
    let written = origins(&a, &bead).await;
    assert_eq!(written.len(), kinds.len(), "{written:?}");
    for (kind, origin) in written {
        let writer = if kind == "bead.created" { a.bus().origin() } else { b.bus.origin() };
        assert_eq!(origin, writer, "{kind} written by the wrong replica");
    }

    // Upstream has the work once: one commit on top of the first, naming the bead.
    assert_eq!(upstream.file("README.md"), "# Web\n\nRun `make`.\n");
    let log = upstream.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].0, summary);
    let trailer = format!("Bead: {bead}");
    let naming = upstream.git(&["log", "main", "--format=%H", "--grep", &trailer]);
    assert_eq!(naming.lines().count(), 1, "{naming}");

    // The model was asked for this one run only: one conversation, every call recorded on it.
    let asked = script.completions();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked.iter().all(|c| c.to_string().contains(&bead)));
    let (first, second) =
        (asked[0]["messages"].as_array().unwrap(), asked[1]["messages"].as_array().unwrap());
    assert!(second.starts_with(first), "the second call goes on the first one's conversation");
    let calls = GatewayCall::recent(&mut a.pool.get().await.unwrap(), 100).await.unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls.iter().all(|c| c.run_id.map(|id| id.to_string()) == Some(run.clone())),
        "{calls:?}"
    );
    drop(b);
    replica::drop_stream(&nats).await;
}

/// The bead, once closed; panics if it is not within 30 s.
async fn until_closed(app: &TestApp, bead: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = app.show(bead).await;
        if shown["status"] == "closed" {
            return shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "never closed: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which replica wrote each activity row about `bead` (the origin the API does not show).
async fn origins(app: &TestApp, bead: &str) -> Vec<(String, String)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        origin: String,
    }
    use diesel_async::RunQueryDsl;
    let rows: Vec<Row> = diesel::sql_query("SELECT kind, origin FROM activity WHERE bead_id = $1")
        .bind::<diesel::sql_types::Text, _>(bead)
        .load(&mut app.pool.get().await.unwrap())
        .await
        .unwrap();
    rows.into_iter().map(|r| (r.kind, r.origin)).collect()
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
