//! The LLM gateway: one OpenAI-compatible endpoint. `Gateway` calls `<base>/chat/completions`
//! (whole or streamed, text or native tool calls) with retries, timeouts and a health state
//! that real calls and a periodic probe keep current; every try is recorded for analytics.
//! The API key is a `Secret`: it goes into one request header and nowhere else.

mod calls;
mod canary;
mod client;
mod error;
mod health;
mod outage;
mod probe;
pub mod retry;
mod sse;
pub mod wire;

pub use calls::GatewayCall;
pub use client::{CallContext, Gateway, GatewayConfig};
pub use error::GatewayError;
pub use health::{Health, HealthReport, HealthState};
pub use outage::{record_if_news, record_outages};
pub use wire::{Completion, Message, Role, Tool, ToolCall, Usage};
