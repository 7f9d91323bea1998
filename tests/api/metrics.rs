//! `/metrics`: OpenMetrics text a Prometheus scrapes, with what a run did counted, and the
//! token that can close it.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::gateway::Reply;
use crate::support::spawn_with;
use crate::support::work::Work;

/// The value of the first sample line starting with `series` (its name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
}

/// Every line is a comment or `name{labels} value`; every family is typed; the text ends
/// with `# EOF`, as OpenMetrics requires.
fn assert_well_formed(text: &str) {
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "a value in {line:?}");
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line:?}");
        let family = ["_total", "_bucket", "_count", "_sum", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# TYPE {family} "))
                || text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}"
        );
    }
}

#[tokio::test]
async fn a_finished_run_is_counted_from_claim_to_gateway_tokens() {
    let mut w = Work::new(&[("a.txt", "one\n")], 1, Default::default()).await;
    let bead = w.bead("Say two").await;
    w.script.push_for(
        &bead,
        Reply::tool_call("edit_file", json!({"path": "a.txt", "old": "one", "new": "two"}))
            .tokens(120, 30),
    );
    w.script.push_for(
        &bead,
        Reply::action(json!({"action": "done", "summary": "two"})).tokens(150, 10),
    );
    w.settle().await;
    assert_eq!(w.app.show(&bead).await["status"], "closed");

    // Run ends are counted as the feed reads this replica's rows back: soon, not at once.
    let mut text = String::new();
    for _ in 0..200 {
        let res = w.app.call(Method::GET, "/metrics", None, None).await;
        assert_eq!(res.status, StatusCode::OK);
        text = res.body.as_str().unwrap().to_owned();
        if sample(&text, "loom_runs_total{outcome=\"success\"}").is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_well_formed(&text);
    for series in [
        "loom_runs_total{outcome=\"success\"}",
        "loom_run_duration_seconds_count{outcome=\"success\"}",
        "loom_dispatch_claims_total",
        "loom_dispatch_wait_seconds_count",
        "loom_dispatch_round_duration_seconds_count",
        "loom_gateway_requests_total{outcome=\"ok\"}",
        "loom_gateway_request_duration_seconds_count",
    ] {
        assert!(sample(&text, series).is_some_and(|n| n >= 1.0), "{series} in {text}");
    }
    // Other tests in this process count too: at least this run's tokens.
    assert!(
        sample(&text, "loom_gateway_tokens_total{kind=\"prompt\"}").is_some_and(|n| n >= 270.0)
    );
    assert!(
        sample(&text, "loom_gateway_tokens_total{kind=\"completion\"}").is_some_and(|n| n >= 40.0)
    );
    assert_eq!(sample(&text, "loom_beads{project=\"web\",status=\"closed\"}"), Some(1.0), "{text}");
    assert!(sample(&text, "loom_db_pool_max_connections").is_some_and(|n| n > 0.0));
    assert!(text.contains("loom_build_info{version=\""), "{text}");
    // Requests are counted by route pattern, never by path (one series per bead otherwise).
    assert!(text.contains("route=\"/api/v1/beads/{id}\""), "{text}");
    assert!(!text.contains(&format!("route=\"/api/v1/beads/{bead}\"")), "{text}");
}

#[tokio::test]
async fn a_metrics_token_closes_the_endpoint_to_anyone_without_it() {
    let app = spawn_with(|c| c.metrics_token = Some(loom::config::Secret::new("scrape-me"))).await;
    let scrape = |token: Option<&'static str>| app.call(Method::GET, "/metrics", token, None);
    let none = scrape(None).await;
    assert_eq!((none.status, none.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    assert_eq!(scrape(Some("scrape-you")).await.status, StatusCode::UNAUTHORIZED);
    // A user's API token is not the metrics token either.
    let user = app.call(Method::GET, "/metrics", Some(&app.admin), None).await;
    assert_eq!(user.status, StatusCode::UNAUTHORIZED);
    let right = scrape(Some("scrape-me")).await;
    assert_eq!(right.status, StatusCode::OK);
    assert!(right.body.as_str().unwrap().ends_with("# EOF\n"));
}

/// The landing queue is measured: its depth, each check's duration by outcome, the size of
/// the trains it checks and the trains it had to bisect.
#[tokio::test]
async fn the_landing_queue_is_counted_from_depth_to_bisections() {
    let mut w = Work::new(&[("a.txt", "a\n")], 2, Default::default()).await;
    let settings = json!({"check_command": "! grep -q BAD *.txt", "review": "human"});
    let admin = w.app.admin.clone();
    let res = w.app.call(Method::PATCH, "/api/v1/projects/web", Some(&admin), Some(settings)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let mut beads = Vec::new();
    for (i, content) in ["good", "BAD"].into_iter().enumerate() {
        let bead = w.bead(&format!("Bead {i}")).await;
        let write =
            json!({"action": "write_file", "path": format!("b{i}.txt"), "content": content});
        w.script.push_for(&bead, Reply::action(write));
        w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "ok"})));
        beads.push(bead);
    }
    w.settle().await;
    for bead in &beads {
        let res = w.app.post(&format!("/api/v1/beads/{bead}/approve"), json!({})).await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    }
    let res = w.app.call(Method::GET, "/metrics", None, None).await;
    let text = res.body.as_str().unwrap().to_owned();
    assert_eq!(sample(&text, "loom_landing_queue_depth{project=\"web\"}"), Some(2.0), "{text}");
    w.settle().await;
    let mut text = String::new();
    for _ in 0..200 {
        let res = w.app.call(Method::GET, "/metrics", None, None).await;
        text = res.body.as_str().unwrap().to_owned();
        if sample(&text, "loom_train_bisections_total").is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_well_formed(&text);
    for series in [
        "loom_check_duration_seconds_count{outcome=\"red\"}",
        "loom_check_duration_seconds_count{outcome=\"green\"}",
        "loom_train_size_count",
        "loom_train_bisections_total",
    ] {
        assert!(sample(&text, series).is_some_and(|n| n >= 1.0), "{series} in {text}");
    }
    assert_eq!(w.app.show(&beads[0]).await["status"], "closed");
    assert_eq!(w.app.show(&beads[1]).await["status"], "open");
}
