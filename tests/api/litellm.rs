//! Loom against a real, third-party gateway: the LiteLLM proxy serving a `mock_response` model
//! whose every reply is a `done` action as JSON text. The service works a bead to `closed`
//! through it, and streams a chat reply from it. Ignored in plain runs:
//! `tests/litellm/run.sh` installs and starts the proxy, then runs these with
//! `LOOM_TEST_LITELLM_{URL,KEY,MODEL,SUMMARY}` set.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::sse::{SseClient, data};
use crate::support::work::{Upstream, serving};
use loom::cli::sse::Frame;
use loom::config::Secret;
use loom::gateway::GatewayConfig;
use loom::workbench::actions::{Action, parse_reply};

/// What `tests/litellm/run.sh` tells the tests about the proxy it started.
struct Proxy {
    /// The base URL, ending in `/v1`.
    url: String,
    key: String,
    model: String,
    /// The summary of the `done` action the mock model always answers.
    summary: String,
}

fn proxy() -> Proxy {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: these tests need a running LiteLLM proxy; run them with \
                 tests/litellm/run.sh, which starts one and sets LOOM_TEST_LITELLM_*"
            )
        })
    };
    Proxy {
        url: var("LOOM_TEST_LITELLM_URL"),
        key: var("LOOM_TEST_LITELLM_KEY"),
        model: var("LOOM_TEST_LITELLM_MODEL"),
        summary: var("LOOM_TEST_LITELLM_SUMMARY"),
    }
}

/// The service as a person runs it (dispatcher, executors, probe) with LiteLLM as its
/// gateway, the project `web` on a real upstream, and the proxy's description.
async fn app_on_litellm() -> (TestApp, Upstream, Proxy) {
    let proxy = proxy();
    let mut gateway = GatewayConfig::new(&proxy.url, &proxy.model);
    gateway.api_key = Some(Secret::new(&proxy.key));
    let app = serving(gateway).await;
    let upstream = Upstream::new(&[("README.md", "# Web\n")]);
    let body = json!({"id": "web", "name": "Web", "repo": upstream.path(), "branch": "main"});
    let res =
        app.call(Method::POST, "/api/v1/projects", Some(&app.admin.clone()), Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    (app, upstream, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a LiteLLM proxy: tests/litellm/run.sh"]
async fn litellm_serves_an_agent_that_works_a_bead_to_closed() {
    let (app, _upstream, proxy) = app_on_litellm().await;
    let res =
        app.post("/api/v1/agents", json!({"name": "ada", "persona": "software-engineer"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);

    let bead = app.bead("web", "Check the README", json!({})).await;

    // Bounded, not timed: the proxy's mock answers at once, the run takes one call.
    let mut shown = app.show(&bead).await;
    for _ in 0..600 {
        // A failed try is a failure here: the mock's one reply finishes the bead.
        if shown["status"] == "closed" || !shown["last_error"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        shown = app.show(&bead).await;
    }
    let runs = app.get(&format!("/api/v1/beads/{bead}/runs")).await.body;
    assert_eq!(
        (shown["status"].as_str(), shown["close_reason"].as_str()),
        (Some("closed"), Some(proxy.summary.as_str())),
        "{shown}\n{runs}"
    );
    assert_eq!(shown["attempts"], 0, "{shown}");
}

/// The text of every `delta` among `frames`, joined.
fn said(frames: &[Frame]) -> String {
    let deltas = frames.iter().filter(|f| f.event == "delta");
    deltas.map(|f| data(f)["text"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a LiteLLM proxy: tests/litellm/run.sh"]
async fn litellm_streams_a_chat_reply_with_its_usage() {
    let (app, _upstream, proxy) = app_on_litellm().await;
    let body = json!({"project": "web", "persona": "software-engineer"});
    let res = app.call(Method::POST, "/api/v1/conversations", Some(&app.member), Some(body)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let url = format!("{}/api/v1/conversations/{id}/stream", app.base);
    let mut stream = SseClient::open(&url, &app.viewer, None).await;

    let path = format!("/api/v1/conversations/{id}/messages");
    let body = json!({"body": "Is there anything to change?"});
    let posted = app.call(Method::POST, &path, Some(&app.member), Some(body)).await;
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{:?}", posted.body);

    let mut frames = Vec::new();
    while !frames.last().is_some_and(|f: &Frame| f.event == "done" || f.event == "error") {
        frames.push(stream.next_event().await);
    }
    let ended = frames.last().unwrap();
    assert_eq!(ended.event, "done", "the reply failed: {}", ended.data);
    let text = said(&frames);
    // The mock's text, whole and in order: it parses back to the action it is.
    let actions = parse_reply(&text, &[]).unwrap_or_else(|e| panic!("{text:?}: {}", e.message));
    assert_eq!(actions, [Action::Done { summary: proxy.summary.clone() }], "{text}");
    let done = data(frames.last().unwrap());
    assert_eq!(done["state"], "complete", "{done}");
    let prompt = done["tokens"]["prompt"].as_i64().unwrap_or_default();
    let completion = done["tokens"]["completion"].as_i64().unwrap_or_default();
    assert!(prompt > 0 && completion > 0, "the proxy's usage chunk is counted: {done}");

    let path = format!("/api/v1/conversations/{id}");
    let shown = app.call(Method::GET, &path, Some(&app.viewer), None).await;
    let messages: &Value = &shown.body["messages"];
    assert_eq!(messages[1]["body"].as_str(), Some(text.as_str()), "{messages}");
}
