//! Landing on the dashboard: a bead in review shows its diff and its agent's summary and
//! members decide there; a bead's page shows the checks that judged it; a project's page
//! shows its landing queue, and its board which step of landing each bead is in.

use reqwest::StatusCode;
use serde_json::json;

use crate::landing::{work_with, writes};
use crate::support::browser::{Page, logged_in};
use crate::web_work::column;

/// The part of a page from `start` to the end of the element it opens (`</tag>`).
fn part<'a>(page: &'a Page, start: &str, tag: &str) -> &'a str {
    let at = page.body.find(start).unwrap_or_else(|| panic!("{start} in {}", page.body));
    let end = page.body[at..].find(&format!("</{tag}>")).expect("its end");
    &page.body[at..at + end]
}

/// `text` as the page escapes it (askama writes `<` as `&#60;`).
fn escaped(text: &str) -> String {
    (text.replace('&', "&#38;").replace('<', "&#60;").replace('>', "&#62;"))
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn a_bead_in_review_shows_its_escaped_diff_and_summary_and_only_members_get_the_forms() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "human"})).await;
    let bead = w.bead("Add a page").await;
    writes(&w, &bead, "page.html", "<script>alert(1)</script>\n");
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "review");

    let mut member = logged_in(&w.app, "member").await;
    let page = member.get(&format!("/beads/{bead}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let review = part(&page, "id=\"bead-review\"", "section");
    assert!(review.contains("Wrote page.html."), "the agent's summary: {review}");
    assert!(review.contains(&format!("<code>loom/{bead}</code>")), "{review}");
    assert!(review.contains("· 1 file</small>"), "{review}");
    assert!(review.contains("+++ b/page.html"), "{review}");
    let line = format!("<span class=\"add\">+{}</span>", escaped("<script>alert(1)</script>"));
    assert!(review.contains(&line), "the diff, escaped: {review}");
    assert!(!page.contains("<script>alert(1)"), "nothing of the diff runs");
    assert!(review.contains(&format!("action=\"/beads/{bead}/approve\"")), "{review}");
    assert!(review.contains(&format!("action=\"/beads/{bead}/request-changes\"")), "{review}");

    let mut viewer = logged_in(&w.app, "viewer").await;
    let page = viewer.get(&format!("/beads/{bead}")).await;
    let review = part(&page, "id=\"bead-review\"", "section");
    assert!(review.contains(&line) && review.contains("Wrote page.html."), "{review}");
    assert!(!page.contains("/approve\""), "viewers get no review forms");
    assert!(!page.contains("/request-changes\""), "viewers get no review forms");
}

#[tokio::test]
async fn members_approve_on_the_bead_page_and_a_request_without_a_body_is_refused_there() {
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"review": "human"})).await;
    let bead = w.bead("Reviewed here").await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    let mut member = logged_in(&w.app, "member").await;
    let csrf = member.get(&format!("/beads/{bead}")).await.csrf();

    let changes = format!("/beads/{bead}/request-changes");
    let refused = member.post(&changes, &[("csrf", &csrf), ("body", "  ")]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert!(refused.contains("role=\"alert\">say what should change"), "{}", refused.body);
    assert_eq!(w.show(&bead).await["status"], "review");

    let mut viewer = logged_in(&w.app, "viewer").await;
    let viewer_csrf = viewer.get(&format!("/beads/{bead}")).await.csrf();
    let approve = format!("/beads/{bead}/approve");
    let forbidden = viewer.post(&approve, &[("csrf", &viewer_csrf)]).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let forged = member.post(&approve, &[("csrf", "not-the-token")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(w.show(&bead).await["status"], "review");

    let approved = member.post(&approve, &[("csrf", &csrf), ("body", "Looks right.")]).await;
    assert_eq!(
        (approved.status, approved.location.as_deref()),
        (StatusCode::SEE_OTHER, Some(format!("/beads/{bead}").as_str()))
    );
    let shown = w.show(&bead).await;
    assert_eq!(shown["status"], "landing", "{shown}");
    assert!(shown["comments"].to_string().contains("Looks right."), "{shown}");
    let page = member.get(&format!("/beads/{bead}")).await;
    assert!(!page.contains("id=\"bead-review\""), "a bead out of review has no review panel");
    let again = member.post(&approve, &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.contains("not in review"), "{}", again.body);

    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "closed");
    assert_eq!(w.upstream.file("b.txt"), "b\n");
}

#[tokio::test]
async fn the_project_page_shows_the_queue_and_the_board_shows_each_beads_step() {
    let settings = json!({"review": "human", "check_command": "test -f one.txt"});
    let mut w = work_with(&[("a.txt", "a\n")], 2, settings).await;
    let first = w.bead("First to land").await;
    let second = w.bead("Still in review").await;
    writes(&w, &first, "one.txt", "1\n");
    writes(&w, &second, "two.txt", "2\n");
    w.settle().await;
    let res = w.app.post(&format!("/api/v1/beads/{first}/approve"), json!({})).await;
    assert_eq!(res.status.as_u16(), 200, "{:?}", res.body);

    let mut viewer = logged_in(&w.app, "viewer").await;
    let page = viewer.get("/projects/web").await;
    assert_eq!(page.status, StatusCode::OK);
    let check = part(&page, "id=\"check-line\"", "p");
    assert!(check.contains("<code>test -f one.txt</code>"), "{check}");
    let waiting = part(&page, "id=\"queue-waiting\"", "ol");
    assert!(waiting.contains(&format!("<code>{first}</code> First to land")), "{waiting}");
    assert!(waiting.contains("queued <time"), "how long it waits: {waiting}");
    let in_review = part(&page, "id=\"queue-review\"", "ul");
    assert!(in_review.contains(&format!("<code>{second}</code> Still in review")), "{in_review}");
    assert!(!page.contains("id=\"queue-recent\""), "no check has finished yet");
    let mut landing = column(&page.body, "landing");
    landing.sort();
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(landing, both);
    let card = |id: &str| part(&page, &format!("data-bead=\"{id}\""), "li").to_owned();
    assert!(card(&first).contains("class=\"stage stage-landing\""), "{}", card(&first));
    assert!(card(&second).contains("class=\"stage stage-review\""), "{}", card(&second));

    w.settle().await;
    assert_eq!(w.show(&first).await["status"], "closed");
    let page = viewer.get("/projects/web").await;
    let recent = part(&page, "id=\"queue-recent\"", "table");
    assert!(recent.contains("<strong>green</strong>"), "{recent}");
    assert!(recent.contains(&format!("<code>{first}</code>")), "{recent}");
    assert!(recent.contains("<td data-label=\"Landed\">landed</td>"), "{recent}");
    assert!(!page.contains("id=\"queue-waiting\""), "nothing waits");
    assert!(part(&page, "id=\"queue-review\"", "ul").contains(&second));
    assert_eq!(column(&page.body, "landing"), [second]);
    let alone = viewer.get("/projects/web/queue").await;
    assert_eq!(alone.status, StatusCode::OK);
    assert!(!alone.contains("<html"), "only the queue, for live updates");
    assert!(part(&alone, "id=\"queue-recent\"", "table").contains("<strong>green</strong>"));
    assert_eq!(viewer.get("/projects/nope/queue").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bead_page_shows_a_red_checks_output_escaped_and_a_project_without_a_check_says_so() {
    let check = "echo '<b>test_app</b> FAILED'; exit 3";
    let mut w = work_with(&[("a.txt", "a\n")], 1, json!({"check_command": check})).await;
    let bead = w.bead("Break the app").await;
    writes(&w, &bead, "b.txt", "b\n");
    w.settle().await;
    assert_eq!(w.show(&bead).await["status"], "open", "sent back");

    let mut viewer = logged_in(&w.app, "viewer").await;
    let page = viewer.get(&format!("/beads/{bead}")).await;
    let checks = part(&page, "id=\"bead-checks\"", "ol");
    assert!(checks.contains("class=\"check outcome-red\""), "{checks}");
    assert!(checks.contains("<strong>red</strong> · exit code 3"), "{checks}");
    assert!(checks.contains("not landed"), "{checks}");
    assert!(checks.contains(&format!("<code>{}</code>", escaped(check))), "{checks}");
    let output = part(&page, "<details class=\"check-output\">", "details");
    assert!(output.contains(&escaped("<b>test_app</b> FAILED")), "{output}");
    assert!(!page.contains("<b>test_app</b>"), "the output is text, not markup");
    let project = viewer.get("/projects/web").await;
    let recent = part(&project, "id=\"queue-recent\"", "table");
    assert!(recent.contains("<strong>red</strong>") && recent.contains("exit 3"), "{recent}");

    let admin = w.app.admin.clone();
    let cleared = w
        .app
        .call(
            reqwest::Method::PATCH,
            "/api/v1/projects/web",
            Some(&admin),
            Some(json!({"check_command": null})),
        )
        .await;
    assert_eq!(cleared.status.as_u16(), 200, "{:?}", cleared.body);
    let project = viewer.get("/projects/web").await;
    let line = part(&project, "id=\"check-line\"", "p");
    assert!(line.contains("No check command: merges land unchecked"), "{line}");
}
