//! The chat pages over HTTP: pairing from a bead's page, a conversation's page (messages
//! rendered safely, action cards with results, the forms that work without scripts), and
//! what a viewer is refused.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::browser::logged_in;
use crate::support::chat::Pairing;
use crate::support::gateway::Reply;

#[tokio::test]
async fn a_member_pairs_from_the_bead_page_chats_without_scripts_and_hands_the_bead_back() {
    let p = Pairing::new(|_| {}).await;
    let bead = p.app.bead("web", "Tidy the parser", json!({})).await;
    let mut member = logged_in(&p.app, "member").await;
    let page = member.get(&format!("/beads/{bead}")).await;
    assert!(page.contains("Start pairing"), "{}", page.body);
    let started = member
        .post(
            &format!("/beads/{bead}/pair"),
            &[("csrf", &page.csrf()), ("persona", "software-engineer")],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let at = started.location.clone().unwrap();
    assert!(at.starts_with("/conversations/"), "{at}");
    let id = at.trim_start_matches("/conversations/").to_owned();

    // Paired: the bead page links the conversation and offers no second one.
    let page = member.get(&format!("/beads/{bead}")).await;
    assert!(page.contains(&format!("href=\"/conversations/{id}\"")));
    assert!(!page.contains("Start pairing"));
    assert!(page.contains("pairing on it"), "the hold says why it waits");

    // A message posted by the plain form; the reply acts and answers in markdown.
    p.script
        .push(Reply::tool_call("write_file", json!({"path": "notes.md", "content": "x\n"})))
        .push(Reply::text("Done: **bold** and <img src=x onerror=alert(1)>"));
    let chat = member.get(&at).await;
    assert_eq!(chat.status, StatusCode::OK);
    assert!(chat.contains("Pairing with <strong>software-engineer</strong>"), "{}", chat.body);
    let sent = member
        .post(
            &format!("{at}/messages"),
            &[("csrf", &chat.csrf()), ("body", "Add <script>alert(1)</script> notes")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let mut stream = p.stream(&id, Some(0)).await;
    stream.until("done").await;
    let chat = member.get(&at).await;
    assert!(
        chat.contains("Add &lt;script&gt;alert(1)&lt;/script&gt; notes")
            || chat.contains("Add &#60;script&#62;"),
        "escaped: {}",
        chat.body
    );
    assert!(!chat.contains("<script>alert(1)"));
    assert!(chat.contains("<strong>bold</strong>"), "markdown rendered");
    assert!(!chat.contains("<img src=x"), "raw HTML in a reply is not HTML");
    assert!(chat.contains("<code class=\"action\">write_file</code>"), "the action's card");
    assert!(chat.contains("action-card ok"), "with its result");
    assert!(chat.contains("id=\"chat-live\" hidden"), "nothing streams now");

    // Refusals are shown on the page: stopping when nothing streams.
    let stopped = member.post(&format!("{at}/stop"), &[("csrf", &chat.csrf())]).await;
    assert_eq!(stopped.status, StatusCode::CONFLICT);
    assert!(stopped.contains("no reply is streaming"), "{}", stopped.body);

    // A viewer reads it but has no forms, and cannot post.
    let mut viewer = logged_in(&p.app, "viewer").await;
    let seen = viewer.get(&at).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(!seen.contains("id=\"chat-form\""));
    let csrf = seen.csrf();
    let refused = viewer.post(&format!("{at}/messages"), &[("csrf", &csrf), ("body", "hi")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Handing back: the bead is ready again, the conversation takes no more messages.
    let handed = member.post(&format!("{at}/handoff"), &[("csrf", &chat.csrf())]).await;
    assert_eq!(handed.status, StatusCode::SEE_OTHER, "{}", handed.body);
    let chat = member.get(&at).await;
    assert!(chat.contains("Handed back") && !chat.contains("id=\"chat-form\""));
    assert_eq!(p.app.show(&bead).await["ready"], true);
    let late = p.try_say(&id, "one more thing", &p.app.member).await;
    assert_eq!((late.status, late.code()), (StatusCode::CONFLICT, "conversation_handed_off"));
    let unknown = member.get(&format!("/conversations/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
