//! The OpenAPI document says what the API really sends (what schemathesis, in
//! tests/schemathesis, checks at large): each regression it found has a test here.

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use loom::agents::AgentStatus;
use loom::beads::{BeadStatus, BeadType, BlockedReason, RunOutcome};
use loom::chat::{ChatRole, ChatState, ConversationStatus};
use loom::projects::RepoState;

use crate::support::spawn;

async fn document() -> Value {
    let app = spawn().await;
    app.call(Method::GET, "/api/openapi.json", None, None).await.body
}

/// What serde writes for each variant.
fn wire<T: Serialize>(all: &[T]) -> Value {
    all.iter().map(|v| serde_json::to_value(v).unwrap()).collect()
}

#[tokio::test]
async fn the_database_backed_enums_are_documented_as_sent() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let expected = [
        ("AgentStatus", wire(AgentStatus::ALL)),
        ("BeadStatus", wire(BeadStatus::ALL)),
        ("BeadType", wire(BeadType::ALL)),
        ("BlockedReason", wire(BlockedReason::ALL)),
        ("RunOutcome", wire(RunOutcome::ALL)),
        ("ChatRole", wire(ChatRole::ALL)),
        ("ChatState", wire(ChatState::ALL)),
        ("ConversationStatus", wire(ConversationStatus::ALL)),
        ("RepoState", wire(RepoState::ALL)),
    ];
    for (name, values) in expected {
        assert_eq!(schemas[name]["enum"], values, "{name}");
    }
    assert_eq!(schemas["BeadStatus"]["enum"][1], "in_progress");
}

#[tokio::test]
async fn no_documented_enum_names_a_value_in_rust_case() {
    let doc = document().await;
    let mut rust_case = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for value in schema["enum"].as_array().into_iter().flatten() {
            if value.as_str().is_some_and(|v| v.chars().any(char::is_uppercase)) {
                rust_case.push(format!("{name}: {value}"));
            }
        }
    }
    assert!(rust_case.is_empty(), "{rust_case:?}");
}

#[tokio::test]
async fn the_bodies_close_and_reopen_do_without_are_documented_as_optional() {
    let doc = document().await;
    for path in ["/api/v1/beads/{id}/close", "/api/v1/beads/{id}/reopen"] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert!(body["content"]["application/json"].is_object(), "{path}");
        assert_ne!(body["required"], true, "{path}");
    }
    assert_eq!(doc["paths"]["/api/v1/beads/{id}/block"]["post"]["requestBody"]["required"], true);
}
