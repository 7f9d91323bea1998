//! Notifications: each rule, de-duplication, reading them, watching projects, the notifier
//! reading each activity row exactly once however many run, and what it publishes.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use loom::activity::{Activity, Actor, Record};
use loom::beads::{Bead, BlockedReason, StatusChange};
use loom::db::schema::activity;
use loom::events::{Kind, Position, Received};
use loom::notifications::{Notifier, Step};
use loom::users::User;

use crate::support::{Res, TestApp, spawn};

/// A notifier over the app's pool and bus whose cursor exists: what the test does from
/// now on is notified.
async fn notifier(app: &TestApp) -> Notifier {
    let n = Notifier::new(app.pool.clone(), app.bus().clone());
    n.step().await.unwrap();
    n
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

/// The user's notifications, newest first.
async fn inbox(app: &TestApp, token: &str) -> Vec<Value> {
    let res = as_user(app, token, Method::GET, "/api/v1/notifications").await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body["items"].as_array().unwrap().clone()
}

fn reasons(items: &[Value]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|n| (n["reason"].as_str().unwrap().into(), n["subject"].as_str().unwrap().into()))
        .collect()
}

async fn watch(app: &TestApp, token: &str, project: &str) {
    let res = as_user(app, token, Method::POST, &format!("/api/v1/projects/{project}/watch")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{:?}", res.body);
}

async fn comment(app: &TestApp, bead: &str, body: &str) {
    let res = app.post(&format!("/api/v1/beads/{bead}/comments"), json!({ "body": body })).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
}

async fn gateway_health(app: &TestApp, healthy: bool) {
    let mut conn = app.pool.get().await.unwrap();
    let reason = (!healthy).then_some("connection refused");
    let data = json!({ "healthy": healthy, "reason": reason });
    let record = Record {
        kind: Kind::GatewayHealth,
        project_id: None,
        bead_id: None,
        actor: Actor::System,
        data,
    };
    Activity::record(&mut conn, record).await.unwrap();
}

#[tokio::test]
async fn a_bead_someone_else_closes_notifies_the_user_who_filed_it() {
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
    let bead = app.bead("web", "Fix login", json!({})).await;
    let closed =
        as_user(&app, &app.admin, Method::POST, &format!("/api/v1/beads/{bead}/close")).await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
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
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
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
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
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
    gateway_health(&app, false).await;
    gateway_health(&app, false).await;
    gateway_health(&app, true).await;
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
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
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
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
    let bead = app.bead("web", "Fix login", json!({})).await;
    comment(&app, &bead, "@viewer first").await;
    settle(&app, &n).await;
    let first = inbox(&app, &app.viewer).await[0].clone();
    comment(&app, &bead, "@viewer second").await;
    settle(&app, &n).await;
    let raised = inbox(&app, &app.viewer).await;
    assert_eq!(raised.len(), 1);
    assert_eq!((&raised[0]["id"], raised[0]["count"].as_i64()), (&first["id"], Some(2)));
    assert!(raised[0]["seq"].as_i64() > first["seq"].as_i64(), "a raise gets a fresh seq");
    assert!(raised[0]["activity_id"].as_i64() > first["activity_id"].as_i64());
    let id = first["id"].as_i64().unwrap();
    let read =
        as_user(&app, &app.viewer, Method::POST, &format!("/api/v1/notifications/{id}/read")).await;
    assert_eq!(read.status, StatusCode::OK);
    comment(&app, &bead, "@viewer third").await;
    settle(&app, &n).await;
    let both = inbox(&app, &app.viewer).await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!((both[0]["count"].as_i64(), both[0]["read_at"].is_null()), (Some(1), true));
    assert_eq!((both[1]["id"].as_i64(), both[1]["read_at"].is_null()), (Some(id), false));
    let unread = as_user(&app, &app.viewer, Method::GET, "/api/v1/notifications?unread=true").await;
    let unread = unread.body["items"].as_array().unwrap().clone();
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0]["id"], both[0]["id"]);
}

#[tokio::test]
async fn reading_one_all_and_someone_elses_and_the_unread_count_in_me() {
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
    for title in ["one", "two", "three"] {
        let bead = app.bead("web", title, json!({})).await;
        comment(&app, &bead, "@viewer look").await;
    }
    settle(&app, &n).await;
    let me = |token: String| {
        let app = &app;
        async move { as_user(app, &token, Method::GET, "/api/v1/auth/me").await }
    };
    let before = me(app.viewer.clone()).await;
    assert_eq!(
        (before.body["username"].as_str(), before.body["unread_notifications"].as_i64()),
        (Some("viewer"), Some(3))
    );
    assert_eq!(me(app.member.clone()).await.body["unread_notifications"], 0);
    let items = inbox(&app, &app.viewer).await;
    let id = items[0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/notifications/{id}/read");
    let theirs = as_user(&app, &app.member, Method::POST, &path).await;
    assert_eq!(
        (theirs.status, theirs.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "someone else's"
    );
    let read = as_user(&app, &app.viewer, Method::POST, &path).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(read.body["read_at"].is_string());
    let again = as_user(&app, &app.viewer, Method::POST, &path).await;
    assert_eq!(
        (again.status, &again.body["read_at"]),
        (StatusCode::OK, &read.body["read_at"]),
        "reading again changes nothing"
    );
    let unknown =
        as_user(&app, &app.viewer, Method::POST, "/api/v1/notifications/999999/read").await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(me(app.viewer.clone()).await.body["unread_notifications"], 2);
    let all = as_user(&app, &app.viewer, Method::POST, "/api/v1/notifications/read-all").await;
    assert_eq!((all.status, &all.body), (StatusCode::OK, &json!({ "marked": 2 })));
    let none = as_user(&app, &app.viewer, Method::POST, "/api/v1/notifications/read-all").await;
    assert_eq!(none.body, json!({ "marked": 0 }));
    assert_eq!(me(app.viewer.clone()).await.body["unread_notifications"], 0);
}

#[tokio::test]
async fn notifications_page_newest_first_and_refuse_a_bad_cursor() {
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
    for title in ["one", "two", "three"] {
        let bead = app.bead("web", title, json!({})).await;
        comment(&app, &bead, "@viewer look").await;
    }
    settle(&app, &n).await;
    let all: Vec<i64> =
        inbox(&app, &app.viewer).await.iter().map(|n| n["id"].as_i64().unwrap()).collect();
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
    let mut seen = Vec::new();
    let mut path = "/api/v1/notifications?limit=2".to_owned();
    loop {
        let page = as_user(&app, &app.viewer, Method::GET, &path).await;
        seen.extend(
            page.body["items"].as_array().unwrap().iter().map(|n| n["id"].as_i64().unwrap()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/notifications?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, all);
    let bad = as_user(&app, &app.viewer, Method::GET, "/api/v1/notifications?cursor=abc").await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_cursor"));
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
        let res = as_user(&app, &app.viewer, Method::DELETE, "/api/v1/projects/web/watch").await;
        assert_eq!(res.status, StatusCode::NO_CONTENT, "{:?}", res.body);
    }
    assert!(!watching().await);
    for method in [Method::POST, Method::DELETE] {
        let res = as_user(&app, &app.viewer, method.clone(), "/api/v1/projects/nope/watch").await;
        assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "not_found"), "{method}");
    }
    for (method, path) in [
        (Method::POST, "/api/v1/projects/web/watch"),
        (Method::DELETE, "/api/v1/projects/web/watch"),
        (Method::GET, "/api/v1/notifications"),
        (Method::POST, "/api/v1/notifications/1/read"),
        (Method::POST, "/api/v1/notifications/read-all"),
    ] {
        let res = app.call(method.clone(), path, None, None).await;
        assert_eq!(
            (res.status, res.code()),
            (StatusCode::UNAUTHORIZED, "unauthenticated"),
            "{method} {path}"
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
            let data = json!({ "healthy": false, "reason": "refused" });
            let record = Record {
                kind: Kind::GatewayHealth,
                project_id: None,
                bead_id: None,
                actor: Actor::System,
                data,
            };
            Activity::record(conn, record).await?;
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
    let app = spawn().await;
    app.project("web").await;
    let n = notifier(&app).await;
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
    use crate::support::sse::{SseClient, data};
    let app = spawn().await;
    app.project("web").await;
    let url = format!("{}/api/v1/notifications/stream", app.base);
    let mut member = SseClient::open(&url, &app.member, None).await;
    let mut admin = SseClient::open(&url, &app.admin, None).await;
    let a = app.bead("web", "First", json!({})).await;
    let b = app.bead("web", "Second", json!({})).await;
    for bead in [&a, &b] {
        let closed =
            as_user(&app, &app.admin, Method::POST, &format!("/api/v1/beads/{bead}/close")).await;
        assert_eq!(closed.status, StatusCode::OK);
    }
    // The app's own notifier raises them; the stream brings them as they are.
    let first = member.next_event().await;
    let second = member.next_event().await;
    assert_eq!(
        (first.event.as_str(), data(&first)["bead_id"].as_str()),
        ("notification", Some(a.as_str()))
    );
    assert_eq!(data(&second)["bead_id"], b.as_str());
    // (Both may be raised in one step of the notifier, then both say 2.)
    assert!(data(&first)["unread"].as_i64().unwrap() >= 1);
    assert_eq!(data(&second)["unread"], 2);
    assert_eq!(first.id.clone().unwrap(), data(&first)["seq"].to_string(), "the SSE id is the seq");
    assert!(
        admin.quiet_for(Duration::from_millis(500)).await.is_empty(),
        "others' raises are not sent"
    );

    // Reconnecting after the first gets the second again, and nothing else.
    drop(member);
    let mut again = SseClient::open(&url, &app.member, first.id.as_deref()).await;
    let resumed = again.next_event().await;
    assert_eq!(data(&resumed)["bead_id"], b.as_str());
    assert!(again.quiet_for(Duration::from_millis(300)).await.is_empty());

    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = SseClient::try_open(&url, &app.member, Some("x")).await.err().unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
