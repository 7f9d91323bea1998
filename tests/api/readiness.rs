use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ids, spawn};

#[tokio::test]
async fn a_blocks_dependency_gates_readiness_until_the_blocker_closes() {
    let app = spawn().await;
    app.project("web").await;
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({"depends_on": [a]})).await;
    assert_eq!(app.ready_ids("web").await, [a.clone()]);
    let held = app.show(&b).await;
    assert_eq!((held["ready"].as_bool(), held["open_blockers"].as_i64()), (Some(false), Some(1)));
    assert_eq!(held["holds"][0]["kind"], "blockers");
    assert_eq!(held["holds"][0]["blockers"][0]["id"], a.as_str());
    app.close(&a).await;
    assert_eq!(app.ready_ids("web").await, [b.clone()]);
    // reopening the blocker holds the dependent again
    app.post(&format!("/api/v1/beads/{a}/reopen"), json!({})).await;
    assert_eq!(app.ready_ids("web").await, [a]);
}

#[tokio::test]
async fn ready_work_is_ordered_by_priority_then_age() {
    let app = spawn().await;
    app.project("web").await;
    let low = app.bead("web", "low", json!({"priority": 3})).await;
    let urgent_old = app.bead("web", "urgent old", json!({"priority": 0})).await;
    let urgent_new = app.bead("web", "urgent new", json!({"priority": 0})).await;
    let mid = app.bead("web", "mid", json!({"priority": 2})).await;
    assert_eq!(app.ready_ids("web").await, [urgent_old, urgent_new, mid, low]);
    let page = app.get("/api/v1/beads/ready?project=web&limit=2").await;
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = app.get(&format!("/api/v1/beads/ready?project=web&cursor={cursor}")).await;
    assert_eq!(ids(&rest.body["items"]).len(), 2);
}

#[tokio::test]
async fn epics_are_never_ready_and_close_themselves_with_their_last_child() {
    let app = spawn().await;
    app.project("web").await;
    let epic = app.bead("web", "epic", json!({"type": "epic"})).await;
    let c1 = app.bead("web", "c1", json!({"parent": epic})).await;
    let c2 = app.bead("web", "c2", json!({"parent": epic})).await;
    assert!(!app.ready_ids("web").await.contains(&epic));
    let refused = app.close(&epic).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "has_open_children"));
    app.close(&c1).await;
    assert_eq!(app.show(&epic).await["status"], "open");
    app.close(&c2).await;
    let closed = app.show(&epic).await;
    assert_eq!(
        (closed["status"].as_str(), closed["close_reason"].as_str()),
        (Some("closed"), Some("all children closed"))
    );
    // a child reopened reopens its epic: a closed container cannot hold open work
    app.post(&format!("/api/v1/beads/{c2}/reopen"), json!({})).await;
    assert_eq!(app.show(&epic).await["status"], "open");
    let late =
        app.post("/api/v1/beads", json!({"project": "web", "title": "late", "parent": c1})).await;
    assert_eq!((late.status, late.code()), (StatusCode::CONFLICT, "parent_closed"));
}

#[tokio::test]
async fn a_held_ancestor_holds_every_descendant() {
    let app = spawn().await;
    app.project("web").await;
    let parent = app.bead("web", "parent", json!({})).await;
    let child = app.bead("web", "child", json!({"parent": parent})).await;
    let grandchild = app.bead("web", "grandchild", json!({"parent": child})).await;
    assert_eq!(app.ready_ids("web").await.len(), 3);

    app.post(&format!("/api/v1/beads/{parent}/block"), json!({"reason": "wait"})).await;
    assert!(app.ready_ids("web").await.is_empty());
    let g = app.show(&grandchild).await;
    // held_by names the ancestor whose own state holds the subtree, however deep
    assert_eq!(
        (g["held_by"].as_str(), g["holds"][0]["kind"].as_str()),
        (Some(parent.as_str()), Some("ancestor"))
    );
    assert_eq!(g["holds"][0]["status"], "blocked");
    assert_eq!(app.show(&child).await["held_by"], parent.as_str());
    app.post(&format!("/api/v1/beads/{parent}/reopen"), json!({})).await;
    assert_eq!(app.ready_ids("web").await.len(), 3);

    // a parent waiting on an open blocker holds its subtree too
    let blocker = app.bead("web", "blocker", json!({})).await;
    app.depend(&parent, &blocker, "blocks").await;
    assert_eq!(app.ready_ids("web").await, [blocker.clone()]);
    app.close(&blocker).await;
    assert_eq!(app.ready_ids("web").await.len(), 3);

    // and so does a deferred one
    let version = app.show(&parent).await["version"].as_i64().unwrap();
    app.patch(
        &format!("/api/v1/beads/{parent}"),
        json!({"version": version, "status": "deferred"}),
    )
    .await;
    assert!(app.ready_ids("web").await.is_empty());
    // moving the child out from under it frees the child's subtree
    let res = app
        .delete(
            &format!("/api/v1/beads/{child}/dependencies"),
            Some(json!({"depends_on": parent, "kind": "parent-child"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.ready_ids("web").await.len(), 2);
}

#[tokio::test]
async fn back_off_keeps_a_bead_out_of_the_ready_queue_until_it_passes() {
    let app = spawn().await;
    app.project("web").await;
    let id = app.bead("web", "retry me", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    let set = |when: &str| {
        diesel::sql_query(format!(
            "UPDATE beads SET not_before = now() + interval '{when}' WHERE id = '{id}'"
        ))
    };
    diesel_async::RunQueryDsl::execute(set("1 hour"), &mut conn).await.unwrap();
    assert!(app.ready_ids("web").await.is_empty());
    let blocked = app.get("/api/v1/beads/blocked?project=web").await;
    assert_eq!(blocked.body["items"][0]["holds"][0]["kind"], "backoff");
    diesel_async::RunQueryDsl::execute(set("-1 second"), &mut conn).await.unwrap();
    assert_eq!(app.ready_ids("web").await, [id]);
}

#[tokio::test]
async fn the_blocked_list_says_what_holds_each_bead() {
    let app = spawn().await;
    app.project("web").await;
    let a = app.bead("web", "a", json!({"priority": 0})).await;
    let waits = app.bead("web", "waits", json!({"depends_on": [a]})).await;
    let manual = app.bead("web", "manual", json!({})).await;
    app.post(&format!("/api/v1/beads/{manual}/block"), json!({"reason": "ask legal"})).await;
    let deferred = app.bead("web", "later", json!({})).await;
    app.patch(
        &format!("/api/v1/beads/{deferred}"),
        json!({"version": 1, "status": "deferred", "defer_until": "2099-01-01T00:00:00Z"}),
    )
    .await;
    let res = app.get("/api/v1/beads/blocked?project=web").await;
    let items = res.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{items:?}");
    let holds_of =
        |id: &str| items.iter().find(|i| i["id"] == id).map(|i| i["holds"][0].clone()).unwrap();
    assert_eq!(holds_of(&waits)["blockers"][0]["id"], a.as_str());
    assert_eq!(
        (holds_of(&manual)["reason"].as_str(), holds_of(&manual)["note"].as_str()),
        (Some("manual"), Some("ask legal"))
    );
    assert_eq!(holds_of(&deferred)["until"], "2099-01-01T00:00:00Z");
    let past = app
        .patch(
            &format!("/api/v1/beads/{a}"),
            json!({"version": 1, "status": "deferred", "defer_until": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(past.code(), "invalid_defer_until");
}
