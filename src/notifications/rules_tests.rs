use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::*;

fn row(kind: &str, bead: Option<&str>, actor: Option<Uuid>, data: serde_json::Value) -> Activity {
    Activity {
        id: 7,
        created_at: Utc::now(),
        kind: kind.to_owned(),
        project_id: bead.map(|_| "lm".to_owned()),
        bead_id: bead.map(str::to_owned),
        actor_user_id: actor,
        actor_agent_id: None,
        actor: None,
        data,
        tx: 1,
        origin: "test".to_owned(),
    }
}

fn users(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::new_v4()).collect()
}

fn derived(row: &Activity, facts: &Facts) -> Vec<(Uuid, Reason, String)> {
    let trigger = Trigger::of(row).expect("a trigger");
    targets(row, &trigger, facts).into_iter().map(|t| (t.user_id, t.reason, t.title)).collect()
}

fn filed_by(user: Uuid) -> Facts {
    Facts { bead: Some(("Fix login".to_owned(), Some(user))), ..Facts::default() }
}

#[test]
fn closing_a_bead_tells_its_creator_but_not_a_creator_who_closed_it() {
    let [ana, bob] = users(2)[..] else { unreachable!() };
    let closed = row("bead.closed", Some("lm-3"), Some(bob), json!({ "reason": "done" }));
    assert_eq!(
        derived(&closed, &filed_by(ana)),
        vec![(ana, Reason::BeadClosed, "lm-3 \"Fix login\" was closed".to_owned())]
    );
    let own = row("bead.closed", Some("lm-3"), Some(ana), json!({ "reason": "done" }));
    assert!(derived(&own, &filed_by(ana)).is_empty());
    assert!(derived(&closed, &Facts::default()).is_empty(), "a bead that is gone tells nobody");
}

#[test]
fn blocked_reasons_read_as_sentences_and_gateway_parking_is_not_news() {
    let ana = Uuid::new_v4();
    let block = |reason: &str, note: serde_json::Value| {
        row("bead.blocked", Some("lm-3"), None, json!({ "reason": reason, "note": note }))
    };
    let conflict = derived(&block("merge_conflict", json!(null)), &filed_by(ana));
    assert_eq!(
        conflict,
        vec![(ana, Reason::BeadBlocked, "lm-3 \"Fix login\" is blocked: a merge conflict".into())]
    );
    let manual = derived(&block("manual", json!("waiting on design")), &filed_by(ana));
    assert_eq!(manual[0].2, "lm-3 \"Fix login\" is blocked: waiting on design");
    let long = derived(&block("manual", json!("x".repeat(500))), &filed_by(ana));
    assert!(long[0].2.chars().count() < 120, "{}", long[0].2);
    assert_eq!(Trigger::of(&block("gateway_unavailable", json!("503"))), None);
}

#[test]
fn a_question_for_a_human_reaches_the_creator_and_watchers_once_each() {
    let [ana, bob, cy] = users(3)[..] else { unreachable!() };
    let asked = row("bead.blocked", Some("lm-3"), None, json!({ "reason": "needs_human" }));
    let facts = Facts { watchers: vec![bob, ana, cy], ..filed_by(ana) };
    let got = derived(&asked, &facts);
    let who: Vec<Uuid> = got.iter().map(|t| t.0).collect();
    assert_eq!(who, vec![ana, bob, cy]);
    assert!(
        got.iter().all(|t| t.1 == Reason::NeedsHuman && t.2 == "lm-3 \"Fix login\" needs a human")
    );
    let by_bob = row("bead.blocked", Some("lm-3"), Some(bob), json!({ "reason": "needs_human" }));
    let who: Vec<Uuid> = derived(&by_bob, &facts).iter().map(|t| t.0).collect();
    assert_eq!(who, vec![ana, cy]);
}

#[test]
fn mentions_name_who_mentioned_and_skip_the_author() {
    let [ana, bob] = users(2)[..] else { unreachable!() };
    let comment =
        row("comment.added", Some("lm-3"), Some(ana), json!({ "mentions": ["bob", "ana"] }));
    let facts = Facts { mentioned: vec![bob, ana], actor: "@ana".into(), ..Facts::default() };
    assert_eq!(
        derived(&comment, &facts),
        vec![(bob, Reason::Mention, "@ana mentioned you on lm-3".to_owned())]
    );
    let none = row("comment.added", Some("lm-3"), Some(ana), json!({ "mentions": [] }));
    assert_eq!(Trigger::of(&none), None);
}

#[test]
fn only_p0_beads_tell_the_watchers() {
    let [ana, bob] = users(2)[..] else { unreachable!() };
    let filed = |priority: i64| {
        row(
            "bead.created",
            Some("lm-9"),
            Some(ana),
            json!({ "title": "Down", "priority": priority }),
        )
    };
    let facts = Facts { watchers: vec![ana, bob], ..Facts::default() };
    assert_eq!(
        derived(&filed(0), &facts),
        vec![(bob, Reason::P0Filed, "P0 filed in lm: lm-9 \"Down\"".to_owned())]
    );
    assert_eq!(Trigger::of(&filed(1)), None);
}

#[test]
fn the_gateway_going_down_and_up_tells_everyone_about_one_subject() {
    let everyone = users(2);
    let facts = Facts { everyone: everyone.clone(), ..Facts::default() };
    let down = row("gateway.health", None, None, json!({ "healthy": false, "reason": "refused" }));
    let trigger = Trigger::of(&down).expect("trigger");
    let got = targets(&down, &trigger, &facts);
    assert_eq!(got.iter().map(|t| t.user_id).collect::<Vec<_>>(), everyone);
    assert!(got.iter().all(|t| t.subject == GATEWAY && t.reason == Reason::GatewayDown));
    assert_eq!(got[0].title, "The LLM gateway is down: refused");
    let up = row("gateway.health", None, None, json!({ "healthy": true, "reason": null }));
    assert_eq!(derived(&up, &facts)[0].1, Reason::GatewayUp);
    let odd = row("gateway.health", None, None, json!({ "status": "weird" }));
    assert_eq!(Trigger::of(&odd), None, "a shape this version does not know notifies nobody");
}

#[test]
fn other_kinds_and_unknown_kinds_notify_nobody() {
    for kind in ["bead.updated", "run.ended", "bead.exploded"] {
        assert_eq!(Trigger::of(&row(kind, Some("lm-3"), None, json!({}))), None, "{kind}");
    }
}

#[test]
fn landing_tells_the_creator_of_reviews_landings_and_failed_checks() {
    let [ana, bob] = users(2)[..] else { unreachable!() };
    let landed =
        row("bead.closed", Some("lm-3"), None, json!({ "reason": "done", "landed_on": "main" }));
    assert_eq!(
        derived(&landed, &filed_by(ana)),
        vec![(ana, Reason::Landed, "lm-3 \"Fix login\" landed on main".to_owned())]
    );
    let review = row("bead.review", Some("lm-3"), None, json!({ "sha": "abc" }));
    let facts = Facts { watchers: vec![bob, ana], ..filed_by(ana) };
    let asked = derived(&review, &facts);
    assert_eq!(asked.iter().map(|t| t.0).collect::<Vec<_>>(), [ana, bob]);
    assert_eq!(asked[0].2, "lm-3 \"Fix login\" is ready for review");
    let by_agent = row("bead.review", Some("lm-3"), None, json!({ "sha": "abc", "by": "agent" }));
    assert_eq!(Trigger::of(&by_agent), None, "an agent's review is no person's to do");
    let handed = row("bead.review", Some("lm-3"), None, json!({ "by": "human", "reviews": 3 }));
    assert_eq!(Trigger::of(&handed), Some(Trigger::ReviewRequested));
    let changes = row("bead.changes_requested", Some("lm-3"), Some(bob), json!({ "round": 1 }));
    assert_eq!(derived(&changes, &filed_by(ana))[0].1, Reason::ChangesRequested);
    let red = row("bead.sent_back", Some("lm-3"), None, json!({ "why": "check_failed" }));
    assert_eq!(
        derived(&red, &filed_by(ana)),
        vec![(
            ana,
            Reason::CheckFailed,
            "lm-3 \"Fix login\" failed the project's check".to_owned()
        )]
    );
    let conflict = row("bead.sent_back", Some("lm-3"), None, json!({ "why": "conflict" }));
    assert_eq!(Trigger::of(&conflict), None, "a conflict is the agent's to resolve");
}
