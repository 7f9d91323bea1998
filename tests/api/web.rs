//! The dashboard over HTTP: logging in and out, the one-time setup page, CSRF on forms,
//! escaping, security headers, and the pages a role may see and use.

use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::{PASSWORD, TestApp, spawn};

async fn logged_in(app: &TestApp, who: &str) -> Browser {
    let mut b = Browser::new(&app.base);
    b.log_in(who, PASSWORD).await;
    b
}

#[tokio::test]
async fn pages_send_a_visitor_without_a_session_to_the_login_page_and_back() {
    let app = spawn().await;
    let mut b = Browser::new(&app.base);
    let page = b.get("/projects").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/login?next=/projects"));
    let form = b.get("/login?next=/projects").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.contains(r#"name="next" value="/projects""#), "{}", form.body);
    let csrf = form.csrf();
    let done = b
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "member"),
                ("password", PASSWORD),
                ("next", "/projects"),
            ],
        )
        .await;
    assert_eq!((done.status, done.location.as_deref()), (StatusCode::SEE_OTHER, Some("/projects")));
    assert!(b.cookie("loom_session").is_some());
    let page = b.get("/projects").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("member"), "the header names who is logged in");
}

#[tokio::test]
async fn a_wrong_user_or_password_reads_the_same_and_never_starts_a_session() {
    let app = spawn().await;
    let mut pages = Vec::new();
    for (user, password) in [("member", "wrong-password"), ("ghost", PASSWORD)] {
        let mut b = Browser::new(&app.base);
        let csrf = b.get("/login").await.csrf();
        let page =
            b.post("/login", &[("csrf", &csrf), ("username", user), ("password", password)]).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(b.cookie("loom_session").is_none());
        pages.push(page.body.replace(user, "USER").replace(&page.csrf(), "TOKEN"));
    }
    assert_eq!(pages[0], pages[1]);
}

#[tokio::test]
async fn the_next_page_after_login_is_never_another_site() {
    let app = spawn().await;
    for next in ["//evil.example/x", "https://evil.example", "/\\evil.example", "/\t/evil.example"]
    {
        let mut b = Browser::new(&app.base);
        let csrf = b.get("/login").await.csrf();
        let done = b
            .post(
                "/login",
                &[("csrf", &csrf), ("username", "member"), ("password", PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(done.location.as_deref(), Some("/"), "{next}");
    }
}

#[tokio::test]
async fn forms_without_their_csrf_token_are_refused() {
    let app = spawn().await;
    // Login: the token must match the visitor's own cookie.
    let mut b = Browser::new(&app.base);
    b.get("/login").await;
    let forged = b
        .post("/login", &[("csrf", "forged"), ("username", "member"), ("password", PASSWORD)])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.contains("CSRF"), "{}", forged.body);
    assert!(b.cookie("loom_session").is_none());

    // A logged-in form: the session's token, not another session's.
    let mut admin = logged_in(&app, "admin").await;
    let mut other = logged_in(&app, "member").await;
    let other_token = other.get("/projects").await.csrf();
    for csrf in ["", "forged", other_token.as_str()] {
        let page = admin
            .post(
                "/projects",
                &[("csrf", csrf), ("id", "evil"), ("name", "Evil"), ("repo", "/tmp/x")],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{csrf:?}");
    }
    let res = app.call(Method::GET, "/api/v1/projects/evil", Some(&app.admin), None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "nothing was created");
    // Logging out needs it too.
    let page = admin.post("/logout", &[("csrf", "forged")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(admin.get("/").await.status, StatusCode::OK, "still logged in");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = spawn().await;
    let mut b = logged_in(&app, "viewer").await;
    let session = b.cookie("loom_session").unwrap().to_owned();
    let csrf = b.get("/").await.csrf();
    let out = b.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    assert!(b.cookie("loom_session").is_none());
    // The old cookie is worthless, even replayed.
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/", app.base))
        .header("cookie", format!("loom_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_setup_page_creates_the_first_admin_once_and_then_is_gone() {
    let app = spawn().await;
    {
        let mut conn = app.pool.get().await.unwrap();
        diesel::sql_query("DELETE FROM users").execute(&mut conn).await.unwrap();
    }
    let mut b = Browser::new(&app.base);
    let login = b.get("/login").await;
    assert_eq!(login.location.as_deref(), Some("/setup"), "nobody to log in as yet");
    let csrf = b.get("/setup").await.csrf();
    let mismatch = b
        .post(
            "/setup",
            &[
                ("csrf", &csrf),
                ("username", "root"),
                ("password", "longenough1"),
                ("confirm", "other"),
            ],
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(mismatch.contains("passwords differ"));
    let weak = b
        .post(
            "/setup",
            &[("csrf", &csrf), ("username", "root"), ("password", "short"), ("confirm", "short")],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Two people racing to set it up: one admin.
    let mut rival = Browser::new(&app.base);
    let rival_csrf = rival.get("/setup").await.csrf();
    let my_form = [
        ("csrf", csrf.as_str()),
        ("username", "root"),
        ("password", "longenough1"),
        ("confirm", "longenough1"),
    ];
    let their_form = [
        ("csrf", rival_csrf.as_str()),
        ("username", "rival"),
        ("password", "longenough2"),
        ("confirm", "longenough2"),
    ];
    let (mine, theirs) =
        tokio::join!(b.post("/setup", &my_form), rival.post("/setup", &their_form));
    let statuses = [mine.status, theirs.status];
    assert!(statuses.contains(&StatusCode::SEE_OTHER), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::CONFLICT), "{statuses:?}");
    let users = {
        let mut conn = app.pool.get().await.unwrap();
        loom::users::User::count(&mut conn).await.unwrap()
    };
    assert_eq!(users, 1);
    assert_eq!(Browser::new(&app.base).get("/setup").await.status, StatusCode::NOT_FOUND);
    // Posting to it is gone too, before any work, whatever token comes with it.
    let mut late = Browser::new(&app.base);
    let late_csrf = late.get("/login").await.csrf();
    let again = late
        .post(
            "/setup",
            &[
                ("csrf", &late_csrf),
                ("username", "late"),
                ("password", "longenough3"),
                ("confirm", "longenough3"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let winner = if mine.status == StatusCode::SEE_OTHER { &mut b } else { &mut rival };
    let overview = winner.get("/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.contains("Admin"), "the first user is an admin");
}

#[tokio::test]
async fn pages_escape_what_people_and_models_wrote_and_carry_security_headers() {
    let app = spawn().await;
    let evil = r#"<script>alert("x")</script>"#;
    let res = app
        .call(
            Method::POST,
            "/api/v1/projects",
            Some(&app.admin),
            Some(json!({"id": "esc", "name": evil, "repo": "/tmp/repo"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    app.bead("esc", r#"<img src=x onerror="alert(1)">"#, json!({})).await;
    let mut b = logged_in(&app, "viewer").await;
    for path in ["/projects", "/"] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.contains("<script>alert"), "{path}: {}", page.body);
        assert!(!page.contains("<img src=x"), "{path}");
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(page.headers["x-content-type-options"], "nosniff");
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    let shown = b.get("/projects").await;
    assert!(
        shown.contains("&#60;script&#62;") || shown.contains("&lt;script&gt;"),
        "{}",
        shown.body
    );
}

#[tokio::test]
async fn only_admins_get_the_new_project_form_and_it_reports_bad_input_in_place() {
    let app = spawn().await;
    let mut member = logged_in(&app, "member").await;
    let page = member.get("/projects").await;
    assert!(!page.contains("New project"), "members cannot create projects");
    let csrf = page.csrf();
    let refused = member
        .post("/projects", &[("csrf", &csrf), ("id", "mine"), ("name", "Mine"), ("repo", "/tmp/x")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut admin = logged_in(&app, "admin").await;
    let csrf = admin.get("/projects").await.csrf();
    let bad = admin
        .post(
            "/projects",
            &[("csrf", &csrf), ("id", "Bad Id!"), ("name", "Kept"), ("repo", "/tmp/x")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("role=\"alert\"") && bad.contains(r#"value="Kept""#), "{}", bad.body);
    let made = admin
        .post(
            "/projects",
            &[
                ("csrf", &csrf),
                ("id", "web"),
                ("name", "Web"),
                ("repo", "/tmp/x"),
                ("max_parallel", "3"),
            ],
        )
        .await;
    assert_eq!(
        (made.status, made.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/projects/web"))
    );
    let shown = app.call(Method::GET, "/api/v1/projects/web", Some(&app.viewer), None).await;
    assert_eq!(shown.body["max_parallel"], 3);
}

#[tokio::test]
async fn assets_are_served_by_loom_itself_and_cached_by_version() {
    let app = spawn().await;
    let mut b = logged_in(&app, "viewer").await;
    let page = b.get("/").await;
    let at = page.body.find("/static/loom.css?v=").unwrap() + 19;
    let version: String = page.body[at..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    let css = b.get(&format!("/static/loom.css?v={version}")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["cache-control"].to_str().unwrap().contains("immutable"));
    assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
    let stale = b.get("/static/loom.js?v=old").await;
    assert_eq!(stale.headers["cache-control"], "no-cache");
    assert_eq!(b.get("/static/nope.js").await.status, StatusCode::NOT_FOUND);
}

/// The bead ids in one column of a board page.
fn column(page: &str, key: &str) -> Vec<String> {
    let start = page.find(&format!("data-column=\"{key}\"")).expect("the column");
    let section = &page[start..start + page[start..].find("</section>").expect("its end")];
    section.split("data-bead=\"").skip(1).map(|s| s.split('"').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_board_puts_each_bead_in_its_column_with_what_holds_it() {
    let app = spawn().await;
    app.project("board").await;
    let first = app.bead("board", "Lay the foundation", json!({"labels": ["infra"]})).await;
    let second =
        app.bead("board", "Build on it", json!({"depends_on": [first], "priority": 0})).await;
    let done = app.bead("board", "Already done", json!({})).await;
    let closed = app
        .call(Method::POST, &format!("/api/v1/beads/{done}/close"), Some(&app.member), None)
        .await;
    assert_eq!(closed.status, StatusCode::OK);
    let stuck = app.bead("board", "Needs a decision", json!({})).await;
    let blocked = app
        .call(
            Method::POST,
            &format!("/api/v1/beads/{stuck}/block"),
            Some(&app.member),
            Some(json!({"reason": "which database?"})),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::OK, "{:?}", blocked.body);

    let mut b = logged_in(&app, "viewer").await;
    let page = b.get("/projects/board").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(column(&page.body, "ready"), [first.clone()]);
    assert_eq!(column(&page.body, "open"), [second.clone()]);
    assert_eq!(column(&page.body, "closed"), [done]);
    assert_eq!(column(&page.body, "blocked"), [stuck]);
    assert!(column(&page.body, "in_progress").is_empty());
    assert!(page.contains(&format!("waits on <a href=\"/beads/{first}\">")), "{}", page.body);
    assert!(page.contains("which database?"));
    assert!(!page.contains("File a bead"), "viewers get no write controls");

    // Filters, and the board alone (what the page's script fetches).
    let filtered = b.get("/projects/board?label=infra").await;
    assert_eq!(column(&filtered.body, "ready"), [first.clone()]);
    assert!(column(&filtered.body, "open").is_empty());
    let fragment = b.get("/projects/board/board?priority=0").await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(!fragment.contains("<html"), "only the board");
    assert_eq!(column(&fragment.body, "open"), [second]);
    let bad = b.get("/projects/board?priority=urgent").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("role=\"alert\""));
    assert_eq!(b.get("/projects/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_file_beads_from_the_board_and_viewers_cannot() {
    let app = spawn().await;
    app.project("file").await;
    let mut member = logged_in(&app, "member").await;
    let csrf = member.get("/projects/file").await.csrf();
    let filed = member
        .post(
            "/projects/file/beads",
            &[
                ("csrf", &csrf),
                ("title", "Write the <docs>"),
                ("description", "All of them."),
                ("priority", "1"),
                ("type", "chore"),
                ("labels", "docs, Writing"),
            ],
        )
        .await;
    assert_eq!(
        (filed.status, filed.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/projects/file"))
    );
    let listed = app.call(Method::GET, "/api/v1/beads?project=file", Some(&app.viewer), None).await;
    let bead = &listed.body["items"][0];
    assert_eq!(
        (bead["title"].as_str(), bead["priority"].as_i64(), bead["type"].as_str()),
        (Some("Write the <docs>"), Some(1), Some("chore"))
    );
    assert_eq!(bead["labels"], json!(["docs", "writing"]));
    let board = member.get("/projects/file").await;
    assert_eq!(column(&board.body, "ready"), [bead["id"].as_str().unwrap().to_owned()]);

    let empty = member.post("/projects/file/beads", &[("csrf", &csrf), ("title", "  ")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.contains("role=\"alert\""));

    let mut viewer = logged_in(&app, "viewer").await;
    let csrf = viewer.get("/projects/file").await.csrf();
    let refused =
        viewer.post("/projects/file/beads", &[("csrf", &csrf), ("title", "sneaky")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let listed = app.call(Method::GET, "/api/v1/beads?project=file", Some(&app.viewer), None).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bead_page_shows_its_text_safely_its_links_both_ways_and_its_runs_turn_by_turn() {
    let app = spawn().await;
    app.project("bp").await;
    let base = app.bead("bp", "The base", json!({})).await;
    let bead = app
        .bead(
            "bp",
            "The feature",
            json!({
                "description": "Do **this**.\n\n<script>alert(1)</script> [x](javascript:alert(1))",
                "depends_on": [base],
            }),
        )
        .await;
    let later = app.bead("bp", "After it", json!({"depends_on": [bead]})).await;
    {
        let mut conn = app.pool.get().await.unwrap();
        diesel::sql_query(format!(
            "WITH r AS (INSERT INTO runs (id, bead_id, attempt, turns, prompt_tokens, completion_tokens, \
                 outcome, ended_at, summary) VALUES (gen_random_uuid(), '{bead}', 1, 2, 100, 20, 'failed', now(), \
                 'gave up') RETURNING id) \
             INSERT INTO run_steps (run_id, turn, action, ok, result, prompt_tokens, completion_tokens, \
                 started_at, duration_ms) \
             SELECT r.id, 1, '{{\"action\": \"read_file\", \"path\": \"src/main.rs\"}}'::jsonb, true, \
                 'fn main() {{ println!(\"<hi>\"); }}', 50, 10, now(), 12 FROM r \
             UNION ALL SELECT r.id, 2, '{{\"action\": \"run\", \"command\": \"cargo test\"}}'::jsonb, false, \
                 'error[E0425]', 50, 10, now(), 900 FROM r"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mut b = logged_in(&app, "viewer").await;
    let page = b.get(&format!("/beads/{bead}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.contains("<strong>this</strong>"), "markdown rendered");
    assert!(!page.contains("<script>alert"), "raw HTML escaped");
    assert!(!page.contains("href=\"javascript"), "unsafe link dropped");
    assert!(page.contains(&format!("href=\"/beads/{base}\"")), "depends on");
    assert!(page.contains(&format!("href=\"/beads/{later}\"")), "needed by");
    for shown in ["read_file", "src/main.rs", "cargo test", "error[E0425]", "gave up", "120 tokens"]
    {
        assert!(page.contains(shown), "{shown} in the transcript");
    }
    assert!(
        page.contains("println!(&#34;&#60;hi&#62;&#34;)") || page.contains("&lt;hi&gt;"),
        "results escaped"
    );
    assert!(!page.contains("action=\"/beads/"), "viewers get no forms");
    assert_eq!(b.get("/beads/bp-nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_comment_close_reopen_block_and_link_beads_from_the_bead_page() {
    let app = spawn().await;
    app.project("act").await;
    let one = app.bead("act", "One", json!({})).await;
    let two = app.bead("act", "Two", json!({"depends_on": [one]})).await;
    let mut m = logged_in(&app, "member").await;
    let page = m.get(&format!("/beads/{one}")).await;
    let csrf = page.csrf();
    let post = |action: &str| format!("/beads/{one}/{action}");

    let said = m.post(&post("comment"), &[("csrf", &csrf), ("body", "Looks *good*, @admin")]).await;
    assert_eq!(said.status, StatusCode::SEE_OTHER);
    assert!(m.get(&format!("/beads/{one}")).await.contains("Looks <em>good</em>"));
    let blank = m.post(&post("comment"), &[("csrf", &csrf), ("body", " ")]).await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A cycle is refused, with the reason on the page.
    let cycle =
        m.post(&post("depend"), &[("csrf", &csrf), ("depends_on", &two), ("kind", "blocks")]).await;
    assert_eq!(cycle.status, StatusCode::CONFLICT, "{}", cycle.body);
    assert!(cycle.contains("role=\"alert\""));

    let blocked = m.post(&post("block"), &[("csrf", &csrf), ("reason", "needs a decision")]).await;
    assert_eq!(blocked.status, StatusCode::SEE_OTHER);
    let shown = app.show(&one).await;
    assert_eq!(
        (shown["status"].as_str(), shown["blocked_note"].as_str()),
        (Some("blocked"), Some("needs a decision"))
    );
    let reopened = m.post(&post("reopen"), &[("csrf", &csrf), ("reason", "decided")]).await;
    assert_eq!(reopened.status, StatusCode::SEE_OTHER);
    let closed = m.post(&post("close"), &[("csrf", &csrf), ("reason", "done")]).await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER);
    assert_eq!(app.show(&one).await["status"], "closed");
    assert_eq!(m.post(&post("explode"), &[("csrf", &csrf)]).await.status, StatusCode::NOT_FOUND);

    let mut v = logged_in(&app, "viewer").await;
    let vcsrf = v.get(&format!("/beads/{two}")).await.csrf();
    let refused = v.post(&format!("/beads/{two}/close"), &[("csrf", &vcsrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(app.show(&two).await["status"], "open");
}

/// The id of the user named `name`, from the admin API.
async fn user_id(app: &TestApp, name: &str) -> String {
    let users = app.call(Method::GET, "/api/v1/users", Some(&app.admin), None).await;
    users.body["items"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn admins_manage_users_from_the_dashboard_and_nobody_else_can() {
    let app = spawn().await;
    let mut member = logged_in(&app, "member").await;
    assert_eq!(member.get("/admin/users").await.status, StatusCode::FORBIDDEN);
    let csrf = member.get("/").await.csrf();
    let sneaky = member
        .post(
            "/admin/users",
            &[("csrf", &csrf), ("username", "x"), ("password", "longenough"), ("role", "admin")],
        )
        .await;
    assert_eq!(sneaky.status, StatusCode::FORBIDDEN);

    let mut admin = logged_in(&app, "admin").await;
    let page = admin.get("/admin/users").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("viewer") && page.contains("member"));
    let csrf = page.csrf();
    let made = admin
        .post(
            "/admin/users",
            &[
                ("csrf", &csrf),
                ("username", "newbie"),
                ("password", "longenough"),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER);
    let taken = admin
        .post(
            "/admin/users",
            &[
                ("csrf", &csrf),
                ("username", "newbie"),
                ("password", "longenough"),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(taken.contains("taken"));
    let bad_role = admin
        .post(
            "/admin/users",
            &[("csrf", &csrf), ("username", "other"), ("password", "longenough"), ("role", "god")],
        )
        .await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);

    let newbie = user_id(&app, "newbie").await;
    let promoted = admin
        .post(&format!("/admin/users/{newbie}/role"), &[("csrf", &csrf), ("role", "member")])
        .await;
    assert_eq!(promoted.status, StatusCode::SEE_OTHER);
    let mut b = Browser::new(&app.base);
    b.log_in("newbie", "longenough").await;
    let reset = admin
        .post(
            &format!("/admin/users/{newbie}/password"),
            &[("csrf", &csrf), ("password", "another-one")],
        )
        .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER, "a reset password logs them out");
    // The last admin stays.
    let me = user_id(&app, "admin").await;
    let demote = admin
        .post(&format!("/admin/users/{me}/role"), &[("csrf", &csrf), ("role", "viewer")])
        .await;
    assert_eq!(demote.status, StatusCode::CONFLICT, "{}", demote.body);
    let gone = admin.post(&format!("/admin/users/{newbie}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    assert!(!admin.get("/admin/users").await.contains("newbie"));
}

#[tokio::test]
async fn people_create_and_revoke_their_own_api_tokens_seeing_each_secret_once() {
    let app = spawn().await;
    let mut b = logged_in(&app, "viewer").await;
    let csrf = b.get("/account/tokens").await.csrf();
    let made =
        b.post("/account/tokens", &[("csrf", &csrf), ("name", "laptop"), ("days", "30")]).await;
    assert_eq!(made.status, StatusCode::OK);
    assert_eq!(made.headers["cache-control"], "no-store");
    let at = made.body.find("class=\"secret\" value=\"").unwrap() + 22;
    let secret: String = made.body[at..].chars().take_while(|c| *c != '"').collect();
    assert!(secret.starts_with("loom_"), "{secret}");
    let me = app.call(Method::GET, "/api/v1/auth/me", Some(&secret), None).await;
    assert_eq!(me.body["username"], "viewer", "the token works");
    let listed = b.get("/account/tokens").await;
    assert!(listed.contains("laptop") && !listed.contains(&secret), "never shown again");
    let bad = b.post("/account/tokens", &[("csrf", &csrf), ("name", "x"), ("days", "-3")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let tokens = app.call(Method::GET, "/api/v1/tokens", Some(&secret), None).await;
    let id = tokens.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "laptop")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut other = logged_in(&app, "member").await;
    let ocsrf = other.get("/account/tokens").await.csrf();
    let not_theirs = other.post(&format!("/account/tokens/{id}/revoke"), &[("csrf", &ocsrf)]).await;
    assert_eq!(not_theirs.status, StatusCode::NOT_FOUND);
    let revoked = b.post(&format!("/account/tokens/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let me = app.call(Method::GET, "/api/v1/auth/me", Some(&secret), None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_page_is_a_page_and_an_unknown_api_route_is_json() {
    let app = spawn().await;
    let mut b = Browser::new(&app.base);
    let page = b.get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.contains("404"));
    let api = b.get("/api/v1/no/such/route").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api.contains("\"not_found\""));
}

#[tokio::test]
async fn the_dependency_graph_is_an_svg_of_links_in_dependency_order() {
    let app = spawn().await;
    app.project("g").await;
    let base = app.bead("g", "Base <b>", json!({})).await;
    let top = app.bead("g", "Top", json!({"depends_on": [base]})).await;
    let mut b = logged_in(&app, "viewer").await;
    let page = b.get("/projects/g/graph").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("<svg") && page.contains("class=\"edge edge-blocks\""), "{}", page.body);
    assert!(
        page.contains(&format!("href=\"/beads/{base}\""))
            && page.contains(&format!("href=\"/beads/{top}\""))
    );
    assert!(!page.contains("Base <b>"), "titles escaped in the SVG");
    // The dependent is drawn right of what it waits on.
    let x_of = |id: &str| -> i64 {
        let at = page.body.find(&format!("href=\"/beads/{id}\"")).unwrap();
        let rect = &page.body[at..];
        let x = rect.find("<rect x=\"").unwrap() + 9;
        rect[x..].split('"').next().unwrap().parse().unwrap()
    };
    assert!(x_of(&top) > x_of(&base));
    assert_eq!(b.get("/projects/none/graph").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn analytics_are_computed_from_what_was_recorded() {
    let app = spawn().await;
    app.project("an").await;
    let done = app.bead("an", "Done one", json!({})).await;
    app.call(Method::POST, &format!("/api/v1/beads/{done}/close"), Some(&app.member), None).await;
    app.bead("an", "Still open", json!({})).await;
    let agent = app
        .post(
            "/api/v1/agents",
            json!({"name": "ana", "persona": "software-engineer", "project": "an"}),
        )
        .await;
    let agent_id = agent.body["id"].as_str().unwrap().to_owned();
    {
        let mut conn = app.pool.get().await.unwrap();
        diesel::sql_query(format!(
            "WITH r AS (INSERT INTO runs (id, bead_id, attempt, outcome, ended_at) \
                 VALUES (gen_random_uuid(), '{done}', 1, 'success', now()) RETURNING id) \
             INSERT INTO gateway_calls (run_id, agent_id, model, attempt, streamed, ok, prompt_tokens, \
                 completion_tokens, latency_ms) \
             SELECT r.id, '{agent_id}'::uuid, 'm', 1, false, true, 1000, 234, 120 FROM r \
             UNION ALL SELECT r.id, '{agent_id}'::uuid, 'm', 2, false, false, 0, 0, 3000 FROM r"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mut b = logged_in(&app, "viewer").await;
    let page = b.get("/analytics?days=7&project=an").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.contains("<p class=\"big\">1</p>"), "one closed: {}", page.body);
    assert!(page.contains("1234 tokens"), "tokens per day in a bar title");
    assert!(
        page.contains("<th scope=\"row\">ana</th><td>2</td><td>1</td><td>1234</td>"),
        "{}",
        page.body
    );
    assert!(page.contains("<th scope=\"row\">success</th><td>1</td>"));
    let all = b.get("/analytics").await;
    assert_eq!(all.status, StatusCode::OK);
    let bad = b.get("/analytics?days=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("1 to 365 days"));
}

#[tokio::test]
async fn editing_a_bead_from_its_page_keeps_what_changed_meanwhile() {
    let app = spawn().await;
    app.project("ed").await;
    let bead = app.bead("ed", "Old title", json!({"labels": ["a"]})).await;
    let mut m = logged_in(&app, "member").await;
    let page = m.get(&format!("/beads/{bead}")).await;
    let csrf = page.csrf();
    let version = app.show(&bead).await["version"].to_string();
    let form = |title: &'static str, version: String| {
        vec![
            ("csrf", csrf.clone()),
            ("version", version),
            ("title", title.to_owned()),
            ("description", "Now with *words*".to_owned()),
            ("priority", "1".to_owned()),
            ("type", "bug".to_owned()),
            ("labels", "x, y".to_owned()),
        ]
    };
    let edited = form("New title", version.clone());
    let pairs: Vec<(&str, &str)> = edited.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = m.post(&format!("/beads/{bead}/edit"), &pairs).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let shown = app.show(&bead).await;
    assert_eq!(
        (shown["title"].as_str(), shown["priority"].as_i64(), shown["type"].as_str()),
        (Some("New title"), Some(1), Some("bug"))
    );
    assert_eq!(shown["labels"], json!(["x", "y"]));
    // The page showed the old version: submitting it again is refused, not applied.
    let stale = form("Stale title", version);
    let pairs: Vec<(&str, &str)> = stale.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = m.post(&format!("/beads/{bead}/edit"), &pairs).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.contains("role=\"alert\""));
    assert_eq!(app.show(&bead).await["title"], "New title");
    let no_version =
        m.post(&format!("/beads/{bead}/edit"), &[("csrf", &csrf), ("title", "x")]).await;
    assert_eq!(no_version.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn long_forms_are_accepted_and_bad_ones_refused_with_a_page_that_tells_nothing_internal() {
    let app = spawn().await;
    app.project("big").await;
    let bead = app.bead("big", "Big", json!({})).await;
    let mut m = logged_in(&app, "member").await;
    let csrf = m.get(&format!("/beads/{bead}")).await.csrf();
    let long = "word & <more> ".repeat(3000); // ~42 KB once encoded: more than actix's default
    let said = m.post(&format!("/beads/{bead}/comment"), &[("csrf", &csrf), ("body", &long)]).await;
    assert_eq!(said.status, StatusCode::SEE_OTHER, "{}", said.body);
    let huge = "x".repeat(300 * 1024);
    let refused =
        m.post(&format!("/beads/{bead}/comment"), &[("csrf", &csrf), ("body", &huge)]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(refused.contains("256 KiB"));
    let nul = m.post(&format!("/beads/{bead}/comment"), &[("csrf", &csrf), ("body", "a\0b")]).await;
    assert_eq!(nul.status, StatusCode::BAD_REQUEST, "{}", nul.body);
    assert!(nul.contains("NUL") && !nul.body.to_lowercase().contains("utf8"), "{}", nul.body);
    let missing = m
        .post(&format!("/beads/{bead}/depend"), &[("csrf", &csrf), ("depends_on", "big-zzzz")])
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let alert = missing.body.split("role=\"alert\">").nth(1).unwrap_or_default();
    assert!(alert.contains("big-zzzz") || alert.contains("not found"), "{alert}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bead_page_shows_the_commit_an_agent_merged_with_its_diff() {
    use crate::support::gateway::Reply;
    use crate::support::work::Work;
    let mut w = Work::new(&[("a.txt", "one\n")], 1, loom::executor::Limits::default()).await;
    let bead = w.bead("Change a").await;
    w.script.push_for(
        &bead,
        Reply::action(
            json!({"action": "edit_file", "path": "a.txt", "old": "one", "new": "<two>"}),
        ),
    );
    w.script.push_for(&bead, Reply::action(json!({"action": "done", "summary": "Changed a."})));
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    let mut b = logged_in(&w.app, "viewer").await;
    let page = b.get(&format!("/beads/{bead}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("class=\"commit\""), "{}", page.body);
    assert!(page.contains("<span class=\"del\">-one</span>"), "{}", page.body);
    assert!(
        page.contains("<span class=\"add\">+&#60;two&#62;</span>") || page.contains("+&lt;two&gt;"),
        "{}",
        page.body
    );
    assert!(page.contains("a.txt"));
}

#[tokio::test]
async fn admins_change_a_projects_settings_and_delete_it_from_its_page() {
    let app = spawn().await;
    app.project("set").await;
    let mut member = logged_in(&app, "member").await;
    let page = member.get("/projects/set").await;
    assert!(!page.contains("Project settings"), "members see no settings");
    let csrf = page.csrf();
    let refused = member.post("/projects/set/settings", &[("csrf", &csrf), ("name", "Mine")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut admin = logged_in(&app, "admin").await;
    let csrf = admin.get("/projects/set").await.csrf();
    let bad = admin
        .post(
            "/projects/set/settings",
            &[("csrf", &csrf), ("name", "Set"), ("max_parallel", "many")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.contains("role=\"alert\""));
    let saved = admin
        .post(
            "/projects/set/settings",
            &[
                ("csrf", &csrf),
                ("name", "Renamed"),
                ("branch", "main"),
                ("max_parallel", "5"),
                ("max_attempts", "4"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let shown = app.call(Method::GET, "/api/v1/projects/set", Some(&app.viewer), None).await;
    assert_eq!(
        (
            shown.body["name"].as_str(),
            shown.body["max_parallel"].as_i64(),
            shown.body["max_attempts"].as_i64()
        ),
        (Some("Renamed"), Some(5), Some(4))
    );
    let bead = app.bead("set", "Unfinished", json!({})).await;
    let kept = admin.post("/projects/set/delete", &[("csrf", &csrf)]).await;
    assert_eq!(kept.status, StatusCode::CONFLICT, "{}", kept.body);
    app.call(Method::POST, &format!("/api/v1/beads/{bead}/close"), Some(&app.member), None).await;
    let gone = admin.post("/projects/set/delete", &[("csrf", &csrf)]).await;
    assert_eq!((gone.status, gone.location.as_deref()), (StatusCode::SEE_OTHER, Some("/projects")));
    assert_eq!(admin.get("/projects/set").await.status, StatusCode::NOT_FOUND);
}
