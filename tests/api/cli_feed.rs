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
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["bead.created", "bead.closed"]);

    let (ok, _, err) = cli.run(&["feed", "--kind", "nope"], None);
    assert!(!ok && err.contains("unknown_kind"), "{err}");
    let (ok, _, err) = Cli::new(&app.base).run(&["feed"], None);
    assert!(!ok && err.contains("not logged in"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_the_feed_prints_new_events_as_they_happen() {
    let app = spawn().await;
    app.project("tail").await;
    let cli = Cli::with_token(&app.base, &app.viewer);
    let mut child = cli.spawn(&["feed", "--project", "tail", "--kind", "bead", "--follow"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Give the stream time to open, then make something happen, more than once if the
    // first change came before it was listening (it is not lost: it was in the history
    // the command printed first, or it streams).
    let mut made = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut printed = String::new();
    while made.is_empty() || !made.iter().any(|b: &String| printed.contains(b.as_str())) {
        assert!(tokio::time::Instant::now() < deadline, "never printed {made:?}: {printed}");
        if made.len() < 3 {
            made.push(app.bead("tail", &format!("live {}", made.len()), json!({})).await);
        }
        if let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await {
            printed.push_str(&line);
            printed.push('\n');
        }
    }
    assert!(printed.contains("bead.created"), "{printed}");
    child.kill().await.unwrap();
}
