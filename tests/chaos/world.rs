//! The work: projects on upstream repositories of their own, agents, and beads with `blocks`
//! dependencies forming a DAG, all filed through the REST API as people would; and the
//! scripted model that works each bead in two turns.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::gateway::Reply;
use crate::support::work::Upstream;

/// xorshift: reproducible randomness without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// An admin's API token, made in the database before any replica serves.
pub async fn admin_token(database_url: &str) -> String {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    use loom::users::{Role, User, Username, tokens::ApiToken};
    let mut conn = AsyncPgConnection::establish(database_url).await.expect("connect");
    let name = Username::parse("chaos").expect("a username");
    let user = User::create(&mut conn, &name, crate::support::PASSWORD, Role::Admin)
        .await
        .expect("the admin");
    ApiToken::create(&mut conn, user.id, "chaos", None).await.expect("a token").secret
}

/// The REST API of one replica.
pub struct Api {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api { base: base.to_owned(), token: token.to_owned(), http: reqwest::Client::new() }
    }

    /// POSTs `body`; fails the test unless the answer is a success.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("a request");
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }
}

pub struct Project {
    pub id: String,
    pub upstream: Upstream,
}

/// What the test filed: every bead, with the blockers each waits on.
pub struct World {
    pub projects: Vec<Project>,
    pub beads: Vec<FiledBead>,
}

pub struct FiledBead {
    pub id: String,
    pub project: String,
    pub blockers: Vec<String>,
}

impl World {
    /// `projects` projects, `beads` beads spread over them, about half waiting on one or
    /// two of the ten filed before them in the same project (some named at filing, some
    /// added after), and then `agents` agents (every other one bound to a project): none
    /// exists before every edge is in, so no bead can be claimed before its blockers are.
    pub async fn file(
        api: &Api,
        projects: usize,
        agents: usize,
        beads: usize,
        rng: &mut Rng,
    ) -> World {
        let mut world = World { projects: Vec::new(), beads: Vec::new() };
        for p in 0..projects {
            world.projects.push(project(api, &format!("c{p}")).await);
        }
        for n in 0..beads {
            let project = world.projects[n % projects].id.clone();
            let earlier: Vec<&FiledBead> =
                world.beads.iter().rev().filter(|b| b.project == project).take(10).collect();
            let mut blockers = Vec::new();
            for _ in 0..[0, 0, 1, 2][rng.below(4)] {
                if let Some(b) = earlier.get(rng.below(earlier.len())) {
                    blockers.push(b.id.clone());
                }
            }
            blockers.sort();
            blockers.dedup();
            let later = rng.below(2) == 0;
            let named = if later { Vec::new() } else { blockers.clone() };
            let body = json!({"project": project, "title": format!("Chaos bead {n}"), "depends_on": named});
            let id =
                api.post("/api/v1/beads", body).await["id"].as_str().expect("an id").to_owned();
            if later {
                for on in &blockers {
                    let edge = json!({"depends_on": on, "kind": "blocks"});
                    api.post(&format!("/api/v1/beads/{id}/dependencies"), edge).await;
                }
            }
            world.beads.push(FiledBead { id, project, blockers });
        }
        for a in 0..agents {
            let mut body = json!({"name": format!("agent{a}"), "persona": "software-engineer"});
            if a % 2 == 1 {
                body["project"] = json!(world.projects[a % projects].id);
            }
            api.post("/api/v1/agents", body).await;
        }
        world
    }
}

async fn project(api: &Api, id: &str) -> Project {
    let upstream = Upstream::new(&[("README.md", "A project worked under chaos.\n")]);
    let repo = upstream.path().display().to_string();
    api.post(
        "/api/v1/projects",
        json!({"id": id, "name": format!("Chaos {id}"), "repo": repo, "branch": "main",
               "max_parallel": 3, "check_command": CHECK}),
    )
    .await;
    Project { id: id.to_owned(), upstream }
}

/// Every project's check, run on each train before it lands: each bead's file says its
/// bead.
const CHECK: &str = "for f in *-*.txt; do [ -e \"$f\" ] || continue; \
     [ \"$(cat \"$f\")\" = \"${f%.txt}\" ] || { echo \"$f is wrong\"; exit 1; }; done";

/// The file a bead's agent writes, named after the bead.
pub fn file_of(bead: &str) -> String {
    format!("{bead}.txt")
}

/// The model: a run's first reply writes the bead's file, every later one writes it again
/// and calls `done`. Writing again makes a resumed or retried run whole whatever its
/// worktree kept, and the same content each time leaves nothing new to commit. A think of
/// 0.2 to 0.8 s before each reply keeps runs in flight long enough for faults to land in
/// them (varied, so replies do not arrive in lockstep).
pub fn reply_to(request: &Value) -> Reply {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let Some(bead) = messages.iter().find_map(bead_in_task) else {
        return Reply::text("I cannot tell which bead this is.");
    };
    let write =
        json!({"action": "write_file", "path": file_of(&bead), "content": format!("{bead}\n")});
    let answered = messages.iter().any(|m| m["role"] == "assistant");
    let reply = if answered {
        json!({"actions": [write, {"action": "done", "summary": format!("Wrote {}.", file_of(&bead))}]})
    } else {
        write
    };
    let think =
        200 + (bead.bytes().map(u64::from).sum::<u64>() * 7 + messages.len() as u64 * 131) % 600;
    Reply::action(reply).delay(Duration::from_millis(think))
}

/// The bead id from a run's task, whose first line is `# <type> <id>: <title>`.
fn bead_in_task(message: &Value) -> Option<String> {
    if message["role"] != "user" {
        return None;
    }
    let first = message["content"].as_str()?.lines().next()?;
    let id = first.strip_prefix("# ")?.split_whitespace().nth(1)?;
    Some(id.trim_end_matches(':').to_owned())
}
