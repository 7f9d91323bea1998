//! Shared test support: a database per test and the real server on an ephemeral port.

pub mod browser;
pub mod chat;
pub mod cli;
pub mod db;
pub mod gateway;
pub mod replica;
pub mod serve;
pub mod sse;
pub mod work;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use db::TestDb;
use loom::db::Pool;
use loom::users::tokens::ApiToken;
use loom::users::{Role, User, Username};

pub const PASSWORD: &str = "correct horse battery";

/// The running service with one user of each role.
pub struct TestApp {
    pub base: String,
    pub pool: Pool,
    pub admin: String,
    pub member: String,
    pub viewer: String,
    http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    bus: loom::events::Bus,
    wakers: loom::notifications::NotificationWakers,
    /// Where `repo` makes the test's repositories.
    repos: tempfile::TempDir,
    _db: TestDb,
}

/// A response: status and parsed JSON body (null when empty).
#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub body: Value,
}

impl Res {
    /// The error code, for error responses.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts the app after `adjust` has changed its configuration.
pub async fn spawn_with(adjust: impl FnOnce(&mut loom::config::Config)) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::new().await;
    let data_dir = std::env::temp_dir().join(format!("loom-test-{}", db.name));
    let mut config = loom::config::Config::for_database(&db.url, data_dir);
    only_the_bus_wakes_notification_streams(&mut config);
    adjust(&mut config);
    let app = loom::app::Application::build(config).await.expect("start the app");
    let bus = app.bus().clone();
    let wakers = app.notification_wakers().clone();
    let (port, pool, handle) = app.spawn();
    let mut conn = pool.get().await.expect("conn");
    let mut token_for = async |name: &str, role: Role| {
        let user = User::create(&mut conn, &Username::parse(name).expect("name"), PASSWORD, role)
            .await
            .expect("user");
        ApiToken::create(&mut conn, user.id, "test", None).await.expect("token").secret
    };
    let admin = token_for("admin", Role::Admin).await;
    let member = token_for("member", Role::Member).await;
    let viewer = token_for("viewer", Role::Viewer).await;
    drop(conn);
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        pool,
        admin,
        member,
        viewer,
        // Idle connections are dropped before the server's keep-alive (5 s) ends them: a
        // request sent on a connection the server is closing fails as an incomplete message.
        http: reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("an HTTP client"),
        handle,
        bus,
        wakers,
        repos: tempfile::tempdir().expect("a temp dir for repositories"),
        _db: db,
    }
}

/// Puts the notification wakers' poll of Postgres out of any test's reach, so a stream
/// gets a raise in time only if its bus event woke it: a lost wake-up fails the test
/// instead of arriving at the next poll. A test of the poll sets its own.
pub fn only_the_bus_wakes_notification_streams(config: &mut loom::config::Config) {
    config.events.notification_poll = std::time::Duration::from_secs(600);
}

impl TestApp {
    /// The test database, for processes the test starts.
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    /// The app's event bus.
    pub fn bus(&self) -> &loom::events::Bus {
        &self.bus
    }

    /// What wakes the app's notification streams.
    pub fn notification_wakers(&self) -> &loom::notifications::NotificationWakers {
        &self.wakers
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Res {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Res { status, body }
    }

    pub async fn get(&self, path: &str) -> Res {
        self.call(Method::GET, path, Some(&self.member.clone()), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Res {
        self.call(Method::POST, path, Some(&self.member.clone()), Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Res {
        self.call(Method::PATCH, path, Some(&self.member.clone()), Some(body)).await
    }

    pub async fn delete(&self, path: &str, body: Option<Value>) -> Res {
        self.call(Method::DELETE, path, Some(&self.member.clone()), body).await
    }

    /// A new empty bare repository (`git init --bare`) named `name`, for a project: its
    /// path. Projects are refused a local path that is not a repository.
    pub fn repo(&self, name: &str) -> String {
        let path = self.repos.path().join(format!("{name}.git"));
        if !path.exists() {
            let out = std::process::Command::new("git")
                .args(["init", "-q", "--bare"])
                .arg(&path)
                .output()
                .expect("run git");
            assert!(out.status.success(), "git init: {}", String::from_utf8_lossy(&out.stderr));
        }
        path.to_string_lossy().into_owned()
    }

    /// Creates a project as admin on an empty repository of its own; its prefix is its id.
    pub async fn project(&self, id: &str) -> Value {
        let repo = self.repo(id);
        let res = self
            .call(
                Method::POST,
                "/api/v1/projects",
                Some(&self.admin.clone()),
                Some(json!({ "id": id, "name": format!("Project {id}"), "repo": repo })),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
        res.body
    }

    /// Files a bead and returns its id; `extra` fields are merged into the request.
    pub async fn bead(&self, project: &str, title: &str, extra: Value) -> String {
        let mut body = json!({ "project": project, "title": title });
        if let Value::Object(map) = extra {
            for (k, v) in map {
                body[k] = v;
            }
        }
        let res = self.post("/api/v1/beads", body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
        res.body["id"].as_str().expect("id").to_owned()
    }

    pub async fn show(&self, id: &str) -> Value {
        let res = self.get(&format!("/api/v1/beads/{id}")).await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
        res.body
    }

    pub async fn depend(&self, id: &str, on: &str, kind: &str) -> Res {
        self.post(
            &format!("/api/v1/beads/{id}/dependencies"),
            json!({ "depends_on": on, "kind": kind }),
        )
        .await
    }

    pub async fn close(&self, id: &str) -> Res {
        self.post(&format!("/api/v1/beads/{id}/close"), json!({})).await
    }

    /// Ids of ready beads, in dispatch order.
    pub async fn ready_ids(&self, project: &str) -> Vec<String> {
        let res = self.get(&format!("/api/v1/beads/ready?project={project}&limit=500")).await;
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
        ids(&res.body["items"])
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting; the database is dropped after (field order).
        drop(self.handle.stop(false));
    }
}

pub fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
