//! The dashboard over HTTP: logging in and out, the one-time setup page, CSRF on forms,
//! escaping, security headers, assets, and how bad input and unknown pages are answered.

use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::browser::{Browser, logged_in};
use crate::support::{PASSWORD, spawn};

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
                &[("csrf", csrf), ("id", "evil"), ("name", "Evil"), ("repo", &app.repo("x"))],
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
            Some(json!({"id": "esc", "name": evil, "repo": app.repo("esc")})),
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
        .post(
            "/projects",
            &[("csrf", &csrf), ("id", "mine"), ("name", "Mine"), ("repo", &app.repo("x"))],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let mut admin = logged_in(&app, "admin").await;
    let csrf = admin.get("/projects").await.csrf();
    let bad = admin
        .post(
            "/projects",
            &[("csrf", &csrf), ("id", "Bad Id!"), ("name", "Kept"), ("repo", &app.repo("x"))],
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
                ("repo", &app.repo("x")),
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

#[tokio::test]
async fn a_malformed_query_or_id_on_a_page_is_an_error_page_not_json() {
    let app = spawn().await;
    let mut b = logged_in(&app, "admin").await;
    for (path, status) in [
        ("/analytics?days=many", StatusCode::BAD_REQUEST),
        ("/account/tokens/not-a-uuid/revoke", StatusCode::NOT_FOUND),
    ] {
        let page = if path.ends_with("revoke") {
            let csrf = b.get("/").await.csrf();
            b.post(path, &[("csrf", &csrf)]).await
        } else {
            b.get(path).await
        };
        assert_eq!(page.status, status, "{path}");
        assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
    }
    let api = app.call(Method::GET, "/api/v1/activity?limit=many", Some(&app.viewer), None).await;
    assert_eq!((api.status, api.code()), (StatusCode::BAD_REQUEST, "invalid_query"));
}
