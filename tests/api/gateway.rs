//! The gateway client against the scripted OpenAI-compatible server: whole and streamed
//! replies, tool calls, retries and `Retry-After`, timeouts, garbage, cut streams, refusals,
//! health, and the record of every try. The key never leaks.

use std::time::{Duration, Instant};

use serde_json::json;

use loom::config::Secret;
use loom::gateway::retry::RetryPolicy;
use loom::gateway::{
    CallContext, Gateway, GatewayCall, GatewayConfig, GatewayError, Health, HealthState, Message,
    Tool,
};

use crate::support::db::TestDb;
use crate::support::gateway::{Reply, ScriptedGateway};

const KEY: &str = "sk-test-0123456789abcdef";

fn config(url: &str) -> GatewayConfig {
    let mut c = GatewayConfig::new(url, "test-model");
    c.api_key = Some(Secret::new(KEY));
    // Quick retries, so the tests do not wait out production back-offs.
    c.retry = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    // Every refusal sends its own canary (production shares one every few seconds).
    c.canary_interval = Duration::ZERO;
    c
}

struct Fixture {
    script: ScriptedGateway,
    gateway: Gateway,
    health: HealthState,
    db: TestDb,
}

async fn fixture(adjust: impl FnOnce(&mut GatewayConfig)) -> Fixture {
    let script = ScriptedGateway::start().await;
    script.require_key(KEY);
    let db = TestDb::new().await;
    let pool = loom::db::connect(&db.url, &loom::config::DbConfig::default()).await.unwrap();
    let health = HealthState::default();
    let mut c = config(&script.url());
    adjust(&mut c);
    let gateway = Gateway::new(c, health.clone(), Some(pool)).unwrap();
    Fixture { script, gateway, health, db }
}

impl Fixture {
    async fn calls(&self) -> Vec<GatewayCall> {
        let pool =
            loom::db::connect(&self.db.url, &loom::config::DbConfig::default()).await.unwrap();
        let mut calls = GatewayCall::recent(&mut pool.get().await.unwrap(), 100).await.unwrap();
        calls.reverse();
        calls
    }
}

fn ask() -> Vec<Message> {
    vec![Message::system("You are a test."), Message::user("Say hello.")]
}

fn tools() -> Vec<Tool> {
    vec![Tool::function(
        "read_file",
        "Read a file",
        json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    )]
}

#[tokio::test]
async fn whole_and_streamed_replies_carry_text_tool_calls_and_usage_and_every_try_is_recorded() {
    let f = fixture(|_| {}).await;
    let run = uuid::Uuid::now_v7();
    let ctx = CallContext { run_id: Some(run), agent_id: None };
    f.script.push(Reply::text("Hello there, friend.").tokens(30, 7));
    f.script.push(Reply::text("Streamed hello, in pieces.").tokens(31, 8));
    f.script.push(Reply::tool_call("read_file", json!({"path": "src/lib.rs"})));
    f.script.push(Reply::tool_call("read_file", json!({"path": "README.md"})));

    let whole = f.gateway.complete(&ask(), &[], ctx).await.unwrap();
    assert_eq!(whole.content, "Hello there, friend.");
    assert_eq!((whole.usage.prompt_tokens, whole.usage.completion_tokens), (30, 7));
    assert_eq!(f.health.get(), Health::Healthy);

    let mut pieces = Vec::new();
    let streamed =
        f.gateway.stream(&ask(), &[], ctx, &mut |t: &str| pieces.push(t.to_owned())).await.unwrap();
    assert!(pieces.len() > 1, "the text arrives in pieces: {pieces:?}");
    assert_eq!(pieces.concat(), "Streamed hello, in pieces.");
    assert_eq!(streamed.content, pieces.concat());
    assert_eq!((streamed.usage.prompt_tokens, streamed.usage.completion_tokens), (31, 8));

    let called = f.gateway.complete(&ask(), &tools(), ctx).await.unwrap();
    assert_eq!(called.tool_calls.len(), 1);
    assert_eq!(called.tool_calls[0].function.name, "read_file");
    assert_eq!(called.tool_calls[0].function.arguments, r#"{"path":"src/lib.rs"}"#);
    let called = f.gateway.stream(&ask(), &tools(), ctx, &mut |_: &str| {}).await.unwrap();
    assert_eq!(called.tool_calls[0].function.arguments, r#"{"path":"README.md"}"#);
    assert_eq!(called.finish_reason.as_deref(), Some("tool_calls"));

    // What went over the wire: the model, the messages, the stream flag, the tools, the key.
    let sent = f.script.completions();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0]["model"], "test-model");
    assert_eq!(sent[0]["messages"][1], json!({"role": "user", "content": "Say hello."}));
    assert_eq!(
        (sent[0]["stream"].as_bool(), sent[1]["stream"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(sent[1]["stream_options"]["include_usage"], true);
    assert!(sent[0].get("tools").is_none());
    assert_eq!(sent[2]["tools"][0]["function"]["name"], "read_file");
    let auth: Vec<_> = f.script.received().into_iter().map(|r| r.authorization).collect();
    assert!(auth.iter().all(|a| a.as_deref() == Some(&*format!("Bearer {KEY}"))));

    let calls = f.calls().await;
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.ok && c.run_id == Some(run) && c.attempt == 1));
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.streamed, c.prompt_tokens, c.completion_tokens))
            .collect::<Vec<_>>(),
        [(false, 30, 7), (true, 31, 8), (false, 100, 20), (true, 100, 20)]
    );
    assert_eq!(calls[0].model, "scripted", "the model that answered is recorded");
    assert_eq!(GatewayCall::for_run(&mut f_conn(&f).await, run).await.unwrap().len(), 4);
}

async fn f_conn(f: &Fixture) -> diesel_async::AsyncPgConnection {
    use diesel_async::AsyncConnection;
    diesel_async::AsyncPgConnection::establish(&f.db.url).await.unwrap()
}

#[tokio::test]
async fn transient_failures_are_retried_honouring_retry_after_and_leave_the_gateway_degraded() {
    let f = fixture(|_| {}).await;
    f.script.push(Reply::status(429).retry_after("1"));
    f.script.push(Reply::status(502));
    f.script.push(Reply::text("at last"));
    let started = Instant::now();
    let reply = f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap();
    assert_eq!(reply.content, "at last");
    assert!(started.elapsed() >= Duration::from_secs(1), "the client waited as Retry-After asked");
    assert_eq!(f.health.get(), Health::Degraded);
    let calls = f.calls().await;
    assert_eq!(
        calls.iter().map(|c| (c.attempt, c.ok, c.http_status)).collect::<Vec<_>>(),
        [(1, false, Some(429)), (2, false, Some(502)), (3, true, Some(200))]
    );
    // A clean answer makes it healthy again.
    f.script.push(Reply::text("fine"));
    f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap();
    assert_eq!(f.health.get(), Health::Healthy);
}

#[tokio::test]
async fn a_gateway_failing_every_try_is_down_until_the_probe_sees_it_back() {
    let f = fixture(|_| {}).await;
    f.script.fallback(Reply::status(503));
    let err = f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert_eq!(f.script.completions().len(), 3, "max_attempts tries, no more");
    assert_eq!(f.health.get(), Health::Down);
    assert!(f.health.report().reason.unwrap().contains("503"));

    // A Retry-After longer than is worth waiting ends the call at once.
    let f2 = fixture(|_| {}).await;
    f2.script.push(Reply::status(429).retry_after("3600"));
    let err = f2.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert_eq!(f2.script.completions().len(), 1);

    f.script.set_down(true);
    assert_eq!(f.gateway.probe().await, Health::Down);
    // `/models` answering is not enough while completions fail: the probe's canary (a
    // one-word completion) must be answered first.
    f.script.set_down(false);
    assert_eq!(f.gateway.probe().await, Health::Down);
    assert_eq!(f.script.canaries(), 1);
    f.script.fallback(Reply::text("back"));
    assert_eq!(f.gateway.probe().await, Health::Healthy);
    assert_eq!(f.health.report().reason, None);
}

#[tokio::test]
async fn a_refused_request_is_not_retried_and_the_key_never_shows() {
    let script = ScriptedGateway::start().await;
    script.require_key("sk-the-right-one");
    let health = HealthState::default();
    let db = TestDb::new().await;
    let pool = loom::db::connect(&db.url, &loom::config::DbConfig::default()).await.unwrap();
    let gateway = Gateway::new(config(&script.url()), health.clone(), Some(pool.clone())).unwrap();
    // The scripted server echoes the wrong key in its 401, as real gateways sometimes do.
    let err = gateway.complete(&ask(), &[], CallContext::default()).await.unwrap_err();
    let GatewayError::Rejected { status, message } = &err else { panic!("{err:?}") };
    assert_eq!(*status, 401);
    assert!(message.contains("Incorrect API key"), "{message}");
    assert_eq!(script.completions().len(), 1, "a refusal is not retried");
    // No call can work until a person fixes the key: runs park rather than fail.
    assert_eq!(health.get(), Health::Down);
    let recorded = GatewayCall::recent(&mut pool.get().await.unwrap(), 10).await.unwrap();
    let texts = [
        err.to_string(),
        format!("{err:?}"),
        format!("{gateway:?}"),
        format!("{:?}", health.report()),
        format!("{recorded:?}"),
    ];
    for t in texts {
        assert!(!t.contains(KEY), "the key leaked: {t}");
    }
    assert_eq!(gateway.probe().await, Health::Down);

    // The request's own fault (400) is not the gateway's: it stays healthy.
    let f = fixture(|_| {}).await;
    f.script.push(Reply::status_with(400, "context length exceeded"));
    let err = f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap_err();
    assert_eq!(
        err,
        GatewayError::Rejected { status: 400, message: "context length exceeded".into() }
    );
    assert_eq!(f.health.get(), Health::Healthy);
}

#[tokio::test]
async fn garbage_and_streams_cut_before_any_text_are_retried_but_a_stream_cut_mid_text_is_not() {
    let f = fixture(|_| {}).await;
    f.script.push(Reply::garbage());
    f.script.push(Reply::text("clean"));
    assert_eq!(
        f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap().content,
        "clean"
    );

    f.script.push(Reply::cut_stream(""));
    f.script.push(Reply::text("second try"));
    let reply = f.gateway.stream(&ask(), &[], CallContext::default(), &mut |_: &str| {}).await;
    assert_eq!(reply.unwrap().content, "second try");

    f.script.push(Reply::cut_stream("half a thou"));
    f.script.push(Reply::text("never asked for"));
    let mut shown = String::new();
    let err = f
        .gateway
        .stream(&ask(), &[], CallContext::default(), &mut |t: &str| shown.push_str(t))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert_eq!(shown, "half a thou");
    assert_eq!(f.script.left(), 1, "text already shown is not asked for again");

    let left = f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap();
    assert_eq!(left.content, "never asked for");
    // Every try is answered garbage: out of tries, that is an outage.
    f.script.fallback(Reply::garbage());
    let err = f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn slow_replies_and_silent_streams_time_out_and_are_tried_again() {
    let f = fixture(|c| {
        c.request_timeout = Duration::from_millis(300);
        c.stream_idle_timeout = Duration::from_millis(300);
    })
    .await;
    f.script.push(Reply::text("too late").delay(Duration::from_secs(3)));
    f.script.push(Reply::text("in time"));
    assert_eq!(
        f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap().content,
        "in time"
    );
    // Keep-alive comments alone are not progress.
    f.script.push(Reply::keep_alive_only(3));
    f.script.push(Reply::text("awake"));
    let reply = f.gateway.stream(&ask(), &[], CallContext::default(), &mut |_: &str| {}).await;
    assert_eq!(reply.unwrap().content, "awake");
    f.script.push(Reply::text("trickle").chunk_delay(Duration::from_secs(3)));
    f.script.push(Reply::text("brisk"));
    let reply = f.gateway.stream(&ask(), &[], CallContext::default(), &mut |_: &str| {}).await;
    assert_eq!(reply.unwrap().content, "brisk");
    let failed: Vec<_> = f.calls().await.into_iter().filter(|c| !c.ok).collect();
    assert_eq!(failed.len(), 3);
    assert!(
        failed.iter().all(|c| c.error.as_deref().unwrap_or("").contains("timed out")
            || c.error.as_deref().unwrap_or("").contains("sent nothing")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_whole_reply_may_take_longer_than_a_stream_may_stay_silent() {
    let f = fixture(|c| {
        c.request_timeout = Duration::from_secs(10);
        c.stream_idle_timeout = Duration::from_millis(200);
    })
    .await;
    f.script.push(Reply::text("thought hard").delay(Duration::from_millis(700)));
    let reply = f.gateway.complete(&ask(), &[], CallContext::default()).await.unwrap();
    assert_eq!(reply.content, "thought hard");
    // A stream whose headers do not come within the idle time is tried again.
    f.script.push(Reply::text("late").delay(Duration::from_millis(700)));
    f.script.push(Reply::text("prompt"));
    let reply = f.gateway.stream(&ask(), &[], CallContext::default(), &mut |_: &str| {}).await;
    assert_eq!(reply.unwrap().content, "prompt");
}

#[tokio::test]
async fn an_error_chunk_mid_stream_fails_the_call_instead_of_passing_as_an_empty_reply() {
    let f = fixture(|_| {}).await;
    f.script.push(Reply::fail_mid_stream("", "upstream overloaded"));
    f.script.push(Reply::text("second try"));
    let reply = f.gateway.stream(&ask(), &[], CallContext::default(), &mut |_: &str| {}).await;
    assert_eq!(reply.unwrap().content, "second try", "nothing was shown: tried again");
    f.script.push(Reply::fail_mid_stream("half an ans", "upstream overloaded"));
    f.script.push(Reply::text("never asked for"));
    let err =
        f.gateway.stream(&ask(), &[], CallContext::default(), &mut |_: &str| {}).await.unwrap_err();
    assert_eq!(err, GatewayError::Unavailable("mid-stream: upstream overloaded".into()));
    assert_eq!(f.script.left(), 1);
}

#[tokio::test]
async fn a_gateway_nobody_listens_on_is_down_after_the_tries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let health = HealthState::default();
    let gateway =
        Gateway::new(config(&format!("http://127.0.0.1:{port}/v1")), health.clone(), None).unwrap();
    let err = gateway.complete(&ask(), &[], CallContext::default()).await.unwrap_err();
    assert_eq!(err, GatewayError::Unavailable("could not connect (127.0.0.1)".into()));
    assert_eq!(health.get(), Health::Down);
    assert_eq!(gateway.probe().await, Health::Down);
    assert!(Gateway::new(config("not a url"), HealthState::default(), None).is_err());
}

#[tokio::test]
async fn the_status_endpoint_reports_the_gateway_as_the_probe_sees_it_without_the_key() {
    let bare = crate::support::spawn().await;
    let status = bare.get("/api/v1/status").await.body;
    assert_eq!(status["gateway"]["configured"], false);
    assert!(status["gateway"]["reason"].as_str().unwrap().contains("LOOM_GATEWAY_URL"));

    let script = ScriptedGateway::start().await;
    script.require_key(KEY);
    let url = script.url();
    let app = crate::support::spawn_with(|c| {
        let mut gw = config(&url);
        gw.probe_interval = Duration::from_millis(100);
        c.gateway = Some(gw);
    })
    .await;
    let health = async || app.get("/api/v1/status").await.body["gateway"].clone();
    // The probe runs at start and then every 100 ms here; wait for it (bounded).
    let mut seen = health().await;
    for _ in 0..100 {
        if seen["health"] == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = health().await;
    }
    assert_eq!(
        (seen["configured"].as_bool(), seen["model"].as_str(), seen["health"].as_str()),
        (Some(true), Some("test-model"), Some("healthy"))
    );
    script.set_down(true);
    for _ in 0..100 {
        seen = health().await;
        if seen["health"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen["health"], "down");
    assert!(seen["reason"].as_str().unwrap().contains("503"), "{seen}");
    assert!(!seen.to_string().contains(KEY));
    assert!(script.received().iter().any(|r| r.path == "/v1/models"));
}
