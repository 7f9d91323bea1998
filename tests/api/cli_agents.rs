//! `loom agent ...` and `loom persona ...`: the real binary against the real server.

use serde_json::Value;

use crate::support::cli::Cli;
use crate::support::{spawn, spawn_with};

/// Asserts a failed run printed `wanted` in a single `error:` line on stderr.
fn assert_fails_with(run: (bool, String, String), wanted: &str) {
    let (ok, out, err) = run;
    assert!(!ok, "expected a failure, got: {out}");
    assert!(err.contains(wanted), "wanted {wanted:?} in: {err}");
    assert_eq!(err.matches("error:").count(), 1, "the error is printed once: {err}");
}

fn names(list: &Value) -> Vec<&str> {
    list["items"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_commands_create_show_update_pause_resume_and_delete_by_name_or_id() {
    let app = spawn().await;
    app.project("web").await;
    let cli = Cli::with_token(&app.base, &app.member);
    let created =
        cli.json(&["agent", "create", "ada", "--persona", "software-engineer", "--project", "web"]);
    assert_eq!(
        (created["status"].as_str(), created["project"].as_str()),
        (Some("idle"), Some("web"))
    );
    let id = created["id"].as_str().unwrap().to_owned();

    let (ok, out, err) = cli.run(&["agent", "list"], None);
    assert!(ok, "{err}");
    assert!(out.starts_with("ID") && out.contains("LAST HEARTBEAT"), "{out}");
    let row = out.lines().find(|l| l.contains("ada")).unwrap();
    for cell in [id.as_str(), "software-engineer", "web", "idle"] {
        assert!(row.contains(cell), "{cell} missing from {row}");
    }
    assert_eq!(names(&cli.json(&["agent", "list", "--project", "web"])), ["ada"]);
    assert!(names(&cli.json(&["agent", "list", "--project", "other"])).is_empty());

    let (ok, by_name, _) = cli.run(&["agent", "show", "ada"], None);
    assert!(ok && by_name.contains(&id), "{by_name}");
    let (ok, by_id, _) = cli.run(&["agent", "show", &id], None);
    assert!(ok && by_id == by_name, "{by_id}");

    let updated =
        cli.json(&["agent", "update", "ada", "--name", "grace", "--persona", "code-reviewer"]);
    assert_eq!(
        (updated["name"].as_str(), updated["persona"].as_str()),
        (Some("grace"), Some("code-reviewer"))
    );
    assert_eq!(updated["project"], "web", "a field not given is left alone");
    assert!(cli.json(&["agent", "update", &id, "--unbind"])["project"].is_null());
    let rebound = cli.json(&["agent", "update", "grace", "--project", "web"]);
    assert_eq!(rebound["project"], "web");

    let (ok, out, _) = cli.run(&["agent", "pause", "grace"], None);
    assert!(ok && out.contains("paused"), "{out}");
    assert_eq!(cli.json(&["agent", "show", "grace"])["status"], "paused");
    let (ok, out, _) = cli.run(&["agent", "resume", &id], None);
    assert!(ok && out.contains("idle"), "{out}");
    assert_eq!(cli.json(&["agent", "show", &id])["status"], "idle");

    let (ok, _, err) = cli.run(&["agent", "delete", "grace"], None);
    assert!(ok, "{err}");
    assert!(names(&cli.json(&["agent", "list"])).is_empty());
    let (ok, out, _) = cli.run(&["agent", "list"], None);
    assert!(ok && out.trim() == "(none)", "{out}");
    assert_fails_with(cli.run(&["agent", "show", &id], None), "not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_commands_print_the_servers_error_once_and_fail() {
    let app = spawn().await;
    let cli = Cli::with_token(&app.base, &app.member);
    assert_fails_with(
        cli.run(&["agent", "create", "ada", "--persona", "nobody"], None),
        "no persona \"nobody\": `loom persona list` shows those there are (unknown_persona, HTTP 422)",
    );
    assert_fails_with(cli.run(&["agent", "show", "ghost"], None), "no agent named \"ghost\"");
    assert_fails_with(cli.run(&["agent", "pause", "ghost"], None), "no agent named \"ghost\"");

    cli.json(&["agent", "create", "ada", "--persona", "software-engineer"]);
    assert_fails_with(
        cli.run(&["agent", "create", "ada", "--persona", "qa-engineer"], None),
        "an agent named \"ada\" already exists (agent_exists, HTTP 409)",
    );
    cli.json(&["agent", "create", "bob", "--persona", "qa-engineer"]);
    assert_fails_with(cli.run(&["agent", "update", "bob", "--name", "ada"], None), "agent_exists");

    let viewer = Cli::with_token(&app.base, &app.viewer);
    assert_fails_with(
        viewer.run(&["agent", "create", "eve", "--persona", "software-engineer"], None),
        "this needs the member role; you are viewer (forbidden, HTTP 403)",
    );
    assert_eq!(names(&viewer.json(&["agent", "list"])), ["ada", "bob"], "viewers still read");

    // Refused by the command line itself, before any request.
    let (ok, _, err) = cli.run(&["agent", "update", "ada"], None);
    assert!(!ok && err.contains("--name"), "an update must change something: {err}");
    let (ok, _, err) = cli.run(&["agent", "update", "ada", "--project", "web", "--unbind"], None);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn persona_commands_list_and_show_the_shipped_team() {
    let app = spawn().await;
    let cli = Cli::with_token(&app.base, &app.viewer);
    let (ok, out, err) = cli.run(&["persona", "list"], None);
    assert!(ok, "{err}");
    assert!(out.starts_with("NAME") && out.contains("DISPLAY NAME"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("software-engineer ")), "{out}");
    assert_eq!(cli.json(&["persona", "list"])["items"].as_array().unwrap().len(), 8);

    let stored = app.get("/api/v1/personas/software-engineer").await.body;
    let (ok, out, _) = cli.run(&["persona", "show", "software-engineer"], None);
    assert!(ok, "{out}");
    let role = out.lines().find(|l| l.starts_with("role")).unwrap();
    assert!(role.ends_with(stored["role"].as_str().unwrap()), "{role}");
    assert!(out.contains(stored["instructions"].as_str().unwrap().trim()), "{out}");
    assert_eq!(cli.json(&["persona", "show", "software-engineer"]), stored);

    assert_fails_with(cli.run(&["persona", "show", "nobody"], None), "not_found");
    assert_fails_with(cli.run(&["persona", "show", "../agents"], None), "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn persona_reload_is_for_admins_and_reports_each_bad_file_by_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("PERSONA.md"), text).unwrap();
    };
    write("good", "---\nname: good\ndisplay_name: Good\nrole: engineer\n---\nWork well.\n");
    let path = dir.path().to_owned();
    let app = spawn_with(move |c| c.personas_dir = Some(path)).await;

    let member = Cli::with_token(&app.base, &app.member);
    assert_fails_with(member.run(&["persona", "reload"], None), "needs the admin role");

    write("broken", "---\nname: broken\ndisplay_name: Broken\nrole: [oops\n---\nbody\n");
    let admin = Cli::with_token(&app.base, &app.admin);
    let (ok, out, err) = admin.run(&["persona", "reload"], None);
    assert!(!ok, "a skipped file fails the command: {out}");
    assert_eq!(out.trim(), "loaded 9 personas (1 from LOOM_PERSONAS_DIR: good)");
    let at = format!("{}:4: ", dir.path().join("broken").join("PERSONA.md").display());
    assert!(err.lines().any(|l| l.starts_with(&at)), "wanted {at:?} in: {err}");
    assert!(err.contains("error: 1 persona file could not be loaded"), "{err}");

    write("broken", "---\nname: broken\ndisplay_name: Broken\nrole: fixed\n---\nbody\n");
    let (ok, out, err) = admin.run(&["persona", "reload"], None);
    assert!(ok && err.is_empty(), "{err}");
    assert_eq!(out.trim(), "loaded 10 personas (2 from LOOM_PERSONAS_DIR: broken, good)");
    let report = admin.json(&["persona", "reload"]);
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);
}
