//! A real `loom serve` stopped by signals while an agent's turn is under way: one signal
//! stops it in order, letting the turn finish and handing the run over; a second exits at
//! once. Either way nothing is lost: the run stays open for the next owner.

use std::time::Duration;

use serde_json::json;

use crate::executor::count;
use crate::support::gateway::Reply;
use crate::support::serve::Server;
use crate::support::work::{KEY, Work};

/// `loom serve` with executors and a dispatcher, on `w`'s database and scripted gateway.
fn serve(w: &Work, grace_s: u64) -> Server {
    Server::start(
        w.app.database_url(),
        &[
            ("LOOM_GATEWAY_URL", w.script.url()),
            ("LOOM_GATEWAY_MODEL", "scripted-model".to_owned()),
            ("LOOM_GATEWAY_API_KEY", KEY.to_owned()),
            ("LOOM_SHUTDOWN_GRACE_SECONDS", grace_s.to_string()),
        ],
    )
}

async fn until_asked(w: &Work) {
    for _ in 0..500 {
        if !w.script.completions().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the agent was never asked anything");
}

#[tokio::test]
async fn one_signal_stops_in_order_after_the_turn_under_way_and_hands_the_run_over() {
    let w = Work::new(&[("a.txt", "a\n")], 1, Default::default()).await;
    let bead = w.bead("Change a to b").await;
    let edit = json!({"path": "a.txt", "old": "a", "new": "b"});
    w.script.push_for(&bead, Reply::tool_call("edit_file", edit).delay(Duration::from_secs(2)));
    let mut server = serve(&w, 120);
    server.port().await;
    until_asked(&w).await;
    server.terminate();
    let status = tokio::time::timeout(Duration::from_secs(90), server.child.wait()).await;
    let log = server.log();
    assert!(status.is_ok_and(|s| s.is_ok_and(|s| s.success())), "{log}");
    let stages = [
        "shutting down: no new requests",
        "shutdown: requests finished; stopping dispatch",
        "dispatcher stopped",
        "letting running turns reach a checkpoint",
        "a run stopped at a checkpoint for the shutdown",
        "shutdown: runs handed over",
        "shutdown: the bus is flushed",
    ];
    let at: Vec<usize> = stages
        .iter()
        .map(|s| log.find(s).unwrap_or_else(|| panic!("no {s:?} in the log:\n{log}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "stages out of order:\n{log}");
    assert_eq!(count(&w, "SELECT count(*) AS n FROM run_steps WHERE ok").await, 1, "{log}");
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM runs WHERE outcome IS NULL AND worker IS NULL").await,
        1,
        "the run is open, handed over"
    );
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM executor_leases").await,
        0,
        "the project is free"
    );
    assert_eq!(w.show(&bead).await["status"], "in_progress");
}

#[tokio::test]
async fn a_second_signal_exits_at_once_leaving_the_run_open_for_the_next_owner() {
    let w = Work::new(&[("a.txt", "a\n")], 1, Default::default()).await;
    let bead = w.bead("Take forever").await;
    w.script.push_for(&bead, Reply::text("slow").delay(Duration::from_secs(600)));
    let mut server = serve(&w, 600);
    server.port().await;
    until_asked(&w).await;
    server.terminate();
    for _ in 0..500 {
        if server.log().contains("letting running turns reach a checkpoint") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.terminate();
    // Without the second signal it would wait out a 600 s grace.
    let status = tokio::time::timeout(Duration::from_secs(60), server.child.wait()).await;
    let log = server.log();
    let status = status.unwrap_or_else(|_| panic!("still running after a second signal:\n{log}"));
    assert_eq!(status.unwrap().code(), Some(130), "{log}");
    assert!(log.contains("a second signal: exiting at once"), "{log}");
    assert_eq!(
        count(&w, "SELECT count(*) AS n FROM runs WHERE outcome IS NULL").await,
        1,
        "the run is still open, to be adopted once its owner's lease lapses"
    );
    assert_eq!(w.show(&bead).await["status"], "in_progress");
}
