//! The activity feed: pages of history and the live stream, over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;
use loom::activity::{Activity, Actor, Feed, FeedStep, Follower, Record};
use loom::events::{Bus, Filter, Hub, InProcess, Kind, KindFilter, Received};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::sse::{SseClient, data};
use crate::support::{self, spawn, spawn_with};

fn stream_url(app: &support::TestApp, query: &str) -> String {
    format!("{}/api/v1/activity/stream{query}", app.base)
}

#[tokio::test]
async fn the_history_lists_newest_first_with_filters_and_cursor_pages() {
    let app = spawn().await;
    app.project("hist").await;
    app.project("other").await;
    let a = app.bead("hist", "first", json!({})).await;
    let b = app.bead("hist", "second", json!({})).await;
    app.bead("other", "elsewhere", json!({})).await;
    app.close(&a).await;

    let all = app.get("/api/v1/activity?project=hist").await;
    assert_eq!(all.status, StatusCode::OK);
    let kinds: Vec<_> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["bead.closed", "bead.created", "bead.created", "project.created"]);
    let ids: Vec<i64> =
        all.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let created = app.get("/api/v1/activity?project=hist&kind=bead.created").await;
    let beads: Vec<_> = created.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["bead_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(beads, [b.clone(), a.clone()]);
    let family = app.get("/api/v1/activity?project=hist&kind=bead").await;
    assert_eq!(family.body["items"].as_array().unwrap().len(), 3);
    let one = app.get(&format!("/api/v1/activity?bead={a}")).await;
    assert_eq!(one.body["items"].as_array().unwrap().len(), 2);

    let page1 = app.get("/api/v1/activity?project=hist&limit=3").await;
    let cursor = page1.body["next_cursor"].as_str().unwrap().to_owned();
    let page2 = app.get(&format!("/api/v1/activity?project=hist&limit=3&cursor={cursor}")).await;
    assert_eq!(page2.body["items"][0]["kind"], "project.created");
    assert!(page2.body["next_cursor"].is_null());

    let future = app.get("/api/v1/activity?project=hist&since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["items"], json!([]));
    let viewer = app.call(Method::GET, "/api/v1/activity", Some(&app.viewer.clone()), None).await;
    assert_eq!(viewer.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_feed_queries_are_refused_with_a_reason() {
    let app = spawn().await;
    for (query, code) in [
        ("kind=bead.exploded", "unknown_kind"),
        ("kind=beads", "unknown_kind"),
        ("limit=0", "invalid_limit"),
    ] {
        let res = app.get(&format!("/api/v1/activity?{query}")).await;
        assert_eq!((res.status, res.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{query}");
    }
    let res = app.get("/api/v1/activity?cursor=abc").await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid_cursor"));
    let res = app.get("/api/v1/activity?since=yesterday").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let anonymous = app.call(Method::GET, "/api/v1/activity", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let anonymous = app.call(Method::GET, "/api/v1/activity/stream", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let url = stream_url(&app, "");
    for (id, code) in [("abc", "invalid_last_event_id"), ("999999", "unknown_last_event_id")] {
        let (status, body) = SseClient::try_open(&url, &app.member, Some(id)).await.err().unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
        assert!(body.contains(code), "{body}");
    }
    let (status, _) = SseClient::try_open(&stream_url(&app, "?kind=nope"), &app.member, None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_stream_sends_each_change_in_order_with_its_activity_id() {
    let app = spawn().await;
    app.project("live").await;
    // Changes made just before a client connects may still reach it (the feed is final
    // only below the oldest running transaction); the project's creation is not wanted here.
    let mut stream = SseClient::open(&stream_url(&app, "?kind=bead"), &app.viewer, None).await;
    let a = app.bead("live", "one", json!({})).await;
    let b = app.bead("live", "two", json!({"depends_on": [a.clone()]})).await;
    app.close(&a).await;

    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(stream.next_event().await);
    }
    let seen: Vec<_> = got
        .iter()
        .map(|f| (f.event.clone(), data(f)["bead_id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        seen,
        [
            ("bead.created".into(), a.clone()),
            ("bead.created".into(), b.clone()),
            ("bead.closed".into(), a.clone())
        ]
    );
    for f in &got {
        let id: i64 = f.id.as_deref().unwrap().parse().unwrap();
        assert_eq!(data(f)["id"], id, "the SSE id is the activity id");
    }
    // The history has the same events under the same ids.
    let history = app.get("/api/v1/activity?kind=bead.closed").await;
    assert_eq!(history.body["items"][0]["id"].to_string(), got[2].id.clone().unwrap());
}

#[tokio::test]
async fn a_client_resumes_after_last_event_id_missing_nothing_and_repeating_nothing() {
    let app = spawn().await;
    app.project("resume").await;
    let mut first =
        SseClient::open(&stream_url(&app, "?project=resume&kind=bead"), &app.member, None).await;
    let mut beads = Vec::new();
    for i in 0..4 {
        beads.push(app.bead("resume", &format!("b{i}"), json!({})).await);
    }
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(first.next_event().await.id.unwrap());
    }
    drop(first);
    // Made while no client was connected.
    for i in 4..6 {
        beads.push(app.bead("resume", &format!("b{i}"), json!({})).await);
    }
    let mut again =
        SseClient::open(&stream_url(&app, "?project=resume&kind=bead"), &app.member, Some(&ids[1]))
            .await;
    let mut resumed = Vec::new();
    for _ in 0..4 {
        resumed.push(data(&again.next_event().await)["bead_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(resumed, beads[2..6]);
    // Whatever would have been repeated comes before a new event: the next one is it.
    let marker = app.bead("resume", "marker", json!({})).await;
    assert_eq!(data(&again.next_event().await)["bead_id"], marker.as_str(), "nothing repeated");
}

/// Rows written straight into the feed, many more than a page of it.
async fn bulk_rows(app: &support::TestApp, project: &str, kind: &str, n: i64) {
    use diesel_async::RunQueryDsl;
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query(
        "INSERT INTO activity (kind, project_id, data) \
         SELECT $1, $2, jsonb_build_object('n', n) FROM generate_series(1, $3) AS n",
    )
    .bind::<diesel::sql_types::Text, _>(kind)
    .bind::<diesel::sql_types::Text, _>(project)
    .bind::<diesel::sql_types::BigInt, _>(n)
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_resume_from_postgres_crosses_its_pages_in_order_without_repeats() {
    let app = spawn().await;
    app.project("deep").await;
    let first = app.bead("deep", "before", json!({})).await;
    bulk_rows(&app, "deep", "project.updated", 1200).await;
    let history = app.get(&format!("/api/v1/activity?bead={first}&kind=bead.created")).await;
    let after = history.body["items"][0]["id"].to_string();
    // A replica started now has none of these in memory: it must read them from Postgres,
    // in pages of 500.
    let other = crate::support::replica::start(app.database_url(), |_| {}).await;
    let mut stream = SseClient::open(
        &format!("{}/api/v1/activity/stream?project=deep", other.base),
        &app.member,
        Some(&after),
    )
    .await;
    let mut ns = Vec::new();
    while ns.len() < 1200 {
        let f = stream.next_event().await;
        assert_eq!(f.event, "project.updated", "{:?}", f);
        ns.push(data(&f)["data"]["n"].as_i64().unwrap());
    }
    assert_eq!(ns, (1..=1200).collect::<Vec<_>>(), "every row once, in order");
    let marker = app.bead("deep", "marker", json!({})).await;
    let next = stream.next_event().await;
    assert_eq!(
        (next.event.as_str(), data(&next)["bead_id"].as_str()),
        ("bead.created", Some(marker.as_str()))
    );
}

#[tokio::test]
async fn the_feed_reads_past_a_full_page_of_kinds_it_does_not_know() {
    let app = spawn().await;
    app.project("odd").await;
    let bus = Bus::in_process("oddtest");
    let mut feed =
        Feed::start(app.pool.clone(), bus.clone(), Duration::from_secs(60)).await.unwrap();
    let mut events = bus.subscribe();
    // Written by a newer Loom, say: more than a page this one cannot read.
    bulk_rows(&app, "odd", "future.kind", 600).await;
    let bead = app.bead("odd", "known", json!({})).await;
    while feed.step().await.unwrap() != loom::activity::FeedStep::Idle {}
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = tokio::time::timeout_at(deadline, events.recv()).await.expect("delivered");
        let Some(loom::events::Received::Event(e)) = got else { panic!("{got:?}") };
        assert_ne!(e.kind.as_str(), "future.kind");
        if e.bead_id.as_deref() == Some(bead.as_str()) {
            break;
        }
    }
}

#[tokio::test]
async fn a_commit_that_lands_late_is_streamed_in_its_place_never_skipped() {
    let app = spawn().await;
    app.project("late").await;
    let mut stream =
        SseClient::open(&stream_url(&app, "?project=late&kind=project.updated"), &app.member, None)
            .await;
    let url = app.database_url().to_owned();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    // A transaction that writes its row first and commits last.
    let slow = tokio::spawn(async move {
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        conn.transaction::<_, loom::Error, _>(async |c| {
            Activity::record(c, record("slow")).await?;
            started_tx.send(()).unwrap();
            finish_rx.await.unwrap();
            Ok(())
        })
        .await
        .unwrap();
    });
    started_rx.await.unwrap();
    let mut conn = app.pool.get().await.unwrap();
    Activity::record(&mut conn, record("quick")).await.unwrap();
    app.bus().committed();
    assert!(
        stream.quiet_for(Duration::from_millis(700)).await.is_empty(),
        "a row is not sent while an older transaction may still add one before it"
    );
    finish_tx.send(()).unwrap();
    slow.await.unwrap();
    let order: Vec<_> = [stream.next_event().await, stream.next_event().await]
        .iter()
        .map(|f| data(f)["data"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["slow", "quick"], "commit-ordered by transaction, both delivered");
}

#[tokio::test]
async fn rows_behind_an_open_transaction_are_held_back_step_after_step_then_come_in_commit_order() {
    // No notifier: only this test writes to the database, so nothing but the slow
    // transaction below holds the horizon (other tests' databases do not count).
    let app = spawn_with(|c| c.events.notifier = false).await;
    app.project("late").await;
    let bus = Bus::in_process("heldtest");
    // Started before the rows are written: a feed begins at the feed's end.
    let mut feed =
        Feed::start(app.pool.clone(), bus.clone(), Duration::from_secs(60)).await.unwrap();
    let mut events = bus.subscribe();
    let url = app.database_url().to_owned();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let slow = tokio::spawn(async move {
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        conn.transaction::<_, loom::Error, _>(async |c| {
            Activity::record(c, record("slow")).await?;
            started_tx.send(()).unwrap();
            finish_rx.await.unwrap();
            Ok(())
        })
        .await
        .unwrap();
    });
    started_rx.await.unwrap();
    let mut conn = app.pool.get().await.unwrap();
    Activity::record(&mut conn, record("quick")).await.unwrap();
    drop(conn);
    // The first step reads the page and finds the quick row behind the open transaction;
    // the second sees the horizon unmoved and reads only that (the skip path: it cannot
    // answer differently from a full read, since nothing can become final meanwhile).
    for step in ["first", "second"] {
        assert_eq!(feed.step().await.unwrap(), FeedStep::HeldBack, "the {step} step");
    }
    assert!(events.recv().now_or_never().is_none(), "nothing is delivered while held back");
    finish_tx.send(()).unwrap();
    slow.await.unwrap();
    assert_eq!(feed.step().await.unwrap(), FeedStep::Read(2), "the horizon moved: both final");
    let mut names = Vec::new();
    while let Some(Some(Received::Event(e))) = events.recv().now_or_never() {
        names.push(e.data["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["slow", "quick"], "in (tx, id) order: the older transaction first");
}

fn record(name: &str) -> Record<'static> {
    Record {
        kind: Kind::ProjectUpdated,
        project_id: Some("late"),
        bead_id: None,
        actor: Actor::System,
        data: json!({ "name": name }),
    }
}

#[tokio::test]
async fn streams_filter_by_project_bead_and_kind() {
    let app = spawn().await;
    app.project("fa").await;
    app.project("fb").await;
    let a = app.bead("fa", "in a", json!({})).await;
    let mut by_project =
        SseClient::open(&stream_url(&app, "?project=fb&kind=bead"), &app.member, None).await;
    let mut by_bead =
        SseClient::open(&stream_url(&app, &format!("?bead={a}")), &app.member, None).await;
    let mut by_kind =
        SseClient::open(&stream_url(&app, "?kind=bead.closed"), &app.member, None).await;
    let b = app.bead("fb", "in b", json!({})).await;
    app.close(&a).await;
    app.close(&b).await;

    let f = by_project.until("bead.closed").await;
    assert!(f.iter().all(|f| data(f)["project_id"] == "fb"));
    assert_eq!(f.len(), 2);
    // (Its creation, just before the client came, may reach it too.)
    let f = by_bead.until("bead.closed").await;
    assert!(f.iter().all(|f| data(f)["bead_id"] == a.as_str()), "{f:?}");
    let closed: Vec<_> = [by_kind.next_event().await, by_kind.next_event().await]
        .iter()
        .map(|f| data(f)["bead_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(closed, [a, b]);
}

#[tokio::test]
async fn idle_streams_get_keep_alives_and_a_client_that_leaves_is_counted_out() {
    let app = spawn_with(|c| c.events.keep_alive = Duration::from_millis(100)).await;
    let sse_clients =
        async || app.get("/api/v1/status").await.body["sse_clients"].as_u64().unwrap();
    let mut stream = SseClient::open(&stream_url(&app, ""), &app.member, None).await;
    let opening = stream.next_frame(Duration::from_secs(5)).await.unwrap();
    assert!(opening.comments.contains(&"connected".to_owned()), "{opening:?}");
    let next = stream.next_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!(next.comments, ["keep-alive"]);
    assert_eq!(sse_clients().await, 1);
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sse_clients().await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the closed stream was never cleaned up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_follower_that_falls_behind_catches_up_from_postgres_in_order() {
    let app = spawn().await;
    app.project("lag").await;
    // A bus far smaller than the burst: the follower lags, and the ring cannot cover it.
    let bus = Bus::with_backend(
        "lagtest",
        Arc::new(Hub::new(4, 2)),
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(InProcess),
    );
    let mut feed =
        Feed::start(app.pool.clone(), bus.clone(), Duration::from_secs(60)).await.unwrap();
    let beads_only = Filter { kind: Some(KindFilter::parse("bead").unwrap()), ..Filter::default() };
    let mut follower =
        Follower::start(app.pool.clone(), bus.clone(), beads_only, None).await.unwrap();
    let mut beads = Vec::new();
    for i in 0..30 {
        beads.push(app.bead("lag", &format!("b{i}"), json!({})).await);
    }
    while feed.step().await.unwrap() != loom::activity::FeedStep::Idle {}
    let mut got = Vec::new();
    while got.len() < 30 {
        let e = tokio::time::timeout(Duration::from_secs(10), follower.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(e.bead_id.clone().unwrap());
    }
    assert_eq!(got, beads);
    assert!(bus.state().lagged >= 1, "it did lag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streams_its_steps_live_and_stores_its_start_commit_merge_and_end() {
    use crate::support::gateway::Reply;
    use crate::support::work::Work;
    let mut w = Work::new(&[("a.txt", "one\n")], 1, loom::executor::Limits::default()).await;
    let bead = w.bead("Change a").await;
    let url = format!("{}/api/v1/activity/stream?bead={bead}", w.app.base);
    let mut stream = SseClient::open(&url, &w.app.viewer, None).await;
    w.script.push_for(&bead, Reply::action(json!({"action": "read_file", "path": "a.txt"})));
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "edit_file", "path": "a.txt", "old": "one", "new": "two"})),
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Changed a."})));
    w.settle().await;

    let frames = stream.until("bead.closed").await;
    let kinds: Vec<_> =
        frames.iter().map(|f| f.event.as_str()).filter(|k| *k != "bead.created").collect();
    assert_eq!(
        kinds,
        [
            "bead.claimed",
            "run.started",
            "run.step",
            "run.step",
            "git.commit",
            "bead.landing",
            "run.ended",
            "git.merged",
            "bead.closed"
        ]
    );
    let steps: Vec<_> = frames.iter().filter(|f| f.event == "run.step").collect();
    assert!(steps.iter().all(|f| f.id.is_none()), "steps are live only");
    assert_eq!(data(steps[0])["data"]["action"], "read_file");
    assert_eq!(data(steps[1])["data"]["action"], "edit_file");
    let ended = frames.iter().find(|f| f.event == "run.ended").expect("run.ended");
    assert_eq!(data(ended)["data"]["outcome"].as_str(), Some("success"));

    // The stored history has the run's start and end, not its steps.
    let history = w.app.get(&format!("/api/v1/activity?bead={bead}")).await;
    let stored: Vec<_> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(!stored.iter().any(|k| k == "run.step"), "{stored:?}");
    for k in ["run.started", "git.commit", "git.merged", "run.ended"] {
        assert!(stored.iter().any(|s| s == k), "{k} in {stored:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_so_the_server_stops_without_waiting_for_them() {
    let app = spawn().await;
    let mut server = crate::support::serve::Server::start(app.database_url(), &[]);
    let port = server.port().await;
    let url = format!("http://127.0.0.1:{port}/api/v1/activity/stream");
    let mut stream = SseClient::open(&url, &app.viewer, None).await;
    let opening = stream.next_frame(Duration::from_secs(10)).await.unwrap();
    assert!(opening.comments.contains(&"connected".to_owned()));
    server.terminate();
    // The graceful stop waits up to 30 s for open connections; the stream must not be one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stream.next_frame(Duration::from_secs(1)).await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the stream stayed open");
    }
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait()).await;
    let status = status.expect("loom serve stopped in time").unwrap();
    assert!(status.success(), "{status}: {}", server.log());
}

#[tokio::test]
async fn gateway_outages_are_recorded_once_across_replicas_and_restarts() {
    use loom::gateway::{Health, HealthReport, record_if_news};
    let app = spawn().await;
    let report = |health| HealthReport { health, reason: None };
    // Up with nothing stored is not news; down is, once, whoever sees it.
    assert!(!record_if_news(&app.pool, true, &report(Health::Healthy)).await.unwrap());
    assert!(record_if_news(&app.pool, false, &report(Health::Down)).await.unwrap());
    assert!(
        !record_if_news(&app.pool, false, &report(Health::Down)).await.unwrap(),
        "a second replica"
    );
    // A replica that restarted during the outage sees it end.
    assert!(record_if_news(&app.pool, true, &report(Health::Healthy)).await.unwrap());
    assert!(!record_if_news(&app.pool, true, &report(Health::Degraded)).await.unwrap());
    let rows = app.get("/api/v1/activity?kind=gateway.health").await;
    let healthy: Vec<_> = rows.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data"]["healthy"].clone())
        .collect();
    assert_eq!(healthy, [json!(true), json!(false)]);
}

#[tokio::test]
async fn the_activity_stream_never_carries_anyones_notifications() {
    let app = spawn().await;
    app.project("priv").await;
    let mut stream = SseClient::open(&stream_url(&app, ""), &app.viewer, None).await;
    let mut own =
        SseClient::open(&format!("{}/api/v1/notifications/stream", app.base), &app.member, None)
            .await;
    let bead = app.bead("priv", "filed by member", json!({})).await;
    // The admin closing the member's bead raises a notification for the member.
    let closed = app
        .call(Method::POST, &format!("/api/v1/beads/{bead}/close"), Some(&app.admin.clone()), None)
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    // Published on the bus by now: the member's own stream has it.
    assert_eq!(own.next_event().await.event, "notification");
    // Anything the activity stream would wrongly carry comes before this later event.
    let marker = app.bead("priv", "marker", json!({})).await;
    let mut frames = Vec::new();
    loop {
        let f = stream.next_event().await;
        let done = f.event == "bead.created" && data(&f)["bead_id"] == marker.as_str();
        frames.push(f);
        if done {
            break;
        }
    }
    assert!(frames.iter().all(|f| f.event != "notification"), "{frames:?}");
    for kind in ["notification", "notification.*"] {
        let res = app.get(&format!("/api/v1/activity?kind={kind}")).await;
        assert_eq!(
            (res.status, res.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "unknown_kind"),
            "{kind}"
        );
    }
}
