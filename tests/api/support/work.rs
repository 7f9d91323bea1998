//! Agents doing real work in tests: an upstream git repository (made and read with the
//! `git` command line, as a person would), the service with a scripted gateway, and the
//! dispatcher and executors driven step by step.
#![allow(dead_code)] // each test uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use loom::config::Secret;
use loom::dispatch::{DispatchConfig, Dispatcher, Nudge};
use loom::executor::{ExecutorConfig, Executors, Limits};
use loom::gateway::retry::RetryPolicy as GatewayRetry;
use loom::gateway::{Gateway, GatewayConfig, HealthState};
use loom::workbench::actions::ToolsSetting;

use super::gateway::ScriptedGateway;
use super::{TestApp, spawn_with};

pub const KEY: &str = "sk-work-test";

/// Runs git in `dir`; panics with its output when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Pat")
        .env("GIT_AUTHOR_EMAIL", "pat@example.com")
        .env("GIT_COMMITTER_NAME", "Pat")
        .env("GIT_COMMITTER_EMAIL", "pat@example.com")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare upstream repository with one commit on `main` holding `files`; with no files, an
/// empty one, as `git init --bare` makes it.
pub struct Upstream {
    pub dir: tempfile::TempDir,
}

impl Upstream {
    pub fn new(files: &[(&str, &str)]) -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        if files.is_empty() {
            git(dir.path(), &["init", "-q", "--bare", "origin.git"]);
            return Upstream { dir };
        }
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("mkdir");
        git(&work, &["init", "-q", "-b", "main"]);
        for (path, content) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "Initial commit"]);
        git(dir.path(), &["clone", "-q", "--bare", "work", "origin.git"]);
        Upstream { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path(), args)
    }

    /// A file on `main`, as upstream has it now.
    pub fn file(&self, path: &str) -> String {
        self.git(&["show", &format!("main:{path}")])
    }

    /// `main`'s commits, newest first: (subject, author name <email>, parents count).
    pub fn log(&self) -> Vec<(String, String, usize)> {
        self.git(&["log", "main", "--format=%s%x1f%an <%ae>%x1f%p"])
            .lines()
            .map(|l| {
                let parts: Vec<&str> = l.split('\u{1f}').collect();
                (parts[0].to_owned(), parts[1].to_owned(), parts[2].split_whitespace().count())
            })
            .collect()
    }
}

/// The service, a scripted gateway, an upstream project and one agent.
pub struct Work {
    pub app: TestApp,
    pub script: ScriptedGateway,
    pub upstream: Upstream,
    pub data: tempfile::TempDir,
    pub health: HealthState,
    pub gateway: Gateway,
    pub dispatcher: Dispatcher,
    pub executors: Executors,
    pub agents: Vec<String>,
}

pub fn gateway_config(url: &str) -> GatewayConfig {
    let mut c = GatewayConfig::new(url, "scripted-model");
    c.api_key = Some(Secret::new(KEY));
    c.retry = GatewayRetry {
        max_attempts: 3,
        base: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    // Every refusal sends its own canary (production shares one every few seconds).
    c.canary_interval = Duration::ZERO;
    c
}

/// The service as a person runs it, dispatcher, executors and probe in the background, on
/// `gateway`: nothing drives the work but the service.
pub async fn serving(gateway: GatewayConfig) -> TestApp {
    spawn_with(|c| {
        c.gateway = Some(gateway);
        c.executors = Some(ExecutorConfig::default());
        c.dispatchers = 1;
        c.dispatch.require_executor = true;
    })
    .await
}

impl Work {
    /// `agents` unbound software engineers; the project `web` on the upstream, with
    /// `max_parallel` beads at once.
    pub async fn new(files: &[(&str, &str)], agents: usize, limits: Limits) -> Work {
        Work::build(
            files,
            agents,
            limits,
            false,
            loom::workbench::Sandbox::default(),
            ToolsSetting::Auto,
        )
        .await
    }

    /// The same, chats included, with replies carrying their actions as JSON in the text
    /// (`LOOM_GATEWAY_TOOLS=text`): no tools are sent.
    pub async fn replying_in_text(files: &[(&str, &str)], limits: Limits) -> Work {
        Work::with_tools(files, limits, ToolsSetting::Text).await
    }

    /// The same, chats included, with `LOOM_GATEWAY_TOOLS` set to `tools`.
    pub async fn with_tools(files: &[(&str, &str)], limits: Limits, tools: ToolsSetting) -> Work {
        let sandbox = loom::workbench::Sandbox::default();
        Work::build(files, 1, limits, true, sandbox, tools).await
    }

    /// The same, with agents' commands run in `sandbox` (its limits, its user, or `off`).
    pub async fn sandboxed(
        files: &[(&str, &str)],
        agents: usize,
        limits: Limits,
        sandbox: loom::workbench::Sandbox,
    ) -> Work {
        Work::build(files, agents, limits, false, sandbox, ToolsSetting::Auto).await
    }

    /// The same, with the app itself talking to the scripted gateway too (for chat replies).
    pub async fn with_chat(files: &[(&str, &str)], agents: usize, limits: Limits) -> Work {
        Work::build(
            files,
            agents,
            limits,
            true,
            loom::workbench::Sandbox::default(),
            ToolsSetting::Auto,
        )
        .await
    }

    async fn build(
        files: &[(&str, &str)],
        agents: usize,
        limits: Limits,
        chat: bool,
        sandbox: loom::workbench::Sandbox,
        tools: ToolsSetting,
    ) -> Work {
        // The app and the executors share the data dir, so pages read the clones they make.
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().to_owned();
        let script = ScriptedGateway::start().await;
        script.require_key(KEY);
        let url = script.url();
        let app = spawn_with(move |c| {
            c.data_dir = dir;
            if chat {
                c.gateway = Some(gateway_config(&url));
            }
            c.chat.tools = tools;
        })
        .await;
        let upstream = Upstream::new(files);
        let repo = upstream.path().to_string_lossy().into_owned();
        let res = app
            .call(
                Method::POST,
                "/api/v1/projects",
                Some(&app.admin.clone()),
                Some(json!({"id": "web", "name": "Web", "repo": repo, "branch": "main", "max_parallel": 4})),
            )
            .await;
        assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
        let mut ids = Vec::new();
        for i in 0..agents {
            let body = json!({"name": format!("ada{i}"), "persona": "software-engineer"});
            let res = app.post("/api/v1/agents", body).await;
            assert_eq!(res.status.as_u16(), 201, "{:?}", res.body);
            ids.push(res.body["id"].as_str().expect("id").to_owned());
        }
        let health = HealthState::default();
        let gateway =
            Gateway::new(gateway_config(&script.url()), health.clone(), Some(app.pool.clone()))
                .expect("gateway");
        let dispatcher =
            Dispatcher::new(app.pool.clone(), DispatchConfig::default(), Nudge::default());
        let config = ExecutorConfig { limits, sandbox, tools, ..ExecutorConfig::default() };
        let executors = Executors::start(
            app.pool.clone(),
            gateway.clone(),
            data.path(),
            loom::beads::RetryPolicy::default(),
            config,
        )
        .publishing_to(app.bus().clone());
        Work { app, script, upstream, data, health, gateway, dispatcher, executors, agents: ids }
    }

    /// Dispatches and works until nothing is left to claim or run.
    pub async fn settle(&mut self) {
        loop {
            let claimed = self.dispatcher.run_until_idle().await.expect("dispatch");
            self.executors.run_until_idle().await.expect("execute");
            if claimed == 0 {
                return;
            }
        }
    }

    pub async fn bead(&self, title: &str) -> String {
        self.app.bead("web", title, json!({})).await
    }

    pub async fn show(&self, id: &str) -> Value {
        self.app.show(id).await
    }

    /// A `loom serve` beside this process, on its database, data dir and scripted gateway,
    /// with a 3 s ownership lease: a replica a test can kill to see its work taken over.
    pub fn serve_beside(&self) -> crate::support::serve::Server {
        let env = [
            ("LOOM_DATA_DIR", self.data.path().to_string_lossy().into_owned()),
            ("LOOM_GATEWAY_URL", self.script.url()),
            ("LOOM_GATEWAY_MODEL", "scripted-model".to_owned()),
            ("LOOM_GATEWAY_API_KEY", KEY.to_owned()),
            ("LOOM_EXECUTOR_LEASE_SECONDS", "3".to_owned()),
            ("LOOM_DISPATCH_INTERVAL_SECONDS", "1".to_owned()),
        ];
        crate::support::serve::Server::start(self.app.database_url(), &env)
    }

    /// This process's executors take the projects over once a killed replica's lease (3 s)
    /// lapses, and work until `bead` is closed (or 20 s pass).
    pub async fn take_over(&mut self, bead: &str) {
        let config = loom::executor::ExecutorConfig {
            ownership_lease: std::time::Duration::from_secs(3),
            ..Default::default()
        };
        self.executors = Executors::start(
            self.app.pool.clone(),
            self.gateway.clone(),
            self.data.path(),
            loom::beads::RetryPolicy::default(),
            config,
        );
        for _ in 0..200 {
            self.executors.run_until_idle().await.expect("execute");
            if self.show(bead).await["status"] == "closed" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The steps of a bead's latest run, as the API serves them.
    pub async fn steps(&self, bead: &str) -> Vec<Value> {
        let runs = self.app.get(&format!("/api/v1/beads/{bead}/runs")).await.body;
        let run = runs["items"][0]["id"].as_str().or(runs[0]["id"].as_str()).expect("a run");
        let shown = self.app.get(&format!("/api/v1/runs/{run}")).await.body;
        shown["steps"].as_array().cloned().unwrap_or_default()
    }
}
