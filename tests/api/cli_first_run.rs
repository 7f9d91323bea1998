//! What a new user meets at the terminal: a login that asks for the password once, boolean
//! settings written as environments write them, errors that read as sentences and name what
//! was not found, and bead and feed output that says who did what.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::cli::Cli;
use crate::support::serve::Server;
use crate::support::{PASSWORD, db::TestDb, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn login_at_a_terminal_asks_for_the_password_once() {
    let app = spawn().await;
    let home = tempfile::tempdir().unwrap();
    let login = format!("{} login --url {} --username admin", env!("CARGO_BIN_EXE_loom"), app.base);
    // `script` gives the command a terminal, as a person's shell does.
    let out = tokio::task::block_in_place(|| {
        use std::io::Write;
        let mut child = Command::new("script")
            .args(["-qec", &login, "/dev/null"])
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("password:").count(), 1, "{text}");
    assert!(!text.contains("again"), "{text}");
    assert!(text.contains("logged in to"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn boolean_settings_take_what_environments_write_and_refuse_the_rest_clearly() {
    let db = TestDb::new().await;
    let on_off = [
        ("LOOM_NO_TICKER", "1".to_owned()),
        ("LOOM_NO_NOTIFIER", "yes".to_owned()),
        ("LOOM_NO_EXECUTORS", "0".to_owned()),
        ("LOOM_DISPATCH_WITHOUT_EXECUTORS", "off".to_owned()),
    ];
    let mut server = Server::start_with_ticker(&db.url, &on_off);
    server.port().await;
    server.assert_running();
    assert!(!server.log().contains("ticker started"), "LOOM_NO_TICKER=1 is on:\n{}", server.log());
    drop(server);

    let mut bad = Server::start_with_ticker(&db.url, &[("LOOM_NO_TICKER", "maybe".to_owned())]);
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), bad.child.wait())
        .await
        .expect("a bad value stops the start")
        .unwrap();
    assert!(!status.success());
    let log = bad.log();
    assert!(log.contains("'maybe'") && log.contains("yes or no"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_values_and_missing_things_are_said_in_words() {
    let app = spawn().await;
    app.project("web").await;
    let cli = Cli::with_token(&app.base, &app.member);
    let res =
        app.post("/api/v1/beads", json!({"project": "web", "title": "t", "type": "saga"})).await;
    let message = res.body["error"]["message"].as_str().unwrap().to_owned();
    assert_eq!(res.code(), "invalid_body");
    assert!(message.contains("`saga` is not one of") && message.contains("task"), "{message}");
    assert!(!message.contains("line 1") && !message.contains("column"), "{message}");
    let res = app.get("/api/v1/beads?status=finished").await;
    let message = res.body["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("\"finished\"") && message.contains("in_progress"), "{message}");
    assert!(!message.contains("line 1") && !message.contains("column"), "{message}");

    for (args, named) in [
        (&["bead", "show", "web-zzzz"][..], "bead web-zzzz not found"),
        (&["project", "show", "nope"][..], "project nope not found"),
        (&["persona", "show", "wizard"][..], "persona \"wizard\" not found"),
    ] {
        let (ok, _, err) = cli.run(args, None);
        assert!(!ok && err.contains(named), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bead_show_and_the_feed_say_who_and_write_priorities_as_lists_do() {
    let app = spawn().await;
    app.project("web").await;
    let member = Cli::with_token(&app.base, &app.member);
    let bead =
        member.json(&["bead", "create", "--project", "web", "--title", "T", "--priority", "P1"]);
    let id = bead["id"].as_str().unwrap();
    let (ok, _, err) = member.run(&["bead", "comment", id, "Looks right to me"], None);
    assert!(ok, "{err}");
    let (ok, out, err) = member.run(&["bead", "show", id], None);
    assert!(ok, "{err}");
    assert!(out.contains("priority   P1"), "{out}");
    let by = out.lines().find(|l| l.contains(" by ")).unwrap_or_else(|| panic!("{out}"));
    assert!(by.contains("by member"), "{out}");

    let (ok, out, err) = member.run(&["feed", "--bead", id], None);
    assert!(ok, "{err}");
    let created =
        out.lines().find(|l| l.contains("bead.created")).unwrap_or_else(|| panic!("{out}"));
    assert!(created.contains("member"), "{created}");
}
