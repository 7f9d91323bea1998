//! The record of every try at the gateway (`gateway_calls`): tokens and latency for analytics
//! and spend limits, failures for diagnosis.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use super::client::CallContext;
use super::wire::Completion;
use crate::db::schema::gateway_calls;
use crate::db::{Conn, Pool};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = gateway_calls)]
pub(crate) struct NewCall {
    run_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    model: String,
    attempt: i32,
    streamed: bool,
    ok: bool,
    http_status: Option<i16>,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency_ms: i64,
    error: Option<String>,
}

/// A stored call.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = gateway_calls)]
pub struct GatewayCall {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub run_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub model: String,
    pub attempt: i32,
    pub streamed: bool,
    pub ok: bool,
    pub http_status: Option<i16>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub latency_ms: i64,
    pub error: Option<String>,
}

impl GatewayCall {
    pub(crate) fn ok(
        ctx: CallContext,
        model: &str,
        attempt: u32,
        streamed: bool,
        latency_ms: i64,
        completion: &Completion,
    ) -> NewCall {
        NewCall {
            run_id: ctx.run_id,
            agent_id: ctx.agent_id,
            // The model that answered, when the gateway says.
            model: completion.model.clone().unwrap_or_else(|| model.to_owned()),
            attempt: attempt as i32,
            streamed,
            ok: true,
            http_status: Some(200),
            prompt_tokens: completion.usage.prompt_tokens as i64,
            completion_tokens: completion.usage.completion_tokens as i64,
            latency_ms,
            error: None,
        }
    }

    pub(crate) fn failed(
        ctx: CallContext,
        model: &str,
        attempt: u32,
        streamed: bool,
        latency_ms: i64,
        http_status: Option<u16>,
        error: &str,
    ) -> NewCall {
        NewCall {
            run_id: ctx.run_id,
            agent_id: ctx.agent_id,
            model: model.to_owned(),
            attempt: attempt as i32,
            streamed,
            ok: false,
            http_status: http_status.map(|s| s as i16),
            prompt_tokens: 0,
            completion_tokens: 0,
            latency_ms,
            error: Some(error.to_owned()),
        }
    }

    /// The calls made for a run, oldest first.
    pub async fn for_run(conn: &mut Conn, run_id: Uuid) -> Result<Vec<GatewayCall>> {
        Ok(gateway_calls::table
            .filter(gateway_calls::run_id.eq(run_id))
            .order(gateway_calls::id)
            .select(GatewayCall::as_select())
            .load(conn)
            .await?)
    }

    /// The newest calls, newest first (for tests and diagnosis).
    pub async fn recent(conn: &mut Conn, limit: i64) -> Result<Vec<GatewayCall>> {
        Ok(gateway_calls::table
            .order(gateway_calls::id.desc())
            .limit(limit)
            .select(GatewayCall::as_select())
            .load(conn)
            .await?)
    }
}

/// Writes call records. A record that cannot be written is logged and dropped: analytics
/// must never fail the call it describes.
pub(crate) struct Recorder(Option<Pool>);

impl Recorder {
    pub fn new(pool: Option<Pool>) -> Recorder {
        Recorder(pool)
    }

    pub async fn record(&self, call: NewCall) {
        let Some(pool) = &self.0 else { return };
        let written = async {
            let mut conn = pool.get().await?;
            diesel::insert_into(gateway_calls::table).values(&call).execute(&mut conn).await?;
            Ok::<_, crate::error::Error>(())
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, "could not record a gateway call");
        }
    }
}
