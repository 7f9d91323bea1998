//! Notifications: each rule, de-duplication, reading them, watching projects, the notifier
//! reading each activity row exactly once however many run, what it publishes, and the
//! notification stream (live, resumed, across replicas, unmoved by other events, and the
//! wakers' check of Postgres for raises whose event was lost).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use loom::activity::{Activity, Actor, Record};
use loom::beads::{Bead, BlockedReason, StatusChange};
use loom::db::schema::activity;
use loom::events::{Bus, Event, Kind, Position, Received};
use loom::notifications::{Notification, Notifier, Reason, Step, Target};
use loom::users::User;

use crate::support::replica::{self, nats_url};
use crate::support::sse::{SseClient, WAIT, data};
use crate::support::{Res, TestApp, spawn, spawn_with};

/// A notifier over the app's pool and bus whose cursor exists: what the test does from
/// now on is notified.
async fn notifier(app: &TestApp) -> Notifier {
    let n = Notifier::new(app.pool.clone(), app.bus().clone());
    n.step().await.unwrap();
    n
}

/// An app with the project `web`, and a notifier of its own.
async fn web() -> (TestApp, Notifier) {
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
    (app, n)
}

/// Steps until the notifier has read every activity row committed so far (the app's own
/// notifier may read some of them first; the cursor makes that the same).
async fn settle(app: &TestApp, n: &Notifier) {
    let mut conn = app.pool.get().await.unwrap();
    let last: Option<(i64, i64)> = activity::table
        .order((activity::tx.desc(), activity::id.desc()))
        .select((activity::tx, activity::id))
        .first(&mut conn)
        .await
        .optional()
        .unwrap();
    let Some((tx, id)) = last else { return };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while n.step().await.unwrap() != Step::Idle {}
        if n.position().await.unwrap().is_some_and(|p| p >= Position { tx, id }) {
            return;
        }
        assert!(Instant::now() < deadline, "the notifier never read up to {tx}/{id}");
        // Held back by an older transaction still running: it ends soon.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn user_id(app: &TestApp, name: &str) -> Uuid {
    let mut conn = app.pool.get().await.unwrap();
    User::find_by_username(&mut conn, name).await.unwrap().unwrap().id
}

async fn as_user(app: &TestApp, token: &str, method: Method, path: &str) -> Res {
    let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
    app.call(method, path, Some(token), body).await
}

/// `as_user`, which must answer `status`.
async fn expect(app: &TestApp, token: &str, method: Method, path: &str, status: StatusCode) -> Res {
    let res = as_user(app, token, method.clone(), path).await;
    assert_eq!(res.status, status, "{method} {path}: {:?}", res.body);
    res
}

fn assert_error(res: &Res, what: &str, status: StatusCode, code: &str) {
    assert_eq!((res.status, res.code()), (status, code), "{what}: {:?}", res.body);
}

/// Closes `bead` as `token`'s user.
async fn close_as(app: &TestApp, token: &str, bead: &str) {
    expect(app, token, Method::POST, &format!("/api/v1/beads/{bead}/close"), StatusCode::OK).await;
}

/// A page of the user's notifications, as the API gives it.
async fn page(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/notifications{query}");
    let res = expect(app, token, Method::GET, &path, StatusCode::OK).await;
    res.body["items"].as_array().unwrap().clone()
}

/// The user's notifications, newest first.
async fn inbox(app: &TestApp, token: &str) -> Vec<Value> {
    page(app, token, "").await
}

fn reasons(items: &[Value]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|n| (n["reason"].as_str().unwrap().into(), n["subject"].as_str().unwrap().into()))
        .collect()
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|n| n["id"].as_i64().unwrap()).collect()
}

async fn watch(app: &TestApp, token: &str, project: &str) {
    let path = format!("/api/v1/projects/{project}/watch");
    expect(app, token, Method::POST, &path, StatusCode::NO_CONTENT).await;
}

async fn comment(app: &TestApp, bead: &str, body: &str) {
    let res = app.post(&format!("/api/v1/beads/{bead}/comments"), json!({ "body": body })).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
}

/// Three beads in `web`, each with a comment mentioning the viewer.
async fn mention_the_viewer_thrice(app: &TestApp) {
    for title in ["one", "two", "three"] {
        let bead = app.bead("web", title, json!({})).await;
        comment(app, &bead, "@viewer look").await;
    }
}

/// What the gateway probe records when the gateway's health changes.
fn gateway_health(healthy: bool) -> Record<'static> {
    let reason = (!healthy).then_some("connection refused");
    Record {
        kind: Kind::GatewayHealth,
        project_id: None,
        bead_id: None,
        actor: Actor::System,
        data: json!({ "healthy": healthy, "reason": reason }),
    }
}

async fn record(app: &TestApp, record: Record<'_>) {
    let mut conn = app.pool.get().await.unwrap();
    Activity::record(&mut conn, record).await.unwrap();
}

/// The user's unread count, as `/auth/me` says it.
async fn unread(app: &TestApp, token: &str) -> i64 {
    let me = expect(app, token, Method::GET, "/api/v1/auth/me", StatusCode::OK).await;
    me.body["unread_notifications"].as_i64().unwrap()
}

/// The notification stream of `token`'s user on the replica at `base`.
async fn stream(base: &str, token: &str, last_event_id: Option<&str>) -> SseClient {
    SseClient::open(&format!("{base}/api/v1/notifications/stream"), token, last_event_id).await
}

/// Asserts the next event is the notification of `reason` about `bead`; returns its data.
async fn expect_raise(client: &mut SseClient, reason: &str, bead: &str) -> Value {
    let f = client.next_event().await;
    let d = data(&f);
    assert_eq!(
        (f.event.as_str(), d["reason"].as_str(), d["bead_id"].as_str()),
        ("notification", Some(reason), Some(bead)),
        "{d}"
    );
    assert_eq!(f.id, Some(d["seq"].to_string()), "the SSE id is the seq");
    d
}

/// A mention of `user` on `bead` written as the notifier writes one, but never published:
/// a raise whose bus event was lost.
async fn raise_unpublished(app: &TestApp, user: Uuid, bead: &str) {
    let target = Target {
        user_id: user,
        reason: Reason::Mention,
        subject: bead.to_owned(),
        title: format!("a mention on {bead}"),
        project_id: Some("web".into()),
        bead_id: Some(bead.to_owned()),
    };
    let mut conn = app.pool.get().await.unwrap();
    Notification::raise(&mut conn, 0, &[target]).await.unwrap();
}

#[tokio::test]
async fn a_bead_someone_else_closes_notifies_the_user_who_filed_it() {
    let (app, n) = web().await;
    let bead = app.bead("web", "Fix login", json!({})).await;
    close_as(&app, &app.admin, &bead).await;
    settle(&app, &n).await;
    let mine = inbox(&app, &app.member).await;
    assert_eq!(reasons(&mine), vec![("bead_closed".into(), bead.clone())]);
    let note = &mine[0];
    assert_eq!(note["title"], format!("{bead} \"Fix login\" was closed"));
    assert_eq!(
        (note["project_id"].as_str(), note["bead_id"].as_str()),
        (Some("web"), Some(&*bead))
    );
    assert_eq!((note["count"].as_i64(), note["read_at"].is_null()), (Some(1), true));
    assert_eq!(note["user_id"], user_id(&app, "member").await.to_string());
    assert!(inbox(&app, &app.admin).await.is_empty(), "the one who closed it is not told");
}

#[tokio::test]
async fn a_bead_blocked_by_someone_else_notifies_its_creator_with_the_reason() {
    let (app, n) = web().await;
    let bead = app.bead("web", "Fix login", json!({})).await;
    let path = format!("/api/v1/beads/{bead}/block");
    let body = json!({ "reason": "waiting on design" });
    let res = app.call(Method::POST, &path, Some(&app.admin), Some(body)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    settle(&app, &n).await;
    let mine = inbox(&app, &app.member).await;
    assert_eq!(reasons(&mine), vec![("bead_blocked".into(), bead.clone())]);
    assert_eq!(mine[0]["title"], format!("{bead} \"Fix login\" is blocked: waiting on design"));
}

#[tokio::test]
async fn a_question_for_a_human_reaches_the_creator_and_every_watcher_of_the_project() {
    let app = spawn().await;
    app.project("web").await;
    app.project("api").await;
    watch(&app, &app.viewer, "web").await;
    watch(&app, &app.admin, "api").await;
    let n = notifier(&app).await;
    let bead = app.bead("web", "Pick a database", json!({})).await;
    let change = StatusChange::Block {
        reason: BlockedReason::NeedsHuman,
        note: Some("Which database?".into()),
    };
    let mut conn = app.pool.get().await.unwrap();
    Bead::change_status(&mut conn, &bead, change, None, Actor::System).await.unwrap();
    drop(conn);
    settle(&app, &n).await;
    let expected = vec![("needs_human".to_owned(), bead.clone())];
    assert_eq!(reasons(&inbox(&app, &app.member).await), expected, "the creator, not bead_blocked");
    let watcher = inbox(&app, &app.viewer).await;
    assert_eq!(reasons(&watcher), expected);
    assert_eq!(watcher[0]["title"], format!("{bead} \"Pick a database\" needs a human"));
    assert!(inbox(&app, &app.admin).await.is_empty(), "watchers of another project hear nothing");
}

#[tokio::test]
async fn a_mention_notifies_the_mentioned_user_but_not_the_author_or_unknown_names() {
    let (app, n) = web().await;
    let bead = app.bead("web", "Fix login", json!({})).await;
    comment(&app, &bead, "@viewer can you check? cc @member @nobody").await;
    settle(&app, &n).await;
    let theirs = inbox(&app, &app.viewer).await;
    assert_eq!(reasons(&theirs), vec![("mention".into(), bead.clone())]);
    assert_eq!(theirs[0]["title"], format!("@member mentioned you on {bead}"));
    assert!(inbox(&app, &app.member).await.is_empty(), "mentioning yourself notifies nobody");
    assert!(inbox(&app, &app.admin).await.is_empty());
}

#[tokio::test]
async fn a_p0_bead_notifies_the_projects_watchers_and_nobody_else() {
    let app = spawn().await;
    app.project("web").await;
    watch(&app, &app.viewer, "web").await;
    watch(&app, &app.member, "web").await;
    let n = notifier(&app).await;
    let p0 = app.bead("web", "Site is down", json!({ "priority": 0 })).await;
    app.bead("web", "Typo in footer", json!({ "priority": 1 })).await;
    settle(&app, &n).await;
    let theirs = inbox(&app, &app.viewer).await;
    assert_eq!(reasons(&theirs), vec![("p0_filed".into(), p0.clone())]);
    assert_eq!(theirs[0]["title"], format!("P0 filed in web: {p0} \"Site is down\""));
    assert!(inbox(&app, &app.admin).await.is_empty(), "not watching");
    assert!(inbox(&app, &app.member).await.is_empty(), "a watcher who filed it is not told");
}

#[tokio::test]
async fn the_gateway_going_down_and_coming_back_notifies_every_user() {
    let app = spawn().await;
    let n = notifier(&app).await;
    for healthy in [false, false, true] {
        record(&app, gateway_health(healthy)).await;
    }
    settle(&app, &n).await;
    for token in [&app.admin, &app.member, &app.viewer] {
        let items = inbox(&app, token).await;
        let expected = vec![
            ("gateway_up".into(), "gateway".into()),
            ("gateway_down".into(), "gateway".into()),
        ];
        assert_eq!(reasons(&items), expected);
        assert_eq!(items[1]["count"], 2, "going down twice is one notification raised twice");
        assert_eq!(items[1]["title"], "The LLM gateway is down: connection refused");
        assert_eq!(items[0]["title"], "The LLM gateway is back up");
        assert!(items[0]["bead_id"].is_null() && items[0]["project_id"].is_null());
    }
}

#[tokio::test]
async fn changes_to_your_own_beads_notify_nobody() {
    let (app, n) = web().await;
    let bead = app.bead("web", "Mine", json!({})).await;
    let res = app.post(&format!("/api/v1/beads/{bead}/block"), json!({ "reason": "later" })).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(app.close(&bead).await.status, StatusCode::OK);
    settle(&app, &n).await;
    for token in [&app.admin, &app.member, &app.viewer] {
        assert!(inbox(&app, token).await.is_empty());
    }
}

#[tokio::test]
async fn a_repeat_raises_the_unread_one_and_after_reading_a_new_one_starts() {
    let (app, n) = web().await;
    let bead = app.bead("web", "Fix login", json!({})).await;
    let mention = async |body: &str| {
        comment(&app, &bead, body).await;
        settle(&app, &n).await;
        inbox(&app, &app.viewer).await
    };
    let first = mention("@viewer first").await[0].clone();
    let raised = mention("@viewer second").await;
    assert_eq!(raised.len(), 1);
    assert_eq!((&raised[0]["id"], raised[0]["count"].as_i64()), (&first["id"], Some(2)));
    assert!(raised[0]["seq"].as_i64() > first["seq"].as_i64(), "a raise gets a fresh seq");
    assert!(raised[0]["activity_id"].as_i64() > first["activity_id"].as_i64());
    let id = first["id"].as_i64().unwrap();
    let path = format!("/api/v1/notifications/{id}/read");
    expect(&app, &app.viewer, Method::POST, &path, StatusCode::OK).await;
    let both = mention("@viewer third").await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!((both[0]["count"].as_i64(), both[0]["read_at"].is_null()), (Some(1), true));
    assert_eq!((both[1]["id"].as_i64(), both[1]["read_at"].is_null()), (Some(id), false));
    let unread = page(&app, &app.viewer, "?unread=true").await;
    assert_eq!(ids(&unread), vec![both[0]["id"].as_i64().unwrap()]);
}

#[tokio::test]
async fn reading_one_all_and_someone_elses_and_the_unread_count_in_me() {
    let (app, n) = web().await;
    mention_the_viewer_thrice(&app).await;
    settle(&app, &n).await;
    let me = expect(&app, &app.viewer, Method::GET, "/api/v1/auth/me", StatusCode::OK).await;
    assert_eq!(me.body["username"], "viewer");
    assert_eq!((unread(&app, &app.viewer).await, unread(&app, &app.member).await), (3, 0));
    let id = inbox(&app, &app.viewer).await[0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/notifications/{id}/read");
    let theirs = as_user(&app, &app.member, Method::POST, &path).await;
    assert_error(&theirs, "someone else's", StatusCode::NOT_FOUND, "not_found");
    let read = expect(&app, &app.viewer, Method::POST, &path, StatusCode::OK).await;
    assert!(read.body["read_at"].is_string());
    let again = expect(&app, &app.viewer, Method::POST, &path, StatusCode::OK).await;
    assert_eq!(again.body["read_at"], read.body["read_at"], "reading again changes nothing");
    let unknown =
        as_user(&app, &app.viewer, Method::POST, "/api/v1/notifications/999999/read").await;
    assert_error(&unknown, "unknown", StatusCode::NOT_FOUND, "not_found");
    assert_eq!(unread(&app, &app.viewer).await, 2);
    let read_all = async || {
        let path = "/api/v1/notifications/read-all";
        expect(&app, &app.viewer, Method::POST, path, StatusCode::OK).await.body
    };
    assert_eq!(read_all().await, json!({ "marked": 2 }));
    assert_eq!(read_all().await, json!({ "marked": 0 }));
    assert_eq!(unread(&app, &app.viewer).await, 0);
}

#[tokio::test]
async fn notifications_page_newest_first_and_refuse_a_bad_cursor() {
    let (app, n) = web().await;
    mention_the_viewer_thrice(&app).await;
    settle(&app, &n).await;
    let all = ids(&inbox(&app, &app.viewer).await);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let path = format!("/api/v1/notifications{query}");
        let page = expect(&app, &app.viewer, Method::GET, &path, StatusCode::OK).await;
        seen.extend(ids(page.body["items"].as_array().unwrap()));
        match page.body["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, all);
    let bad = as_user(&app, &app.viewer, Method::GET, "/api/v1/notifications?cursor=abc").await;
    assert_error(&bad, "a bad cursor", StatusCode::BAD_REQUEST, "invalid_cursor");
    let big = as_user(&app, &app.viewer, Method::GET, "/api/v1/notifications?limit=501").await;
    assert_eq!(big.code(), "invalid_limit");
}

#[tokio::test]
async fn watching_and_unwatching_need_a_known_project_and_a_signed_in_user() {
    let app = spawn().await;
    app.project("web").await;
    let viewer = user_id(&app, "viewer").await;
    let watching = async || {
        let mut conn = app.pool.get().await.unwrap();
        loom::notifications::ProjectWatch::watching(&mut conn, "web", viewer).await.unwrap()
    };
    watch(&app, &app.viewer, "web").await;
    watch(&app, &app.viewer, "web").await;
    assert!(watching().await);
    for _ in 0..2 {
        let path = "/api/v1/projects/web/watch";
        expect(&app, &app.viewer, Method::DELETE, path, StatusCode::NO_CONTENT).await;
    }
    assert!(!watching().await);
    for method in [Method::POST, Method::DELETE] {
        let res = as_user(&app, &app.viewer, method.clone(), "/api/v1/projects/nope/watch").await;
        assert_error(&res, method.as_str(), StatusCode::NOT_FOUND, "not_found");
    }
    for (method, path) in [
        (Method::POST, "/api/v1/projects/web/watch"),
        (Method::DELETE, "/api/v1/projects/web/watch"),
        (Method::GET, "/api/v1/notifications"),
        (Method::POST, "/api/v1/notifications/1/read"),
        (Method::POST, "/api/v1/notifications/read-all"),
    ] {
        let res = app.call(method.clone(), path, None, None).await;
        assert_error(
            &res,
            &format!("{method} {path}"),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        );
    }
}

#[tokio::test]
async fn notifiers_stepping_at_once_read_each_row_exactly_once() {
    let app = spawn().await;
    let (a, b) = (notifier(&app).await, notifier(&app).await);
    // One transaction of many rows, so the readers (these two and the app's) contend for
    // the same ones, over more than one page.
    let mut conn = app.pool.get().await.unwrap();
    conn.transaction::<_, loom::Error, _>(async |conn| {
        for _ in 0..450 {
            Activity::record(conn, gateway_health(false)).await?;
        }
        Ok(())
    })
    .await
    .unwrap();
    drop(conn);
    let until_idle = async |n: &Notifier| {
        let mut read = 0;
        while let Step::Worked(rows) = n.step().await.unwrap() {
            read += rows;
        }
        read
    };
    let (read_a, read_b) = tokio::join!(until_idle(&a), until_idle(&b));
    settle(&app, &a).await;
    assert!(read_a + read_b <= 450, "{read_a} + {read_b}");
    for token in [&app.admin, &app.member, &app.viewer] {
        let items = inbox(&app, token).await;
        assert_eq!(reasons(&items), vec![("gateway_down".into(), "gateway".into())]);
        assert_eq!(items[0]["count"], 450, "each row raised it once");
    }
}

#[tokio::test]
async fn each_raised_notification_is_published_with_the_users_unread_count() {
    let (app, n) = web().await;
    let mut events = app.bus().subscribe();
    let bead = app.bead("web", "Fix login", json!({})).await;
    comment(&app, &bead, "@viewer look").await;
    settle(&app, &n).await;
    let viewer = user_id(&app, "viewer").await.to_string();
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(Received::Event(e)) if e.kind == Kind::Notification => return e,
                Some(_) => {}
                None => panic!("the bus closed"),
            }
        }
    })
    .await
    .expect("a notification event");
    assert_eq!(event.id, None, "notification events are ephemeral");
    assert_eq!(event.bead_id.as_deref(), Some(&*bead));
    let data = &event.data;
    assert_eq!(
        (data["user_id"].as_str(), data["reason"].as_str()),
        (Some(&*viewer), Some("mention"))
    );
    assert_eq!(data["unread"], 1);
    assert_eq!(data["id"], inbox(&app, &app.viewer).await[0]["id"]);
}

#[tokio::test]
async fn the_openapi_document_covers_the_notification_routes() {
    let app = spawn().await;
    let doc = app.call(Method::GET, "/api/openapi.json", None, None).await;
    for (method, path) in [
        ("get", "/api/v1/notifications"),
        ("post", "/api/v1/notifications/{id}/read"),
        ("post", "/api/v1/notifications/read-all"),
        ("post", "/api/v1/projects/{id}/watch"),
        ("delete", "/api/v1/projects/{id}/watch"),
    ] {
        assert!(doc.body["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    let me = &doc.body["components"]["schemas"]["Me"];
    assert!(me.to_string().contains("unread_notifications"), "{me}");
}

#[tokio::test]
async fn the_notification_stream_sends_the_users_own_raises_live_and_resumes_after_its_seq() {
    let app = spawn().await;
    app.project("web").await;
    let mut member = stream(&app.base, &app.member, None).await;
    let mut other_tab = stream(&app.base, &app.member, None).await;
    let mut admin = stream(&app.base, &app.admin, None).await;
    let a = app.bead("web", "First", json!({})).await;
    let b = app.bead("web", "Second", json!({})).await;
    let c = app.bead("web", "Third", json!({})).await;
    for bead in [&a, &b] {
        close_as(&app, &app.admin, bead).await;
    }
    // The app's own notifier raises them; the stream brings them as they are.
    let first = expect_raise(&mut member, "bead_closed", &a).await;
    let second = expect_raise(&mut member, "bead_closed", &b).await;
    // (Both may be raised in one step of the notifier, then both say 2.)
    assert!(first["unread"].as_i64().unwrap() >= 1);
    assert_eq!(second["unread"], 2);
    for (bead, sent) in [(&a, &first), (&b, &second)] {
        let seen = expect_raise(&mut other_tab, "bead_closed", bead).await;
        assert_eq!(seen["seq"], sent["seq"], "every tab of the user gets each raise");
    }
    // The member mentions the admin: the admin's first event is that, never the member's.
    comment(&app, &a, "@admin look").await;
    expect_raise(&mut admin, "mention", &a).await;

    // Reconnecting after the first gets the second again, then only what is new.
    drop(member);
    let mut again = stream(&app.base, &app.member, Some(&first["seq"].to_string())).await;
    assert_eq!(expect_raise(&mut again, "bead_closed", &b).await, second);
    close_as(&app, &app.admin, &c).await;
    expect_raise(&mut again, "bead_closed", &c).await;

    let url = format!("{}/api/v1/notifications/stream", app.base);
    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = SseClient::try_open(&url, &app.member, Some("x")).await.err().unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_flood_of_run_steps_wakes_no_notification_stream_which_still_delivers() {
    let app = spawn().await;
    app.project("web").await;
    let one = app.bead("web", "One", json!({})).await;
    let two = app.bead("web", "Two", json!({})).await;
    let three = app.bead("web", "Three", json!({})).await;
    let mut member = stream(&app.base, &app.member, None).await;
    // A first raise, so the wakers have covered the member's latest: a check finds no news.
    close_as(&app, &app.admin, &one).await;
    expect_raise(&mut member, "bead_closed", &one).await;
    let wakers = app.notification_wakers();
    let (wakes, checks) = (wakers.wakes_sent(), wakers.checks());
    // More than the bus holds for a subscriber, published without yielding: the wakers'
    // reader falls behind, is told of the lag and checks Postgres instead of waking all.
    for turn in 0..10_000 {
        let step = Event::live(Kind::RunStep, Some("web"), Some(&one), json!({ "turn": turn }));
        app.bus().publish(step);
    }
    let deadline = Instant::now() + WAIT;
    while wakers.checks() == checks {
        assert!(Instant::now() < deadline, "the lag was never followed by a check");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(wakers.wakes_sent(), wakes, "neither the steps nor the check woke a stream");
    close_as(&app, &app.admin, &two).await;
    expect_raise(&mut member, "bead_closed", &two).await;
    assert_eq!(wakers.wakes_sent(), wakes + 1, "a real raise wakes its user once");
    close_as(&app, &app.admin, &three).await;
    expect_raise(&mut member, "bead_closed", &three).await;
}

#[tokio::test]
async fn a_raise_whose_event_was_lost_is_found_by_one_check_which_wakes_only_its_user() {
    let app = spawn().await;
    app.project("web").await;
    let bead = app.bead("web", "Fix login", json!({})).await;
    let mut member = stream(&app.base, &app.member, None).await;
    let mut viewer = stream(&app.base, &app.viewer, None).await;
    let wakers = app.notification_wakers();
    let check = async || wakers.check(&app.pool).await.unwrap();
    assert_eq!(check().await, 2, "each user is woken once when a check first sees them");
    assert_eq!(check().await, 0, "nothing was raised since");
    raise_unpublished(&app, user_id(&app, "member").await, &bead).await;
    assert_eq!(check().await, 1, "only the member's latest raise moved");
    expect_raise(&mut member, "mention", &bead).await;
    assert_eq!(check().await, 0);
    // The viewer's stream was woken but had nothing to send: its first event is a new raise.
    comment(&app, &bead, "@viewer look").await;
    expect_raise(&mut viewer, "mention", &bead).await;
}

#[tokio::test]
async fn the_poll_finds_raises_whose_events_were_lost() {
    let app = spawn_with(|c| c.events.notification_poll = Duration::from_millis(100)).await;
    app.project("web").await;
    let one = app.bead("web", "One", json!({})).await;
    let two = app.bead("web", "Two", json!({})).await;
    let member_id = user_id(&app, "member").await;
    let mut member = stream(&app.base, &app.member, None).await;
    // The first while the user may not have been seen by a check yet, the second after.
    for bead in [&one, &two] {
        raise_unpublished(&app, member_id, bead).await;
        expect_raise(&mut member, "mention", bead).await;
    }
}

/// Publishes on `from` until an event reaches `to`: NATS now carries between them (a
/// replica's consumer starts after it has connected).
async fn until_nats_carries(from: &Bus, to: &Bus) {
    let mut heard = to.subscribe();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        from.publish(Event::live(Kind::RunStep, None, None, json!({ "ping": true })));
        let pong = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(r) = heard.recv().await {
                if matches!(r, Received::Event(e) if e.data["ping"] == true) {
                    return;
                }
            }
        });
        if pong.await.is_ok() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "NATS never carried an event across");
    }
}

#[tokio::test]
async fn a_stream_on_one_replica_gets_each_raise_from_work_on_another_once_and_in_order() {
    // B runs no notifier, reads the feed and checks for raises only every ten minutes: a
    // raise reaches its stream in time only as A's event through NATS.
    let (a, b, nats) = replica::pair(&nats_url(), Duration::from_secs(600)).await;
    until_nats_carries(a.bus(), &b.bus).await;
    a.project("web").await;
    let first = a.bead("web", "First", json!({})).await;
    let second = a.bead("web", "Second", json!({})).await;
    let third = a.bead("web", "Third", json!({})).await;
    let mut on_b = stream(&b.base, &a.member, None).await;
    close_as(&a, &a.admin, &first).await;
    let one = expect_raise(&mut on_b, "bead_closed", &first).await;
    close_as(&a, &a.admin, &second).await;
    let two = expect_raise(&mut on_b, "bead_closed", &second).await;
    assert!(two["seq"].as_i64() > one["seq"].as_i64(), "{one} then {two}");
    // Each raise once: the next event is the next raise.
    close_as(&a, &a.admin, &third).await;
    let three = expect_raise(&mut on_b, "bead_closed", &third).await;
    let inbox = inbox(&a, &a.member).await;
    let expected: Vec<_> = [&three, &two, &one].map(|n| n["id"].as_i64().unwrap()).into();
    assert_eq!(ids(&inbox), expected);
    replica::drop_stream(&nats).await;
}
