//! A conversation's world for tests: the app with a scripted gateway, the project `web` on a
//! real upstream repository, and helpers to start conversations, post and follow them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::gateway::ScriptedGateway;
use super::sse::SseClient;
use super::work::{Upstream, gateway_config};
use super::{TestApp, spawn_with};

pub struct Pairing {
    pub app: TestApp,
    pub script: ScriptedGateway,
    pub upstream: Upstream,
    pub data: tempfile::TempDir,
}

impl Pairing {
    /// The app (with `adjust` applied to its configuration) and the project `web`.
    pub async fn new(adjust: impl FnOnce(&mut loom::config::Config)) -> Pairing {
        let data = tempfile::tempdir().expect("tempdir");
        let script = ScriptedGateway::start().await;
        let (dir, url) = (data.path().to_owned(), script.url());
        let app = spawn_with(move |c| {
            c.data_dir = dir;
            c.gateway = Some(gateway_config(&url));
            adjust(c);
        })
        .await;
        let upstream = Upstream::new(&[("README.md", "# Web\n"), ("src/app.py", "x = 1\n")]);
        let repo = upstream.path().to_string_lossy().into_owned();
        let res = app
            .call(
                Method::POST,
                "/api/v1/projects",
                Some(&app.admin.clone()),
                Some(json!({"id": "web", "name": "Web", "repo": repo, "branch": "main"})),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
        Pairing { app, script, upstream, data }
    }

    /// A conversation with the software engineer persona, on `bead` if given.
    pub async fn conversation(&self, bead: Option<&str>) -> String {
        let body = json!({"project": "web", "persona": "software-engineer", "bead": bead});
        let res = self
            .app
            .call(Method::POST, "/api/v1/conversations", Some(&self.app.member), Some(body))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
        res.body["id"].as_str().expect("id").to_owned()
    }

    /// Posts `body` as the member; the 202's body.
    pub async fn say(&self, conversation: &str, body: &str) -> Value {
        let res = self.try_say(conversation, body, &self.app.member).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{:?}", res.body);
        res.body
    }

    pub async fn try_say(&self, conversation: &str, body: &str, token: &str) -> super::Res {
        let path = format!("/api/v1/conversations/{conversation}/messages");
        self.app.call(Method::POST, &path, Some(token), Some(json!({ "body": body }))).await
    }

    /// The conversation's stream, after the event `after` (from now on without).
    pub async fn stream(&self, conversation: &str, after: Option<i64>) -> SseClient {
        let url = format!("{}/api/v1/conversations/{conversation}/stream", self.app.base);
        let after = after.map(|a| a.to_string());
        SseClient::open(&url, &self.app.viewer, after.as_deref()).await
    }

    pub async fn details(&self, conversation: &str) -> Value {
        let path = format!("/api/v1/conversations/{conversation}");
        let res = self.app.call(Method::GET, &path, Some(&self.app.viewer), None).await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
        res.body
    }

    /// Where Loom's worktree named `name` (a bead id, or `chat-<conversation>`) is.
    pub fn worktree(&self, name: &str) -> std::path::PathBuf {
        self.data.path().join("worktrees").join("web").join(name)
    }
}
