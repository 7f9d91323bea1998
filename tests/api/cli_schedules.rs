//! `loom schedule ...`: the real binary against the real server.

use serde_json::{Value, json};

use crate::support::cli::Cli;
use crate::support::spawn;

/// Asserts a failed run printed `wanted` in a single `error:` line on stderr.
fn assert_fails_with(run: (bool, String, String), wanted: &str) {
    let (ok, out, err) = run;
    assert!(!ok, "expected a failure, got: {out}");
    assert!(err.contains(wanted), "wanted {wanted:?} in: {err}");
    // Counted by line: the server's cron message can itself contain "error:".
    let printed = err.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(printed, 1, "the error is printed once: {err}");
}

fn ids(list: &Value) -> Vec<&str> {
    list["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect()
}

const NIGHTLY: &[&str] = &[
    "schedule",
    "create",
    "--project",
    "web",
    "--cron",
    "0 3 * * *",
    "--title",
    "Nightly audit",
    "--description",
    "Run cargo audit.",
    "--priority",
    "P1",
    "--label",
    "Security",
    "--label",
    "deps",
    "--persona",
    "security-reviewer",
];

#[tokio::test(flavor = "multi_thread")]
async fn schedule_commands_create_list_show_update_and_delete() {
    let app = spawn().await;
    app.project("web").await;
    app.project("ops").await;
    let cli = Cli::with_token(&app.base, &app.member);
    let created = cli.json(NIGHTLY);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (created["enabled"].as_bool(), created["cron"].as_str()),
        (Some(true), Some("0 3 * * *"))
    );
    let template = json!({
        "title": "Nightly audit", "description": "Run cargo audit.", "type": "task",
        "priority": 1, "labels": ["security", "deps"], "persona": "security-reviewer",
    });
    assert_eq!(created["bead"], template);
    let (ok, out, err) = cli.run(
        &[
            "schedule",
            "create",
            "--project",
            "ops",
            "--cron",
            "@hourly",
            "--title",
            "Triage",
            "--type",
            "chore",
            "--priority",
            "3",
            "--disabled",
        ],
        None,
    );
    assert!(ok && out.contains("disabled") && out.contains("Triage"), "{out}{err}");

    let (ok, out, err) = cli.run(&["schedule", "list"], None);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("ID") && out.contains("NEXT RUN") && out.contains("LAST BEAD"),
        "{out}"
    );
    let row = out.lines().find(|l| l.contains(&id)).unwrap();
    let next_day = &created["next_run_at"].as_str().unwrap()[..10];
    for cell in ["web", "0 3 * * *", "Nightly audit", "yes", next_day] {
        assert!(row.contains(cell), "{cell} missing from {row}");
    }
    let triage = out.lines().find(|l| l.contains("Triage")).unwrap();
    assert!(triage.contains("@hourly") && triage.contains(" no "), "{triage}");
    assert_eq!(ids(&cli.json(&["schedule", "list", "--project", "web"])), [id.as_str()]);
    assert!(cli.json(&["schedule", "list", "--limit", "1"])["next_cursor"].is_string());

    let (ok, out, _) = cli.run(&["schedule", "show", &id], None);
    assert!(ok, "{out}");
    let cron = format!("{:<12} 0 3 * * *", "cron");
    for line in [cron.as_str(), "priority   P1", "labels     security,deps", "Run cargo audit."] {
        assert!(out.contains(line), "{line:?} missing from {out}");
    }
    let stored = app.get(&format!("/api/v1/schedules/{id}")).await.body;
    assert_eq!(cli.json(&["schedule", "show", &id]), stored);

    let retitled = cli.json(&["schedule", "update", &id, "--title", "Weekly audit"]);
    let mut expected = template.clone();
    expected["title"] = json!("Weekly audit");
    assert_eq!(retitled["bead"], expected, "only the title changes");
    assert_eq!(
        (retitled["cron"].as_str(), retitled["enabled"].as_bool()),
        (Some("0 3 * * *"), Some(true))
    );

    let (ok, out, _) =
        cli.run(&["schedule", "update", &id, "--cron", "30 4 * * 1", "--disable"], None);
    assert!(ok && out.contains("disabled \"30 4 * * 1\"") && out.contains("not running"), "{out}");
    let shown = cli.json(&["schedule", "show", &id]);
    assert_eq!((shown["enabled"].as_bool(), &shown["bead"]), (Some(false), &expected));
    let (_, out, _) = cli.run(&["schedule", "show", &id], None);
    assert!(out.contains("next_run_at  - (disabled)"), "{out}");

    let changed =
        cli.json(&["schedule", "update", &id, "--enable", "--priority", "0", "--label", "weekly"]);
    expected["priority"] = json!(0);
    expected["labels"] = json!(["weekly"]);
    assert_eq!((changed["enabled"].as_bool(), &changed["bead"]), (Some(true), &expected));

    let (ok, out, err) = cli.run(&["schedule", "run", &id], None);
    assert!(ok && out.starts_with("filed web-"), "{out}{err}");
    let (ok, out, _) = cli.run(&["schedule", "run", &id], None);
    assert!(ok && out.contains("still open"), "{out}");

    let (ok, out, err) = cli.run(&["schedule", "delete", &id], None);
    assert!(ok && out.contains(&format!("deleted schedule {id}")), "{err}");
    assert!(ids(&cli.json(&["schedule", "list", "--project", "web"])).is_empty());
    let (ok, out, _) = cli.run(&["schedule", "list", "--project", "web"], None);
    assert!(ok && out.trim() == "(none)", "{out}");
    assert_fails_with(
        cli.run(&["schedule", "show", &id], None),
        &format!("schedule {id} not found"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_commands_print_the_servers_error_once_and_fail() {
    let app = spawn().await;
    app.project("web").await;
    let cli = Cli::with_token(&app.base, &app.member);
    let mut bad_cron = NIGHTLY.to_vec();
    bad_cron[5] = "0 3 * *";
    assert_fails_with(
        cli.run(&bad_cron, None),
        "\"0 3 * *\" is not a cron expression (five fields",
    );
    assert_fails_with(cli.run(&bad_cron, None), "(invalid_cron, HTTP 422)");
    let mut elsewhere = NIGHTLY.to_vec();
    elsewhere[3] = "nope";
    assert_fails_with(cli.run(&elsewhere, None), "no project \"nope\" (unknown_project, HTTP 422)");

    let viewer = Cli::with_token(&app.base, &app.viewer);
    assert_fails_with(
        viewer.run(NIGHTLY, None),
        "this needs the member role; you are viewer (forbidden, HTTP 403)",
    );
    assert!(ids(&viewer.json(&["schedule", "list"])).is_empty(), "nothing was created");

    let id = cli.json(NIGHTLY)["id"].as_str().unwrap().to_owned();
    assert_fails_with(
        cli.run(&["schedule", "update", &id, "--cron", "61 * * * *"], None),
        "invalid_cron",
    );
    assert_fails_with(
        cli.run(&["schedule", "update", &id, "--title", "x", "--priority", "P9"], None),
        "invalid_priority",
    );
    assert_fails_with(
        viewer.run(&["schedule", "update", &id, "--disable"], None),
        "(forbidden, HTTP 403)",
    );
    assert_eq!(cli.json(&["schedule", "show", &id])["bead"]["title"], "Nightly audit");

    let ghost = uuid::Uuid::now_v7().to_string();
    for args in [
        vec!["schedule", "show", &ghost],
        vec!["schedule", "update", &ghost, "--title", "x"],
        vec!["schedule", "update", &ghost, "--disable"],
        vec!["schedule", "delete", &ghost],
    ] {
        assert_fails_with(
            cli.run(&args, None),
            &format!("schedule {ghost} not found (not_found, HTTP 404)"),
        );
    }
    assert_fails_with(cli.run(&["schedule", "show", "../agents"], None), "is not a schedule id");

    // Refused by the command line itself, before any request.
    let (ok, _, err) = cli.run(&["schedule", "update", &id], None);
    assert!(!ok && err.contains("--cron"), "an update must change something: {err}");
    let (ok, _, err) = cli.run(&["schedule", "update", &id, "--enable", "--disable"], None);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}
