//! `loom feed`: the history in the terminal, and `--follow` streaming what happens next.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::cli::Cli;
use crate::support::spawn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_prints_the_history_oldest_first_and_refuses_a_bad_filter() {
    let app = spawn().await;
    app.project("term").await;
    let a = app.bead("term", "first thing", json!({})).await;
    app.close(&a).await;
    let cli = Cli::with_token(&app.base, &app.viewer);
    let (ok, out, err) = cli.run(&["feed", "--project", "term"], None);
    assert!(ok, "{err}");
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("project.created"), "{out}");
    assert!(lines[1].contains("bead.created") && lines[1].contains("first thing"), "{out}");
    assert!(lines[2].contains("bead.closed") && lines[2].contains(&a), "{out}");

    let (ok, out, _) = cli.run(&["feed", "--project", "term", "--json", "--limit", "2"], None);
    assert!(ok);
    let kinds: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["bead.created", "bead.closed"]);

    let (ok, _, err) = cli.run(&["feed", "--kind", "nope"], None);
    assert!(!ok && err.contains("unknown_kind"), "{err}");
    let (ok, _, err) = Cli::new(&app.base).run(&["feed"], None);
    assert!(!ok && err.contains("not logged in"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_the_feed_prints_each_new_event_once_whenever_it_happens() {
    let app = spawn().await;
    app.project("tail").await;
    let cli = Cli::with_token(&app.base, &app.viewer);
    let mut child = cli.spawn(&["feed", "--project", "tail", "--kind", "bead", "--follow"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Whether this lands before the command opened its stream, between the stream and the
    // history, or after both, it is printed, and once.
    let first = app.bead("tail", "early", json!({})).await;
    let mut printed = Vec::new();
    let mut next = async || {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await;
        line.expect("a line in time").unwrap().expect("still running")
    };
    printed.push(next().await);
    assert!(printed[0].contains("bead.created") && printed[0].contains(&first), "{printed:?}");
    let second = app.bead("tail", "late", json!({})).await;
    app.close(&second).await;
    printed.push(next().await);
    printed.push(next().await);
    assert!(printed[1].contains(&second) && printed[1].contains("late"), "{printed:?}");
    assert!(printed[2].contains("bead.closed") && printed[2].contains(&second), "{printed:?}");
    child.kill().await.unwrap();
    let rest = lines.next_line().await.unwrap_or_default();
    assert!(rest.as_ref().is_none_or(|l| !l.contains(&first)), "printed twice: {rest:?}");
}
