//! Outages in the history: when the gateway goes down or comes back, a `gateway.health`
//! activity row says so (people are notified from it). What counts is the last row stored,
//! not this process's memory: a replica that restarts during an outage announces its end,
//! and several replicas seeing the same change write one row.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

use super::{Health, HealthReport, HealthState};
use crate::activity::{Activity, Actor, Record};
use crate::db::schema::activity;
use crate::db::{Conn, Pool};
use crate::error::Error;
use crate::events::{Bus, Kind};

/// Serialises replicas deciding whether a change is news.
const LOCK: i64 = 4_242_424_205;

/// Up or down, as people hear of it; `None` when nothing is known yet.
pub fn is_up(h: Health) -> Option<bool> {
    match h {
        Health::Unknown => None,
        Health::Down => Some(false),
        Health::Healthy | Health::Degraded => Some(true),
    }
}

/// Records outages until cancelled: one row when the gateway goes down, and one when it
/// has been up again for `stable_up` without a fall in between. A gateway that goes up and
/// down (a probe answering while every call fails) is one outage, told once each way.
pub async fn record_outages(
    pool: Pool,
    health: HealthState,
    bus: Bus,
    stable_up: std::time::Duration,
    cancel: CancellationToken,
) {
    let mut changes = health.watch();
    // Up, not said yet: since when, and as it was then.
    let mut rising: Option<(tokio::time::Instant, HealthReport)> = None;
    loop {
        let said_up = async {
            match &rising {
                Some((since, _)) => tokio::time::sleep_until(*since + stable_up).await,
                None => std::future::pending().await,
            }
        };
        let (up, report) = tokio::select! {
            _ = cancel.cancelled() => return,
            () = said_up => match rising.take() {
                Some((_, report)) => (true, report),
                None => continue,
            },
            changed = changes.changed() => {
                if changed.is_err() { return }
                let now: HealthReport = changes.borrow_and_update().clone();
                match is_up(now.health) {
                    None => continue,
                    Some(true) => {
                        if rising.is_none() {
                            rising = Some((tokio::time::Instant::now(), now));
                        }
                        continue;
                    }
                    Some(false) => {
                        rising = None;
                        (false, now)
                    }
                }
            }
        };
        match record_if_news(&pool, up, &report).await {
            Ok(true) => bus.committed(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not record the gateway's change of health"),
        }
    }
}

/// Writes a `gateway.health` row when `up` differs from the last one stored (or, with none
/// stored, when the gateway is down). True when it wrote one.
pub async fn record_if_news(pool: &Pool, up: bool, now: &HealthReport) -> crate::Result<bool> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, Error, _>(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(LOCK)
            .execute(conn)
            .await?;
        let was = last_stored(conn).await?;
        if was.unwrap_or(true) == up {
            return Ok(false);
        }
        let data = serde_json::json!({ "healthy": up, "health": now.health, "reason": now.reason });
        Activity::record(
            conn,
            Record {
                kind: Kind::GatewayHealth,
                project_id: None,
                bead_id: None,
                actor: Actor::System,
                data,
            },
        )
        .await?;
        Ok(true)
    })
    .await
}

async fn last_stored(conn: &mut Conn) -> crate::Result<Option<bool>> {
    let data: Option<serde_json::Value> = activity::table
        .filter(activity::kind.eq(Kind::GatewayHealth.as_str()))
        .order(activity::id.desc())
        .select(activity::data)
        .first(conn)
        .await
        .optional()?;
    Ok(data.and_then(|d| d["healthy"].as_bool()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_is_up_and_unknown_is_not_news() {
        assert_eq!(is_up(Health::Down), Some(false));
        assert_eq!(is_up(Health::Degraded), Some(true));
        assert_eq!(is_up(Health::Healthy), Some(true));
        assert_eq!(is_up(Health::Unknown), None);
    }
}
