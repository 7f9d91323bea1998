use reqwest::StatusCode;
use serde_json::json;

use crate::support::spawn;

#[tokio::test]
async fn a_direct_blocks_cycle_is_refused_with_409() {
    let app = spawn().await;
    app.project("web").await;
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({"depends_on": [a]})).await;
    let res = app.depend(&a, &b, "blocks").await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "dependency_cycle"));
    assert!(res.body["error"]["message"].as_str().unwrap().contains(&format!("{a} -> {b} -> {a}")));
    // related edges never gate work, so they may point anywhere
    assert_eq!(app.depend(&a, &b, "related").await.status, StatusCode::CREATED);
    assert_eq!(app.depend(&a, &b, "discovered-from").await.status, StatusCode::CREATED);
    assert_eq!(app.ready_ids("web").await, [a]);
}

#[tokio::test]
async fn a_cycle_through_a_long_chain_is_refused() {
    let app = spawn().await;
    app.project("web").await;
    let first = app.bead("web", "0", json!({})).await;
    let mut last = first.clone();
    for i in 1..200 {
        last = app.bead("web", &format!("{i}"), json!({"depends_on": [last]})).await;
    }
    let res = app.depend(&first, &last, "blocks").await;
    assert_eq!(res.code(), "dependency_cycle");
    let msg = res.body["error"]["message"].as_str().unwrap();
    assert_eq!(msg.matches(" -> ").count(), 200, "the whole cycle is named");
    assert_eq!(app.ready_ids("web").await, [first]);
}

#[tokio::test]
async fn a_diamond_is_fine_but_closing_it_into_a_cycle_is_not() {
    let app = spawn().await;
    app.project("web").await;
    // top depends on left and right, both depend on bottom
    let bottom = app.bead("web", "bottom", json!({})).await;
    let left = app.bead("web", "left", json!({"depends_on": [bottom]})).await;
    let right = app.bead("web", "right", json!({"depends_on": [bottom]})).await;
    let top = app.bead("web", "top", json!({"depends_on": [left, right]})).await;
    assert_eq!(
        app.depend(&top, &bottom, "blocks").await.status,
        StatusCode::CREATED,
        "a redundant edge is no cycle"
    );
    assert_eq!(
        app.depend(&top, &bottom, "blocks").await.status,
        StatusCode::OK,
        "an existing edge is accepted again"
    );
    assert_eq!(app.depend(&bottom, &top, "blocks").await.code(), "dependency_cycle");
    assert_eq!(app.depend(&bottom, &left, "blocks").await.code(), "dependency_cycle");
    app.close(&bottom).await;
    app.close(&left).await;
    assert_eq!(app.ready_ids("web").await, [right.clone()]);
    app.close(&right).await;
    assert_eq!(app.ready_ids("web").await, [top]);
}

#[tokio::test]
async fn concurrent_edges_cannot_make_a_cycle_together() {
    let app = spawn().await;
    app.project("web").await;
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({})).await;
    for _ in 0..5 {
        let (x, y) = tokio::join!(app.depend(&a, &b, "blocks"), app.depend(&b, &a, "blocks"));
        let created = [&x, &y].iter().filter(|r| r.status.is_success()).count();
        assert_eq!(created, 1, "{:?} {:?}", x.body, y.body);
        // undo for the next round
        let (from, to) = if x.status.is_success() { (&a, &b) } else { (&b, &a) };
        app.delete(
            &format!("/api/v1/beads/{from}/dependencies"),
            Some(json!({"depends_on": to, "kind": "blocks"})),
        )
        .await;
    }
}

#[tokio::test]
async fn waiting_across_a_parent_child_link_is_refused_both_ways() {
    let app = spawn().await;
    app.project("web").await;
    let parent = app.bead("web", "parent", json!({})).await;
    let child = app.bead("web", "child", json!({"parent": parent})).await;
    let grandchild = app.bead("web", "grandchild", json!({"parent": child})).await;
    // the parent waits for its children to close; a child waiting on it would never run
    assert_eq!(app.depend(&grandchild, &parent, "blocks").await.code(), "dependency_cycle");
    // a parent waiting on its child would hold that child back forever
    assert_eq!(app.depend(&parent, &grandchild, "blocks").await.code(), "dependency_cycle");
    let filed = app
        .post(
            "/api/v1/beads",
            json!({"project": "web", "title": "x", "parent": parent, "depends_on": [parent]}),
        )
        .await;
    assert_eq!((filed.status, filed.code()), (StatusCode::CONFLICT, "dependency_cycle"));
    // siblings may wait on each other, and everything still gets done
    let sibling =
        app.bead("web", "sibling", json!({"parent": parent, "depends_on": [child]})).await;
    assert!(!app.ready_ids("web").await.contains(&sibling));
    app.close(&grandchild).await;
    app.close(&child).await;
    assert!(app.ready_ids("web").await.contains(&sibling));
    app.close(&sibling).await;
    assert_eq!(app.close(&parent).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_parent_that_waits_on_a_bead_cannot_adopt_it() {
    let app = spawn().await;
    app.project("web").await;
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({})).await;
    app.depend(&a, &b, "blocks").await;
    // b as a's child: a would hold b back (a waits on b), and b would wait for a to stop holding
    assert_eq!(app.depend(&b, &a, "parent-child").await.code(), "dependency_cycle");
    assert!(app.show(&b).await["parent"].is_null(), "a refused link leaves nothing behind");
}

#[tokio::test]
async fn closing_one_blocker_of_a_parent_and_its_child_frees_the_whole_subtree() {
    let app = spawn().await;
    app.project("web").await;
    let x = app.bead("web", "x", json!({})).await;
    let epic = app.bead("web", "epic", json!({"type": "epic", "depends_on": [x]})).await;
    let c = app.bead("web", "c", json!({"parent": epic, "depends_on": [x]})).await;
    let g = app.bead("web", "g", json!({"parent": c})).await;
    assert_eq!(app.ready_ids("web").await, [x.clone()]);
    app.close(&x).await;
    assert_eq!(app.show(&g).await["held_by"], serde_json::Value::Null);
    assert_eq!(app.ready_ids("web").await, [c, g]);
}

#[tokio::test]
async fn parent_child_edges_set_the_parent_and_refuse_loops() {
    let app = spawn().await;
    app.project("web").await;
    app.project("api").await;
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({})).await;
    let c = app.bead("web", "c", json!({})).await;
    assert_eq!(app.depend(&b, &a, "parent-child").await.status, StatusCode::CREATED);
    assert_eq!(app.show(&b).await["parent"], a.as_str());
    assert_eq!(app.depend(&c, &b, "parent-child").await.status, StatusCode::CREATED);
    assert_eq!(app.depend(&a, &c, "parent-child").await.code(), "dependency_cycle");
    assert_eq!(app.depend(&b, &c, "parent-child").await.code(), "already_has_parent");
    let other = app.bead("api", "other", json!({})).await;
    assert_eq!(app.depend(&other, &a, "parent-child").await.code(), "cross_project_parent");
    let details = app.show(&a).await;
    assert_eq!(details["dependents"][0]["kind"], "parent-child");
    assert_eq!(app.show(&b).await["dependencies"][0]["id"], a.as_str());
}

#[tokio::test]
async fn bad_dependency_requests_get_clear_errors() {
    let app = spawn().await;
    app.project("web").await;
    let a = app.bead("web", "a", json!({})).await;
    let b = app.bead("web", "b", json!({})).await;
    assert_eq!(app.depend(&a, &a, "blocks").await.code(), "self_dependency");
    assert_eq!(app.depend(&a, "web-zzzz", "blocks").await.code(), "unknown_dependency");
    assert_eq!(app.depend("web-zzzz", &a, "blocks").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.depend(&a, &b, "depends").await.code(), "invalid_body");
    let missing = app
        .delete(
            &format!("/api/v1/beads/{a}/dependencies"),
            Some(json!({"depends_on": b, "kind": "blocks"})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    app.depend(&a, &b, "blocks").await;
    assert_eq!(app.ready_ids("web").await, [b.clone()]);
    let removed = app
        .delete(
            &format!("/api/v1/beads/{a}/dependencies"),
            Some(json!({"depends_on": b, "kind": "blocks"})),
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(app.ready_ids("web").await.len(), 2);
    let viewer = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/beads/{a}/dependencies"),
            Some(&app.viewer.clone()),
            Some(json!({"depends_on": b, "kind": "blocks"})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
}
