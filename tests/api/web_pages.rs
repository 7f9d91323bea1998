//! The dashboard's agents, personas, activity and notifications pages: what they show, the
//! controls each role gets, and every way a form or a filter can be refused.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use loom::agents::{Agent, CurrentBead};
use loom::beads::Bead;
use loom::notifications::{Notification, Reason, Target};
use loom::users::User;

use crate::support::browser::{Browser, Page, logged_in};
use crate::support::{TestApp, spawn, spawn_with};

async fn agent(app: &TestApp, name: &str, persona: &str, project: Option<&str>) -> String {
    let body = json!({"name": name, "persona": persona, "project": project});
    let res = app.post("/api/v1/agents", body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

async fn agent_status(app: &TestApp, id: &str) -> String {
    let res = app.get(&format!("/api/v1/agents/{id}")).await;
    res.body["status"].as_str().unwrap_or_default().to_owned()
}

async fn sql(app: &TestApp, statement: &str) {
    let mut conn = app.pool.get().await.unwrap();
    diesel::sql_query(statement).execute(&mut conn).await.unwrap();
}

/// Every visible form control has a label pointing at it.
fn assert_labelled(page: &Page) {
    for tag in ["<input", "<select", "<textarea"] {
        for control in page.body.split(tag).skip(1) {
            let control = &control[..control.find('>').unwrap()];
            if control.contains("type=\"hidden\"") {
                continue;
            }
            let id = control.split("id=\"").nth(1).map(|s| s.split('"').next().unwrap());
            let id = id.unwrap_or_else(|| panic!("{tag}{control}> has no id"));
            assert!(page.contains(&format!("for=\"{id}\"")), "{tag}{control}> has no label");
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("&#38;", "&").replace("&amp;", "&")
}

/// The stream query of the page's live feed, if it follows one.
fn live_query(page: &Page) -> Option<String> {
    let marker = "data-live=\"feed\" data-query=\"";
    let at = page.body.find(marker)? + marker.len();
    Some(unescape(page.body[at..].split('"').next()?))
}

/// Where the page's `rel="next"` link goes.
fn next_link(page: &Page) -> Option<String> {
    let at = page.body.find("rel=\"next\"")?;
    let href = page.body[..at].rfind("href=\"")? + 6;
    Some(unescape(page.body[href..].split('"').next()?))
}

/// The rows of a feed list, by their activity id, in page order.
fn feed_ids(page: &Page) -> Vec<i64> {
    page.body
        .split("data-id=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn the_new_pages_send_a_visitor_without_a_session_to_log_in() {
    let app = spawn().await;
    let mut b = Browser::new(&app.base);
    for path in ["/agents", "/personas", "/personas/qa-engineer", "/activity", "/notifications"] {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location, Some(format!("/login?next={path}")), "{path}");
    }
    let page = b.post("/notifications/read-all", &[("csrf", "x")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "a form without a session logs in first");
}

#[tokio::test]
async fn the_agents_page_shows_each_agent_with_its_persona_project_bead_and_heartbeat() {
    let app = spawn().await;
    app.project("web").await;
    let ada = agent(&app, "ada", "software-engineer", Some("web")).await;
    let bob = agent(&app, "bob", "qa-engineer", None).await;
    let bead = app.bead("web", "Fix the <login>", json!({})).await;
    {
        let mut conn = app.pool.get().await.unwrap();
        let claim = Bead::claim(&mut conn, &bead, ada.parse().unwrap(), Duration::from_secs(60));
        claim.await.unwrap().expect("claimed");
    }
    sql(
        &app,
        "UPDATE agents SET last_heartbeat_at = now() - interval '5 minutes' WHERE name = 'ada'",
    )
    .await;

    let mut v = logged_in(&app, "viewer").await;
    let page = v.get("/agents").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let row = |id: &str| {
        let at = page.body.find(&format!("data-agent=\"{id}\"")).expect("the agent's row");
        page.body[at..at + page.body[at..].find("</tr>").unwrap()].to_owned()
    };
    let ada_row = row(&ada);
    for shown in [
        "ada",
        "href=\"/personas/software-engineer\"",
        "href=\"/projects/web\"",
        "working",
        &format!("href=\"/beads/{bead}\""),
        "Fix the &#60;login&#62;",
        "5 min ago",
    ] {
        assert!(ada_row.contains(shown), "{shown} in {ada_row}");
    }
    let bob_row = row(&bob);
    for shown in ["href=\"/personas/qa-engineer\"", "idle", "any", "never"] {
        assert!(bob_row.contains(shown), "{shown} in {bob_row}");
    }
    assert!(!bob_row.contains("/beads/"), "bob works on nothing");
    assert!(page.contains("<th scope=\"col\">Persona</th>") && page.contains("<th scope=\"row\">"));
    assert!(!page.contains("action=\"/agents"), "viewers get no agent controls");
    assert!(!page.contains("New agent"));
}

#[tokio::test]
async fn an_agents_current_bead_is_the_in_progress_one_assigned_to_it() {
    let app = spawn().await;
    app.project("cur").await;
    let ada: Uuid = agent(&app, "ada", "software-engineer", None).await.parse().unwrap();
    let bob: Uuid = agent(&app, "bob", "software-engineer", None).await.parse().unwrap();
    let worked = app.bead("cur", "Worked on", json!({})).await;
    let done = app.bead("cur", "Done before", json!({})).await;
    // A closed bead still naming bob (as after a crash) is not what he works on.
    assert_eq!(app.close(&done).await.status, StatusCode::OK);
    sql(&app, &format!("UPDATE beads SET assignee_agent_id = '{bob}' WHERE id = '{done}'")).await;
    let mut conn = app.pool.get().await.unwrap();
    Bead::claim(&mut conn, &worked, ada, Duration::from_secs(60)).await.unwrap().unwrap();
    let current = Agent::current_beads(&mut conn, &[ada, bob]).await.unwrap();
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!(current[&ada], CurrentBead { id: worked, title: "Worked on".into() });
    assert!(Agent::current_beads(&mut conn, &[]).await.unwrap().is_empty());
    let names = Agent::names(&mut conn, &[ada, Uuid::now_v7()]).await.unwrap();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), [(ada, "ada".to_owned())]);
}

#[tokio::test]
async fn members_pause_and_resume_agents_from_the_agents_page_and_viewers_cannot() {
    let app = spawn().await;
    app.project("pr").await;
    let ada = agent(&app, "ada", "software-engineer", None).await;
    let bead = app.bead("pr", "Work", json!({})).await;
    {
        let mut conn = app.pool.get().await.unwrap();
        let claim = Bead::claim(&mut conn, &bead, ada.parse().unwrap(), Duration::from_secs(60));
        claim.await.unwrap().unwrap();
    }
    let mut m = logged_in(&app, "member").await;
    let page = m.get("/agents").await;
    assert!(page.contains(&format!("action=\"/agents/{ada}/pause\"")), "{}", page.body);
    assert_labelled(&page);
    let csrf = page.csrf();

    // A forged or missing token changes nothing.
    for token in ["", "forged"] {
        let refused = m.post(&format!("/agents/{ada}/pause"), &[("csrf", token)]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{token:?}");
    }
    assert_eq!(agent_status(&app, &ada).await, "working");

    let paused = m.post(&format!("/agents/{ada}/pause"), &[("csrf", &csrf)]).await;
    assert_eq!(
        (paused.status, paused.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/agents"))
    );
    assert_eq!(agent_status(&app, &ada).await, "paused");
    assert_eq!(app.show(&bead).await["status"], "open", "its bead went back");
    let page = m.get("/agents").await;
    assert!(page.contains(&format!("action=\"/agents/{ada}/resume\"")), "{}", page.body);
    assert!(!page.contains(&format!("href=\"/beads/{bead}\"")), "it holds no bead now");

    let mut v = logged_in(&app, "viewer").await;
    let vcsrf = v.get("/agents").await.csrf();
    let refused = v.post(&format!("/agents/{ada}/resume"), &[("csrf", &vcsrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.contains("member"), "the page says which role it needs");
    assert_eq!(agent_status(&app, &ada).await, "paused");

    let resumed = m.post(&format!("/agents/{ada}/resume"), &[("csrf", &csrf)]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert_eq!(agent_status(&app, &ada).await, "idle");

    for unknown in [Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        for action in ["pause", "resume"] {
            let page = m.post(&format!("/agents/{unknown}/{action}"), &[("csrf", &csrf)]).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{unknown} {action}");
            assert!(page.contains("not found"), "{}", page.body);
        }
    }
}

#[tokio::test]
async fn members_create_agents_from_the_form_and_refusals_are_shown_in_place() {
    let app = spawn().await;
    app.project("web").await;
    let mut m = logged_in(&app, "member").await;
    let page = m.get("/agents").await;
    assert!(page.contains("New agent") && page.contains("No agents yet"), "{}", page.body);
    assert!(page.contains("<option value=\"qa-engineer\""), "personas offered");
    assert!(page.contains("<option value=\"web\""), "projects offered");
    assert_labelled(&page);
    let csrf = page.csrf();

    let made = m
        .post(
            "/agents",
            &[("csrf", &csrf), ("name", "cy"), ("persona", "qa-engineer"), ("project", "web")],
        )
        .await;
    assert_eq!((made.status, made.location.as_deref()), (StatusCode::SEE_OTHER, Some("/agents")));
    let unbound = m
        .post(
            "/agents",
            &[("csrf", &csrf), ("name", "dee"), ("persona", "qa-engineer"), ("project", "")],
        )
        .await;
    assert_eq!(unbound.status, StatusCode::SEE_OTHER);
    let listed = app.get("/api/v1/agents").await;
    let agents = listed.body["items"].as_array().unwrap();
    assert_eq!(
        agents
            .iter()
            .map(|a| (a["name"].as_str(), a["persona"].as_str(), a["project"].as_str()))
            .collect::<Vec<_>>(),
        [(Some("cy"), Some("qa-engineer"), Some("web")), (Some("dee"), Some("qa-engineer"), None)]
    );

    let cases = [
        (("Bad Name", "qa-engineer", ""), StatusCode::UNPROCESSABLE_ENTITY, "lowercase"),
        (("eve", "wizard", ""), StatusCode::UNPROCESSABLE_ENTITY, "no persona"),
        (("eve", "qa-engineer", "nope"), StatusCode::UNPROCESSABLE_ENTITY, "no project"),
        (("cy", "qa-engineer", ""), StatusCode::CONFLICT, "already exists"),
    ];
    for ((name, persona, project), status, reason) in cases {
        let form =
            [("csrf", csrf.as_str()), ("name", name), ("persona", persona), ("project", project)];
        let page = m.post("/agents", &form).await;
        assert_eq!(page.status, status, "{name} {persona} {project}: {}", page.body);
        assert!(
            page.contains("role=\"alert\"") && page.contains(reason),
            "{reason}: {}",
            page.body
        );
        assert!(page.contains(&format!("name=\"name\" value=\"{name}\"")), "the form is kept");
    }
    assert_eq!(app.get("/api/v1/agents").await.body["items"].as_array().unwrap().len(), 2);

    let refused =
        m.post("/agents", &[("csrf", "forged"), ("name", "eve"), ("persona", "qa-engineer")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let mut v = logged_in(&app, "viewer").await;
    let vcsrf = v.get("/agents").await.csrf();
    let refused =
        v.post("/agents", &[("csrf", &vcsrf), ("name", "eve"), ("persona", "qa-engineer")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/agents").await.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_agents_page_pages_by_name() {
    let app = spawn().await;
    sql(
        &app,
        "INSERT INTO agents (id, name, persona) \
         SELECT gen_random_uuid(), 'a' || lpad(n::text, 3, '0'), 'qa-engineer' FROM generate_series(1, 105) n",
    )
    .await;
    let mut v = logged_in(&app, "viewer").await;
    let first = v.get("/agents").await;
    assert_eq!(first.body.matches("data-agent=").count(), 100);
    assert_eq!(next_link(&first).as_deref(), Some("/agents?after=a100"));
    let second = v.get("/agents?after=a100").await;
    assert_eq!(second.body.matches("data-agent=").count(), 5);
    assert!(second.contains("a105") && !second.contains(">a100 "), "{}", second.body);
    assert!(!second.contains("rel=\"next\""));
    assert!(second.contains("href=\"/agents\">First page"));
}

#[tokio::test]
async fn personas_are_listed_and_each_page_renders_its_instructions_as_safe_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("PERSONA.md"), text).unwrap();
    };
    write(
        "builder",
        "---\nname: builder\ndisplay_name: The Builder\nrole: engineer\ndescription: Builds <things>.\n\
         labels: [backend, infra]\n---\n## How you work\n\nWrite **tests** first.\n\n\
         <script>alert(1)</script>\n\n[click](javascript:alert(1)) [docs](https://example.com/docs)\n",
    );
    write(
        "tester",
        "---\nname: tester\ndisplay_name: Tester\nrole: qa\nlabels: [qa]\n---\nTest it.\n",
    );
    let path = dir.path().to_owned();
    let app = spawn_with(move |c| c.personas_dir = Some(path)).await;
    let mut v = logged_in(&app, "viewer").await;

    let list = v.get("/personas").await;
    assert_eq!(list.status, StatusCode::OK);
    for shown in ["href=\"/personas/builder\"", "The Builder", "href=\"/personas/tester\"", "infra"]
    {
        assert!(list.contains(shown), "{shown}: {}", list.body);
    }
    assert!(list.contains("Builds &#60;things&#62;.") || list.contains("Builds &lt;things&gt;."));

    let page = v.get("/personas/builder").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.contains("<h1>The Builder"), "{}", page.body);
    assert!(
        page.contains("<h3>How you work</h3>"),
        "its headings sit under Instructions: {}",
        page.body
    );
    assert!(page.contains("<strong>tests</strong>"));
    assert!(page.contains("<a href=\"https://example.com/docs\">docs</a>"));
    assert!(!page.contains("<script>alert"), "raw HTML is text");
    assert!(!page.contains("href=\"javascript"), "unsafe links are dropped");
    assert!(page.contains("engineer") && page.contains("backend"));

    let missing = v.get("/personas/nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.contains("persona &quot;nobody&quot; not found")
            || missing.contains("persona &#34;nobody&#34; not found"),
        "{}",
        missing.body
    );
}

#[tokio::test]
async fn the_shipped_personas_all_have_pages() {
    let app = spawn().await;
    let mut v = logged_in(&app, "viewer").await;
    let list = v.get("/personas").await;
    let names: Vec<String> = list
        .body
        .split("href=\"/personas/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    for name in names {
        let page = v.get(&format!("/personas/{name}")).await;
        assert_eq!(page.status, StatusCode::OK, "{name}");
        assert!(page.contains("class=\"prose\""), "{name} has instructions");
    }
}

#[tokio::test]
async fn the_activity_page_shows_the_feed_newest_first_with_filters_and_follows_the_same_filters_live()
 {
    let app = spawn().await;
    app.project("alpha").await;
    app.project("beta").await;
    let first = app.bead("alpha", "First in alpha", json!({})).await;
    let second = app.bead("beta", "Then beta", json!({})).await;
    agent(&app, "ada", "software-engineer", Some("alpha")).await;

    let mut v = logged_in(&app, "viewer").await;
    let page = v.get("/activity").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_labelled(&page);
    let (at_first, at_second) = (page.body.find(&first).unwrap(), page.body.find(&second).unwrap());
    assert!(at_second < at_first, "newest first");
    let ids = feed_ids(&page);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert!(page.contains("by member"), "who did it");
    assert_eq!(live_query(&page).as_deref(), Some(""), "live, unfiltered");

    let alpha = v.get("/activity?project=alpha&kind=bead").await;
    assert_eq!(alpha.status, StatusCode::OK);
    assert!(alpha.contains(&first) && !alpha.contains(&second), "{}", alpha.body);
    assert!(!alpha.contains("kind\">agent.created<"), "only the bead family");
    assert!(alpha.contains("<option value=\"alpha\" selected>"));
    assert!(alpha.contains("<option value=\"bead\" selected>"));
    assert_eq!(live_query(&alpha).as_deref(), Some("?project=alpha&kind=bead"));
    let agents = v.get("/activity?kind=agent").await;
    assert!(
        agents.contains("kind\">agent.created<") && !agents.contains(&first),
        "{}",
        agents.body
    );
    let exact = v.get("/activity?kind=bead.created&project=beta").await;
    assert!(exact.contains(&second) && !exact.contains(&first));

    for (query, status) in [
        ("kind=bogus", StatusCode::UNPROCESSABLE_ENTITY),
        ("kind=notification", StatusCode::UNPROCESSABLE_ENTITY),
        ("agent=ada", StatusCode::UNPROCESSABLE_ENTITY),
        ("before=yesterday", StatusCode::BAD_REQUEST),
    ] {
        let bad = v.get(&format!("/activity?{query}")).await;
        assert_eq!(bad.status, status, "{query}");
        assert!(bad.contains("role=\"alert\""), "{query}: {}", bad.body);
        assert_eq!(live_query(&bad), None, "{query}: a refused filter follows nothing");
        assert!(bad.contains("<form method=\"get\" action=\"/activity\""), "the filters stay");
    }
}

#[tokio::test]
async fn the_activity_page_pages_to_older_rows_and_filters_by_agent() {
    let app = spawn().await;
    app.project("busy").await;
    let ada = agent(&app, "ada", "software-engineer", None).await;
    sql(
        &app,
        "INSERT INTO activity (kind, project_id, data) \
         SELECT 'project.updated', 'busy', jsonb_build_object('name', 'update ' || n) FROM generate_series(1, 60) n",
    )
    .await;
    sql(
        &app,
        &format!(
            "INSERT INTO activity (kind, project_id, actor_agent_id, data) \
             VALUES ('comment.added', 'busy', '{ada}', '{{\"summary\": \"said by ada\"}}')"
        ),
    )
    .await;
    let mut v = logged_in(&app, "viewer").await;
    let first = v.get("/activity?project=busy").await;
    let ids = feed_ids(&first);
    assert_eq!(ids.len(), 50);
    assert!(first.contains("by ada (agent)"), "{}", first.body);
    let older = format!("/activity?project=busy&before={}", ids[49]);
    assert_eq!(next_link(&first), Some(older.clone()));
    let second = v.get(&older).await;
    assert_eq!(second.status, StatusCode::OK);
    let rest = feed_ids(&second);
    assert_eq!(rest.len(), 12, "60 updates, ada's comment and the project's creation");
    assert!(rest[0] < ids[49]);
    assert_eq!(live_query(&second), None, "an older page stays as it is");
    assert!(!second.contains("rel=\"next\""), "nothing older");
    assert!(second.contains("href=\"/activity?project=busy\">Newest"), "{}", second.body);

    let by_ada = v.get(&format!("/activity?agent={ada}")).await;
    assert_eq!(feed_ids(&by_ada).len(), 1, "{}", by_ada.body);
    assert!(by_ada.contains("said by ada") && by_ada.contains("<strong>ada</strong>"));
    assert_eq!(live_query(&by_ada), Some(format!("?agent={ada}")));
    assert!(by_ada.contains(&format!("name=\"agent\" value=\"{ada}\"")), "the filter stays on");
}

/// Raises notifications for `user` directly: (reason, subject, bead, title).
async fn notify(
    app: &TestApp,
    user: &str,
    items: &[(Reason, &str, Option<&str>, &str)],
) -> Vec<i64> {
    let mut conn = app.pool.get().await.unwrap();
    let user_id = User::find_by_username(&mut conn, user).await.unwrap().unwrap().id;
    let targets: Vec<Target> = items
        .iter()
        .map(|(reason, subject, bead, title)| Target {
            user_id,
            reason: *reason,
            subject: (*subject).to_owned(),
            title: (*title).to_owned(),
            project_id: bead.map(|_| "note".to_owned()),
            bead_id: bead.map(str::to_owned),
        })
        .collect();
    let raised = Notification::raise(&mut conn, 1, &targets).await.unwrap();
    let mut ids: Vec<i64> = raised.iter().map(|n| n.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn notifications_are_listed_linked_and_marked_read_one_or_all() {
    let app = spawn().await;
    let ids = notify(
        &app,
        "member",
        &[
            (Reason::BeadClosed, "note-1", Some("note-1"), "Ship the <thing> closed"),
            (Reason::NeedsHuman, "note-2", Some("note-2"), "Which database?"),
            (Reason::GatewayDown, "gateway", None, "The gateway is down"),
        ],
    )
    .await;
    let theirs =
        notify(&app, "viewer", &[(Reason::Mention, "note-3", Some("note-3"), "Viewer's own")])
            .await;

    let mut m = logged_in(&app, "member").await;
    let page = m.get("/notifications").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for shown in [
        "href=\"/beads/note-1\"",
        "Ship the &#60;thing&#62; closed",
        "href=\"/beads/note-2\"",
        "needs a person",
        "The gateway is down",
    ] {
        assert!(page.contains(shown), "{shown}: {}", page.body);
    }
    assert!(!page.contains("Viewer's own") && !page.contains("Viewer&#39;s own"), "only one's own");
    assert!(page.contains("id=\"unread-count\">3<"), "the badge");
    let order: Vec<usize> = ["The gateway is down", "Which database?", "Ship the"]
        .iter()
        .map(|t| page.body.find(t).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "newest first");
    let csrf = page.csrf();

    // One read, from the unread filter: back to it, and it is gone from there.
    let read = m
        .post(&format!("/notifications/{}/read", ids[1]), &[("csrf", &csrf), ("unread", "true")])
        .await;
    assert_eq!(
        (read.status, read.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/notifications?unread=true"))
    );
    let unread = m.get("/notifications?unread=true").await;
    assert!(unread.contains("Ship the") && !unread.contains("Which database?"), "{}", unread.body);
    assert!(unread.contains("id=\"unread-count\">2<"));
    let all = m.get("/notifications").await;
    assert!(all.contains("Which database?"), "read ones stay in the list");
    assert!(
        !all.contains(&format!("action=\"/notifications/{}/read\"", ids[1])),
        "no button once read"
    );
    assert!(all.contains(&format!("action=\"/notifications/{}/read\"", ids[0])));

    // Refusals: a forged token, someone else's, an id that is none.
    let forged = m.post(&format!("/notifications/{}/read", ids[0]), &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let forged = m.post("/notifications/read-all", &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let other = m.post(&format!("/notifications/{}/read", theirs[0]), &[("csrf", &csrf)]).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(other.contains(&format!("notification {} not found", theirs[0])), "{}", other.body);
    for bad in ["999999", "nope"] {
        let page = m.post(&format!("/notifications/{bad}/read"), &[("csrf", &csrf)]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{bad}");
    }
    assert!(m.get("/notifications").await.contains("id=\"unread-count\">2<"), "nothing changed");

    let all_read = m.post("/notifications/read-all", &[("csrf", &csrf)]).await;
    assert_eq!(
        (all_read.status, all_read.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/notifications"))
    );
    let empty = m.get("/notifications?unread=true").await;
    assert!(empty.contains("Nothing unread.") && empty.contains("id=\"unread-count\">0<"));
    assert!(!empty.contains("Mark all read"));

    // Viewers manage their own, as in the API.
    let mut v = logged_in(&app, "viewer").await;
    let vcsrf = v.get("/notifications").await.csrf();
    let read = v.post(&format!("/notifications/{}/read", theirs[0]), &[("csrf", &vcsrf)]).await;
    assert_eq!(read.status, StatusCode::SEE_OTHER);
    let res =
        app.call(Method::GET, "/api/v1/notifications?unread=true", Some(&app.viewer), None).await;
    assert!(res.body["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn notifications_page_to_older_ones_and_keep_the_page_after_marking_one() {
    let app = spawn().await;
    let subjects: Vec<String> = (0..55).map(|i| format!("many-{i}")).collect();
    let items: Vec<(Reason, &str, Option<&str>, &str)> = subjects
        .iter()
        .map(|s| (Reason::BeadClosed, s.as_str(), Some(s.as_str()), s.as_str()))
        .collect();
    let ids = notify(&app, "member", &items).await;
    let mut m = logged_in(&app, "member").await;
    let first = m.get("/notifications").await;
    assert_eq!(first.body.matches("data-notification=").count(), 50);
    let cursor = ids[5];
    let older = format!("/notifications?before={cursor}");
    assert!(first.contains(&format!("href=\"{older}\" rel=\"next\"")), "{}", first.body);
    let second = m.get(&older).await;
    assert_eq!(second.body.matches("data-notification=").count(), 5);
    assert!(second.contains("href=\"/notifications\">Newest"));
    let csrf = second.csrf();
    let read = m
        .post(
            &format!("/notifications/{}/read", ids[0]),
            &[("csrf", &csrf), ("before", &cursor.to_string())],
        )
        .await;
    assert_eq!(read.location, Some(older), "back to the same page");
    let bad = m.get("/notifications?before=soon").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
