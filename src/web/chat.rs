//! A conversation's page: the messages so far (markdown rendered safely, each reply with the
//! actions it took and their results), the reply streaming now, and the forms to send, stop
//! and hand the bead back. `loom.js` follows the conversation's stream and swaps in the
//! server-rendered messages when a reply ends; without scripts the forms still work.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::bead_parts::action_parts;
use super::markdown;
use super::page::{Layout, Nav, PageError, Viewer, html, see_other};
use super::view::ago;
use crate::agents::Agent;
use crate::chat::{
    ChatEvent, ChatMessage, ChatRole, ChatState, Conversation, ConversationDetails,
    ConversationStatus, EventKind,
};
use crate::error::Error;
use crate::users::{Role, User};

/// One action of a reply, with its result once there is one.
pub struct ActionCard {
    pub name: String,
    pub detail: String,
    pub ok: Option<bool>,
    pub output: String,
}

pub struct MessageView {
    pub id: i64,
    pub role: &'static str,
    pub author: String,
    pub when: String,
    pub at: String,
    pub html: String,
    /// The raw text, for the reply streaming now (the script appends to it).
    pub text: String,
    pub state: &'static str,
    pub error: Option<String>,
    pub actions: Vec<ActionCard>,
}

#[derive(Template)]
#[template(path = "chat.html")]
struct ChatPage {
    layout: Layout,
    conversation: Conversation,
    with: String,
    messages: Vec<MessageView>,
    /// The reply being written, if one is.
    live: Option<MessageView>,
    /// The stream resumes after this event: everything before it is on the page.
    after: i64,
    open: bool,
    can_write: bool,
    error: Option<String>,
}

/// Actions shown per conversation page; older ones are left out.
const ACTIONS: i64 = 1_000;

async fn render(
    viewer: &Viewer,
    id: Uuid,
    error: Option<Error>,
) -> Result<HttpResponse, PageError> {
    let mut conn = viewer.state.pool.get().await?;
    // One snapshot: the messages and the id the stream resumes after agree exactly, so no
    // text is shown twice or missed.
    let (details, events, after) = conn
        .build_transaction()
        .repeatable_read()
        .read_only()
        .run(async move |conn| {
            let details = Conversation::details(conn, id).await?;
            let kinds = [EventKind::Action, EventKind::ActionResult];
            let events = ChatEvent::latest_of(conn, id, &kinds, ACTIONS).await?;
            let after = ChatEvent::last_id(conn, id).await?;
            Ok::<_, Error>((details, events, after))
        })
        .await?;
    let ConversationDetails { conversation, messages } = details;
    let user_ids: Vec<Uuid> = messages.iter().filter_map(|m| m.author_user_id).collect();
    let people = User::names(&mut conn, &user_ids).await?;
    let agent_ids: Vec<Uuid> = conversation.agent_id.into_iter().collect();
    let agents = Agent::names(&mut conn, &agent_ids).await?;
    drop(conn);
    let speaker = conversation
        .agent_id
        .and_then(|a| agents.get(&a).cloned())
        .unwrap_or_else(|| conversation.persona.clone());
    let with = match conversation.agent_id {
        Some(_) => format!("{speaker} ({})", conversation.persona),
        None => speaker.clone(),
    };
    let mut cards = cards(events);
    let mut views: Vec<MessageView> =
        messages.into_iter().map(|m| view(m, &people, &speaker, &mut cards)).collect();
    let live = match views.last() {
        Some(v) if v.state == "streaming" => views.pop(),
        _ => None,
    };
    let layout = viewer.layout(conversation.title.clone(), Nav::Projects).await?;
    let status = super::page::status_of(error.as_ref());
    let page = ChatPage {
        layout,
        open: conversation.status == ConversationStatus::Open,
        with,
        messages: views,
        live,
        after,
        can_write: viewer.can_write(),
        error: error.map(|e| e.to_string()),
        conversation,
    };
    Ok(html(status, page.render()))
}

/// Each reply's actions, paired with their results, in order.
fn cards(events: Vec<ChatEvent>) -> HashMap<i64, Vec<ActionCard>> {
    let mut by_message: HashMap<i64, Vec<ActionCard>> = HashMap::new();
    for e in events {
        let Some(message) = e.message_id else { continue };
        let list = by_message.entry(message).or_default();
        if e.kind == EventKind::Action.as_str() {
            let (name, detail) = action_parts(&e.data["action"]);
            list.push(ActionCard { name, detail, ok: None, output: String::new() });
        } else if let Some(card) = list.last_mut().filter(|c| c.ok.is_none()) {
            card.ok = e.data["ok"].as_bool();
            card.output = e.data["output"].as_str().unwrap_or_default().to_owned();
        }
    }
    by_message
}

fn view(
    m: ChatMessage,
    people: &HashMap<Uuid, String>,
    speaker: &str,
    cards: &mut HashMap<i64, Vec<ActionCard>>,
) -> MessageView {
    let author = match m.role {
        ChatRole::User => m
            .author_user_id
            .and_then(|u| people.get(&u).cloned())
            .unwrap_or_else(|| "someone".into()),
        ChatRole::Assistant => speaker.to_owned(),
    };
    MessageView {
        id: m.id,
        role: match m.role {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        },
        author,
        when: ago(m.created_at),
        at: m.created_at.to_rfc3339(),
        html: markdown::render(&m.body),
        state: match m.state {
            ChatState::Complete => "complete",
            ChatState::Streaming => "streaming",
            ChatState::Stopped => "stopped",
            ChatState::Failed => "failed",
        },
        text: m.body,
        error: m.error,
        actions: cards.remove(&m.id).unwrap_or_default(),
    }
}

/// `GET /conversations/{id}`.
pub async fn page(viewer: Viewer, id: web::Path<Uuid>) -> Result<HttpResponse, PageError> {
    render(&viewer, id.into_inner(), None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ChatForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
}

/// `POST /conversations/{id}/{action}`: send a message, stop the reply, or hand the bead
/// back; then the page again (with the reason when it was refused). The page's script
/// uses the API for the first two, so these are what works without it.
pub async fn act(
    viewer: Viewer,
    path: web::Path<(Uuid, String)>,
    form: web::Form<ChatForm>,
) -> Result<HttpResponse, PageError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require(Role::Member)?;
    let (id, action) = path.into_inner();
    let state = &viewer.state;
    let mut conn = state.pool.get().await?;
    let done: Result<(), Error> = match action.as_str() {
        "messages" => state.chat.post(&mut conn, id, &form.body, viewer.user.id).await.map(drop),
        "stop" => state.chat.stop(&mut conn, id).await.map(drop),
        "handoff" => {
            let handed = Conversation::handoff(&mut conn, id, viewer.user.id).await;
            if handed.is_ok() {
                state.nudge.wake();
            }
            handed.map(drop)
        }
        _ => return Err(Error::not_found("action").into()),
    };
    drop(conn);
    match done {
        Ok(()) => Ok(see_other(&format!("/conversations/{id}"))),
        Err(e) if super::page::is_refusal(&e) => render(&viewer, id, Some(e)).await,
        Err(e) => Err(e.into()),
    }
}
