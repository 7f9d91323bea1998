use serde_json::Value;

use crate::support::cli::Cli;
use crate::support::{PASSWORD, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_logs_in_and_drives_projects_and_beads() {
    let app = spawn().await;
    let cli = Cli::new(&app.base);
    let run = |args: &[&str], stdin: Option<&str>| cli.run(args, stdin);
    let (ok, _, err) = run(&["bead", "list"], None);
    assert!(!ok && err.contains("not logged in"), "{err}");
    let login = format!("{PASSWORD}\n");
    let (ok, out, err) = run(&["login", "--username", "admin", "--password-stdin"], Some(&login));
    assert!(ok, "{out}{err}");
    let (ok, _, err) = run(
        &["project", "create", "--id", "cli", "--name", "CLI", "--repo", "/tmp/no-such-r"],
        None,
    );
    assert!(!ok && err.contains("/tmp/no-such-r does not exist"), "{err}");
    let repo = app.repo("cli");
    let (ok, _, err) =
        run(&["project", "create", "--id", "cli", "--name", "CLI", "--repo", &repo], None);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["project", "show", "cli"], None);
    assert!(ok && out.contains("repo_state") && out.contains("ok"), "{out}{err}");
    let (ok, out, _) = run(
        &["bead", "create", "--project", "cli", "--title", "first", "--priority", "P1", "--json"],
        None,
    );
    assert!(ok);
    let bead: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(bead["priority"], 1);
    let (ok, out, _) = run(&["bead", "ready", "--project", "cli"], None);
    assert!(ok && out.contains("first") && out.contains("P1"), "{out}");
    let (ok, _, err) = run(&["bead", "create", "--project", "nope", "--title", "x"], None);
    assert!(!ok && err.contains("unknown_project"), "{err}");
    let (ok, out, _) = run(&["bead", "list", "--json"], None);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (ok, _, err) = run(&["bead", "show", "cli-zzzz"], None);
    assert!(!ok && err.contains("bead cli-zzzz not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typed_bead_id_is_one_path_segment_and_cannot_reach_another_route() {
    let app = spawn().await;
    app.project("web").await;
    let cli = Cli::with_token(&app.base, &app.member);
    cli.json(&["agent", "create", "ada", "--persona", "software-engineer"]);
    cli.json(&["bead", "create", "--project", "web", "--title", "first"]);

    let (ok, out, err) = cli.run(&["bead", "show", "../agents"], None);
    assert!(!ok, "`../agents` reached another route: {out}");
    assert!(err.contains("not found (not_found, HTTP 404)"), "{err}");
    assert!(!out.contains("ada"), "{out}");
    let (ok, _, err) = cli.run(&["bead", "close", "../agents"], None);
    assert!(!ok && err.contains("not_found"), "{err}");

    // No encoding survives URL parsing as a dot segment, and `beads/` is trimmed to the list.
    for id in [".", "..", ""] {
        let (ok, out, err) = cli.run(&["bead", "show", id], None);
        assert!(!ok && out.is_empty(), "{id:?} reached another route: {out}");
        assert!(err.contains("is not an id or a name"), "{id:?}: {err}");
    }
}
