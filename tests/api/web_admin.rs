//! The dashboard's people pages over HTTP: users and roles (admins), and everyone's own API
//! tokens.

use reqwest::{Method, StatusCode};

use crate::support::browser::{Browser, logged_in};
use crate::support::{TestApp, spawn};

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
