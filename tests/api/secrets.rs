//! Secrets never reach the log: a real `loom serve`, logging at debug for Loom itself, is
//! given a gateway key, a database URL with a password, a user's password at login, an API
//! token and a session on requests, and a gateway that refuses the key by echoing it back;
//! its whole log is then searched for every one of them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::PASSWORD;
use crate::support::chat::Pairing;
use crate::support::gateway::ScriptedGateway;
use crate::support::serve::Server;
use crate::support::sse::{SseClient, data};

const GATEWAY_KEY: &str = "sk-live-do-not-log-0a1b2c3d";
const DB_PASSWORD: &str = "db-password-do-not-log";

#[tokio::test]
async fn no_key_password_token_or_session_is_ever_logged() {
    let p = Pairing::new(|_| {}).await;
    // A gateway that wants another key, and says which one it got in its refusal.
    let refusing = ScriptedGateway::start().await;
    refusing.require_key("sk-the-right-one");
    let url = p.app.database_url().replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DB_PASSWORD}@"),
        1,
    );
    assert!(url.contains(DB_PASSWORD), "{url}");
    let env = [
        ("LOOM_GATEWAY_URL", refusing.url()),
        ("LOOM_GATEWAY_MODEL", "scripted-model".to_owned()),
        ("LOOM_GATEWAY_API_KEY", GATEWAY_KEY.to_owned()),
        ("LOOM_NO_EXECUTORS", "true".to_owned()),
        ("RUST_LOG", "info,loom=debug".to_owned()),
    ];
    let mut server = Server::start(&url, &env);
    let base = format!("http://127.0.0.1:{}", server.port().await);
    let http = reqwest::Client::new();

    // A password at login, an API token and a session cookie on requests.
    let login = |body: Value| http.post(format!("{base}/api/v1/auth/login")).json(&body).send();
    let token: Value = login(json!({"username": "member", "password": PASSWORD, "token": true}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let session = login(json!({"username": "member", "password": PASSWORD})).await.unwrap();
    let cookie = session.headers()["set-cookie"].to_str().unwrap().to_owned();
    let secret = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let wrong = login(json!({"username": "member", "password": "wrong-password-do-not-log"})).await;
    assert_eq!(wrong.unwrap().status(), StatusCode::UNAUTHORIZED);
    let me = http.get(format!("{base}/api/v1/auth/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    // A chat reply: the gateway refuses the key, echoing what it was sent.
    let conversation = p.conversation(None).await;
    let mut stream = SseClient::open(
        &format!("{base}/api/v1/conversations/{conversation}/stream"),
        &token,
        None,
    )
    .await;
    let posted = http
        .post(format!("{base}/api/v1/conversations/{conversation}/messages"))
        .bearer_auth(&token)
        .json(&json!({"body": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    let frames = stream.until("error").await;
    let error = data(frames.last().unwrap());
    // Refused (or, once the probe has seen the refusal, known to be unusable).
    let code = error["code"].as_str().unwrap();
    assert!(matches!(code, "gateway_rejected" | "gateway_unavailable"), "{error}");
    assert!(!error.to_string().contains(GATEWAY_KEY), "not in the stream either: {error}");

    server.terminate();
    let _ = tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await;
    let log = server.log();
    assert!(
        log.contains("gateway refused") || log.contains("chat reply failed"),
        "the refusal was logged:\n{log}"
    );
    for (what, secret) in [
        ("the gateway key", GATEWAY_KEY),
        ("the database password", DB_PASSWORD),
        ("a user's password", PASSWORD),
        ("a wrong password", "wrong-password-do-not-log"),
        ("an API token", token.as_str()),
        ("a session secret", secret.as_str()),
    ] {
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
}
