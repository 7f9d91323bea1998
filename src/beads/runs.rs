//! Runs of agents on beads and their steps, as the executor records them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use crate::db::Conn;
use crate::db::schema::{run_steps, runs};
use crate::error::{Error, Result};

crate::db_enum!(
    /// How a run ended. Everything but `success` counts as a failed attempt, except
    /// `cancelled`, `gateway_unavailable` and `sandbox_unavailable`, which are not the bead's
    /// fault.
    RunOutcome, RunOutcome, "snake_case", {
    Success => "success",
    Failed => "failed",
    LeaseExpired => "lease_expired",
    InvalidReplies => "invalid_replies",
    LoopDetected => "loop_detected",
    TurnLimit => "turn_limit",
    TokenBudget => "token_budget",
    GatewayUnavailable => "gateway_unavailable",
    NeedsHuman => "needs_human",
    MergeConflict => "merge_conflict",
    Cancelled => "cancelled",
    SandboxUnavailable => "sandbox_unavailable",
});

/// What a run is for.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    utoipa::ToSchema,
    diesel::AsExpression,
    diesel::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// An agent works on the bead in its worktree (`in_progress`).
    #[default]
    Work,
    /// An agent reviews the work of a bead in `review` and approves it or asks for changes;
    /// the bead stays in review meanwhile and no attempt is charged.
    Review,
}

crate::pg_enum!(RunKind, diesel::sql_types::Text, { Work => "work", Review => "review" });

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = runs)]
pub struct Run {
    pub id: Uuid,
    #[serde(rename = "bead")]
    pub bead_id: String,
    #[serde(rename = "agent")]
    pub agent_id: Option<Uuid>,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<RunOutcome>,
    pub turns: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub error: Option<String>,
    /// What the agent said it did, when it finished.
    pub summary: Option<String>,
    /// The project-branch commit its work was merged as.
    pub merged_sha: Option<String>,
    pub kind: RunKind,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = run_steps)]
pub struct RunStep {
    pub id: i64,
    #[serde(skip)]
    pub run_id: Uuid,
    pub turn: i32,
    pub action: serde_json::Value,
    pub ok: bool,
    pub result: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunWithSteps {
    #[serde(flatten)]
    pub run: Run,
    pub steps: Vec<RunStep>,
}

impl Run {
    /// The run, locked, while it is open; `None` once it has ended.
    pub(crate) async fn lock_open(conn: &mut Conn, id: Uuid) -> Result<Option<Run>> {
        Ok(runs::table
            .find(id)
            .filter(runs::outcome.is_null())
            .select(Run::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?)
    }

    /// A bead's runs, newest first.
    pub async fn for_bead(conn: &mut Conn, bead_id: &str) -> Result<Vec<Run>> {
        Ok(runs::table
            .filter(runs::bead_id.eq(bead_id))
            .order(runs::started_at.desc())
            .limit(200)
            .select(Run::as_select())
            .load(conn)
            .await?)
    }

    pub async fn with_steps(conn: &mut Conn, id: Uuid) -> Result<RunWithSteps> {
        let run = runs::table
            .find(id)
            .select(Run::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("run {id}")))?;
        let steps = run_steps::table
            .filter(run_steps::run_id.eq(id))
            .order(run_steps::id.asc())
            .select(RunStep::as_select())
            .load(conn)
            .await?;
        Ok(RunWithSteps { run, steps })
    }
}
