//! The ticker's healing jobs, each stepped directly against a real database, and the
//! scheduler that runs them on their cron schedules.

use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use serde_json::json;
use uuid::Uuid;

use loom::beads::{AfterRun, Bead, RetryPolicy, RunOutcome};
use loom::dispatch::Nudge;
use loom::gateway::{Health, HealthState};
use loom::ticker::{Pass, Ticker, TickerConfig};

use crate::support::{TestApp, spawn};

const NO_WAIT: RetryPolicy =
    RetryPolicy { base: Duration::ZERO, cap: Duration::ZERO, park_base: Duration::ZERO };

fn ticker(app: &TestApp, gateway: &HealthState) -> Ticker {
    Ticker::new(app.pool.clone(), NO_WAIT, gateway.clone(), Nudge::default())
}

async fn agent(app: &TestApp, name: &str) -> Uuid {
    let res =
        app.post("/api/v1/agents", json!({"name": name, "persona": "software-engineer"})).await;
    res.body["id"].as_str().unwrap().parse().unwrap()
}

async fn sql(app: &TestApp, statements: &str) {
    app.pool.get().await.unwrap().batch_execute(statements).await.unwrap();
}

async fn activity_kinds(app: &TestApp, bead: &str) -> Vec<String> {
    let mut conn = app.pool.get().await.unwrap();
    loom::activity::Activity::for_bead(&mut conn, bead, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect()
}

#[tokio::test]
async fn an_expired_lease_returns_the_bead_counts_the_attempt_and_frees_the_agent() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "stalls", json!({})).await;
    let live = app.bead("web", "alive", json!({})).await;
    let bob = agent(&app, "bob").await;
    let mut conn = app.pool.get().await.unwrap();
    let claim = Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    Bead::claim(&mut conn, &live, bob, Duration::from_secs(60)).await.unwrap().unwrap();
    sql(
        &app,
        &format!(
            "UPDATE beads SET lease_expires_at = now() - interval '1 second' WHERE id = '{bead}'"
        ),
    )
    .await;

    let gateway = HealthState::default();
    let pass = ticker(&app, &gateway).expire_leases().await.unwrap();
    assert_eq!(pass, Pass { seen: 1, healed: 1 }, "only the lapsed lease is touched");
    let b = app.show(&bead).await;
    assert_eq!((b["status"].as_str(), b["attempts"].as_i64()), (Some("open"), Some(1)));
    assert_eq!(b["runs"][0]["outcome"], "lease_expired");
    assert_eq!(app.get(&format!("/api/v1/agents/{ada}")).await.body["status"], "idle");
    assert_eq!(app.show(&live).await["status"], "in_progress");
    assert_eq!(app.get(&format!("/api/v1/agents/{bob}")).await.body["status"], "working");
    assert!(activity_kinds(&app, &bead).await.contains(&"ticker.healed".to_owned()));
    // the run that lost its lease cannot renew it or end it a second time, not even once the
    // same agent holds the bead again under a new run
    assert!(!Bead::renew_lease(&mut conn, &claim, Duration::from_secs(60)).await.unwrap());
    sql(&app, "UPDATE beads SET not_before = NULL").await;
    let again = Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    assert!(!Bead::renew_lease(&mut conn, &claim, Duration::from_secs(60)).await.unwrap());
    assert!(Bead::renew_lease(&mut conn, &again, Duration::from_secs(60)).await.unwrap());
    assert_eq!(
        Bead::release(&mut conn, claim.run_id, RunOutcome::Success, None, NO_WAIT).await.unwrap(),
        None
    );
    assert_eq!(
        ticker(&app, &gateway).expire_leases().await.unwrap(),
        Pass::default(),
        "nothing left"
    );
}

#[tokio::test]
async fn a_lease_renewed_after_the_scan_is_left_alone() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "slow but alive", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    let claim = Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    sql(
        &app,
        &format!(
            "UPDATE beads SET lease_expires_at = now() - interval '1 second' WHERE id = '{bead}'"
        ),
    )
    .await;
    let scanned = Bead::expired_leases(&mut conn, 10).await.unwrap();
    assert_eq!(scanned, [bead.clone()]);
    assert!(Bead::renew_lease(&mut conn, &claim, Duration::from_secs(60)).await.unwrap());
    assert_eq!(Bead::expire_lease(&mut conn, &bead, NO_WAIT).await.unwrap(), None);
    assert_eq!(app.show(&bead).await["status"], "in_progress");
}

#[tokio::test]
async fn leases_that_keep_expiring_end_in_too_many_attempts() {
    let app = spawn().await;
    app.project("web").await;
    sql(&app, "UPDATE projects SET max_attempts = 2").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "always stalls", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    let gateway = HealthState::default();
    let mut afters = Vec::new();
    for _ in 0..2 {
        Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
        sql(&app, "UPDATE beads SET lease_expires_at = now() - interval '1 second'").await;
        let lapsed = Bead::expired_leases(&mut conn, 10).await.unwrap();
        afters
            .push(Bead::expire_lease(&mut conn, &lapsed[0], NO_WAIT).await.unwrap().unwrap().after);
    }
    assert_eq!(
        afters,
        [
            AfterRun::Retry { attempts: 1 },
            AfterRun::Blocked(loom::beads::BlockedReason::TooManyAttempts)
        ]
    );
    assert_eq!(app.show(&bead).await["blocked_reason"], "too_many_attempts");
    assert_eq!(ticker(&app, &gateway).expire_leases().await.unwrap(), Pass::default());
}

#[tokio::test]
async fn a_bead_in_progress_without_a_run_is_returned_and_its_agent_freed() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "orphaned", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    // what a hand edit or a restore from an old backup could leave behind
    sql(&app, "DELETE FROM runs; UPDATE beads SET lease_expires_at = now() - interval '1 second'")
        .await;
    let pass = ticker(&app, &HealthState::default()).expire_leases().await.unwrap();
    assert_eq!(pass.healed, 1);
    let b = app.show(&bead).await;
    assert_eq!(
        (b["status"].as_str(), b["attempts"].as_i64(), b["assignee"].is_null()),
        (Some("open"), Some(1), true)
    );
    assert_eq!(app.get(&format!("/api/v1/agents/{ada}")).await.body["status"], "idle");
}

#[tokio::test]
async fn agents_working_without_a_live_claim_are_set_idle_and_real_work_is_untouched() {
    let app = spawn().await;
    app.project("web").await;
    let zombie = agent(&app, "zombie").await;
    let stray = agent(&app, "stray").await;
    let busy = agent(&app, "busy").await;
    let bead = app.bead("web", "real work", json!({})).await;
    let other = app.bead("web", "taken back", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    Bead::claim(&mut conn, &bead, busy, Duration::from_secs(60)).await.unwrap().unwrap();
    let lost =
        Bead::claim(&mut conn, &other, stray, Duration::from_secs(60)).await.unwrap().unwrap();
    // zombie: marked working with no run at all; stray: its run's bead was given to nobody
    sql(&app, &format!(
        "UPDATE agents SET status = 'working' WHERE id = '{zombie}';
         UPDATE beads SET status = 'open', assignee_agent_id = NULL, lease_expires_at = NULL WHERE id = '{other}'"
    ))
    .await;
    let pass = ticker(&app, &HealthState::default()).free_zombies().await.unwrap();
    assert_eq!(pass, Pass { seen: 2, healed: 2 });
    for (id, status) in [(zombie, "idle"), (stray, "idle"), (busy, "working")] {
        assert_eq!(app.get(&format!("/api/v1/agents/{id}")).await.body["status"], status, "{id}");
    }
    let run = app.get(&format!("/api/v1/runs/{}", lost.run_id)).await;
    assert_eq!(
        run.body["outcome"], "cancelled",
        "the stray run is closed without charging the bead"
    );
    assert_eq!(app.show(&other).await["attempts"], 0);
    assert_eq!(
        ticker(&app, &HealthState::default()).free_zombies().await.unwrap(),
        Pass::default()
    );
}

#[tokio::test]
async fn beads_parked_for_the_gateway_reopen_only_once_it_is_healthy_keeping_their_attempts() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "needs the model", json!({})).await;
    let manual = app.bead("web", "held by a person", json!({})).await;
    app.post(&format!("/api/v1/beads/{manual}/block"), json!({"reason": "wait for the design"}))
        .await;
    let mut conn = app.pool.get().await.unwrap();
    let claim = Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    let parked = Bead::release(
        &mut conn,
        claim.run_id,
        RunOutcome::GatewayUnavailable,
        Some("503".into()),
        NO_WAIT,
    )
    .await
    .unwrap();
    assert!(matches!(parked, Some(AfterRun::Blocked(_))));

    // earlier failures are on its record; being parked must not wipe them
    sql(&app, &format!("UPDATE beads SET attempts = 2 WHERE id = '{bead}'")).await;
    let gateway = HealthState::default();
    let t = ticker(&app, &gateway);
    for health in [Health::Unknown, Health::Down, Health::Degraded] {
        gateway.set(health);
        assert_eq!(t.resume_parked().await.unwrap(), Pass::default(), "{health:?}");
        assert_eq!(app.show(&bead).await["status"], "blocked");
    }
    gateway.set(Health::Healthy);
    assert_eq!(t.resume_parked().await.unwrap(), Pass { seen: 1, healed: 1 });
    let b = app.show(&bead).await;
    assert_eq!((b["status"].as_str(), b["attempts"].as_i64()), (Some("open"), Some(2)));
    assert_eq!(
        app.ready_ids("web").await,
        [bead.clone()],
        "back in the queue; the manual block stays"
    );
    assert!(activity_kinds(&app, &bead).await.contains(&"ticker.healed".to_owned()));
}

#[tokio::test]
async fn the_scheduler_runs_the_jobs_on_their_cron_schedules() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "stalls", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    sql(&app, "UPDATE beads SET lease_expires_at = now() - interval '1 second'").await;
    let every_second = "* * * * * *".to_owned();
    let config = TickerConfig {
        expire_leases: every_second.clone(),
        free_zombies: every_second.clone(),
        resume_parked: every_second.clone(),
        schedules: every_second,
    };
    let mut scheduler = ticker(&app, &HealthState::default()).start(&config).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.show(&bead).await["status"] != "open" {
        assert!(std::time::Instant::now() < deadline, "the scheduled job never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scheduler.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_ticker_schedule_is_refused_at_start_naming_the_job() {
    let app = spawn().await;
    let config = TickerConfig { free_zombies: "every minute".into(), ..TickerConfig::default() };
    let err = ticker(&app, &HealthState::default()).start(&config).await.err().unwrap();
    assert!(format!("{err:#}").contains("free_zombies"), "{err:#}");
}

#[tokio::test]
async fn an_agent_claimed_between_the_scan_and_the_heal_keeps_its_work() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "fresh work", json!({})).await;
    sql(&app, &format!("UPDATE agents SET status = 'working' WHERE id = '{ada}'")).await;
    let mut conn = app.pool.get().await.unwrap();
    assert_eq!(loom::beads::zombie_agents(&mut conn, 10).await.unwrap(), [ada]);
    // meanwhile its old run ends and the dispatcher hands it new work
    sql(&app, &format!("UPDATE agents SET status = 'idle' WHERE id = '{ada}'")).await;
    Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    assert!(!loom::beads::free_zombie(&mut conn, ada).await.unwrap());
    assert_eq!(app.get(&format!("/api/v1/agents/{ada}")).await.body["status"], "working");
    assert_eq!(app.show(&bead).await["status"], "in_progress");
}

#[tokio::test]
async fn a_person_taking_a_bead_back_ends_its_run_and_frees_the_agent() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada").await;
    let bead = app.bead("web", "wrong approach", json!({})).await;
    let mut conn = app.pool.get().await.unwrap();
    let claim = Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    let reopened = app.post(&format!("/api/v1/beads/{bead}/reopen"), json!({})).await;
    assert_eq!(reopened.body["status"], "open", "{:?}", reopened.body);
    let run = app.get(&format!("/api/v1/runs/{}", claim.run_id)).await.body;
    assert_eq!(
        (run["outcome"].as_str(), run["error"].as_str()),
        (Some("cancelled"), Some("taken back by a person"))
    );
    assert_eq!(app.get(&format!("/api/v1/agents/{ada}")).await.body["status"], "idle");
    let again = Bead::claim(&mut conn, &bead, ada, Duration::from_secs(60)).await.unwrap();
    assert!(again.is_some(), "the bead can be claimed afresh");
    assert_eq!(
        Bead::release(&mut conn, claim.run_id, RunOutcome::Success, None, NO_WAIT).await.unwrap(),
        None,
        "the old run cannot end it"
    );
    app.close(&bead).await;
    assert_eq!(
        app.get(&format!("/api/v1/agents/{ada}")).await.body["status"],
        "idle",
        "closing frees the agent too"
    );
    assert_eq!(app.show(&bead).await["runs"][0]["outcome"], "cancelled");
}
