//! One agent's workbench: the worktree it works in, the actions of the vocabulary performed
//! there (files, commands, git, the tracker), path safety, the git identity it commits under
//! and the sandbox its commands run in. An autonomous run (`executor`) and a
//! pair-programming reply (`chat`) both act through a `Workbench`, so an action means the
//! same in both and the sandbox is applied in one place.
//!
//! - `actions`: the vocabulary, how a model's reply becomes actions, and their descriptions.
//! - `workspace`: paths inside the worktree, checked; `beneath`: the race-free file access
//!   under them (`files`, `edit`, `search`: the file actions; search and find_files honour
//!   `.gitignore`).
//! - `clip`: the one truncation policy for what a model reads (head, tail, the tool's notes).
//! - `run`: a command, in the `sandbox`, with its output cut to head and tail.
//! - `sandbox`: bubblewrap around every command an agent runs; fails closed.
//! - `identity`: the environment commands get, and who commits; `tracker`: filing
//!   discovered work and commenting.

pub mod actions;
mod beneath;
pub mod clip;
mod edit;
mod files;
pub mod identity;
mod run;
pub mod sandbox;
mod search;
mod syntax;
#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]
mod tests;
pub(crate) mod tracker;
mod workspace;

use serde_json::{Map, Value};

use crate::activity::{Activity, Actor, Record};
use crate::db::Pool;
use crate::error::{Error, Result};
use crate::events::{Bus, Kind};
use crate::git::{Repos, Signature, Worktree};
use actions::Action;
pub use identity::{agent_email, git_identity, toolchain_env};
pub use run::{Ended, Ran};
pub use sandbox::{Sandbox, SandboxConfig, SandboxMode, SandboxStatus};
use tracker::Discovered;
use workspace::{Resolved, io_failed, touches_git};
pub use workspace::{ToolError, Workspace, shield_loom_from_commands};

/// What performing an action came to, for the model (and the person watching) to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Failed(String),
    /// A command could not be run because no sandbox could be made: the model reads the
    /// text; the run is parked (`sandbox_unavailable`) rather than charged.
    SandboxUnavailable(String),
}

impl Outcome {
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    pub fn text(&self) -> &str {
        match self {
            Outcome::Ok(t) | Outcome::Failed(t) | Outcome::SandboxUnavailable(t) => t,
        }
    }

    fn of(result: Result<String>) -> Outcome {
        match result {
            Ok(text) => Outcome::Ok(text),
            // Validation errors are for the model to fix; anything else it should know failed.
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

impl From<std::result::Result<String, ToolError>> for Outcome {
    fn from(result: std::result::Result<String, ToolError>) -> Outcome {
        match result {
            Ok(text) => Outcome::Ok(text),
            Err(ToolError::SandboxUnavailable(text)) => Outcome::SandboxUnavailable(text),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// Who acts: in the tracker (an agent, or Loom on a persona's behalf with a byline on what it
/// writes) and in git (the author of commits, and the trailers that tie them to their work).
#[derive(Debug, Clone)]
pub struct Acting {
    pub actor: Actor,
    /// The commit author's name (an agent's, or a persona's).
    pub name: String,
    /// Put before comments when Loom writes them for someone without a row (a persona).
    pub byline: Option<String>,
    /// `Bead:`, `Run:`, `Conversation:`: what every commit is tied to.
    pub trailers: Vec<(String, String)>,
}

/// What a workbench is opened on.
pub struct Opening<'a> {
    pub repos: &'a Repos,
    pub pool: &'a Pool,
    pub bus: &'a Bus,
    pub sandbox: &'a Sandbox,
    pub project: &'a crate::projects::Project,
    /// The worktree's name: the bead's id, or `chat-<conversation>`.
    pub worktree: String,
    /// The bead the work is on, if any (comments go there; discovered work links to it).
    pub bead: Option<String>,
    pub acting: Acting,
    /// Directory of the per-project caches (`HOME` of commands).
    pub homes: &'a std::path::Path,
    /// Variables commands get besides the basic ones (where the toolchains live).
    pub run_env: &'a [(String, String)],
}

/// An agent's place of work, opened on a worktree.
pub struct Workbench {
    pub workspace: Workspace,
    pub worktree: Worktree,
    repos: Repos,
    repo: crate::git::ProjectRepo,
    pool: Pool,
    bus: Bus,
    project: String,
    bead: Option<String>,
    acting: Acting,
}

impl Workbench {
    /// Makes sure Loom's clone is current and the worktree exists, and readies it for the
    /// sandbox. The error names Loom's paths: it is for the log, not for the model.
    pub async fn open(o: Opening<'_>) -> Result<Workbench> {
        let repo = crate::git::ProjectRepo {
            id: o.project.id.clone(),
            repo: o.project.repo.clone(),
            branch: o.project.branch.clone(),
        };
        if let crate::git::EnsureOutcome::UpstreamConflict { paths } = detached({
            let (repos, repo) = (o.repos.clone(), repo.clone());
            async move { repos.ensure(&repo).await.map_err(unusable_source) }
        })
        .await?
        {
            // Work goes on in Loom's clone; the push at the end says so on the bead.
            tracing::warn!(project.id = %repo.id, paths = ?paths, "upstream moved on and conflicts with Loom's branch: pushes wait for a person");
        }
        let name = o.worktree.clone();
        let worktree = detached({
            let (repos, repo) = (o.repos.clone(), repo.clone());
            async move { repos.worktree(&repo, &name).await.map_err(Error::from) }
        })
        .await?;
        let git = o.repos.git_dirs(&repo.id, &o.worktree);
        let mut env = o.run_env.to_vec();
        env.extend(git_identity(&o.acting.name));
        let cell = sandbox::Cell {
            worktree: worktree.path.clone(),
            clone: git.clone,
            admin: git.admin,
            cache: o.homes.join(&o.project.id),
            network: o.project.network,
        };
        let workspace = Workspace::new(&worktree.path, o.sandbox.clone(), cell)
            .map_err(|e| {
                let at = worktree.path.display();
                Error::Internal(anyhow::anyhow!("the worktree {at} is unusable: {e}"))
            })?
            .with_env(env);
        workspace.ready().await?;
        Ok(Workbench {
            workspace,
            worktree,
            repos: o.repos.clone(),
            repo,
            pool: o.pool.clone(),
            bus: o.bus.clone(),
            project: o.project.id.clone(),
            bead: o.bead,
            acting: o.acting,
        })
    }

    /// Performs one action. `None` for `done` and `block`, which end a run and are the
    /// caller's to handle; everything else, whatever happens, is an outcome to read.
    pub async fn perform(&self, action: &Action) -> Option<Outcome> {
        let ws = &self.workspace;
        Some(match action {
            // A command that did not exit 0 failed: a batch stops there (its output is read
            // all the same).
            Action::Run { command, timeout_s } => match ws.run_ended(command, *timeout_s).await {
                Ok((ended, text)) if !ended.succeeded() => Outcome::Failed(text),
                ran => ran.map(|(_, text)| text).into(),
            },
            Action::ListFiles { .. }
            | Action::ReadFile { .. }
            | Action::Search { .. }
            | Action::FindFiles { .. }
            | Action::WriteFile { .. }
            | Action::EditFile { .. }
            | Action::MultiEdit { .. }
            | Action::InsertLines { .. }
            | Action::DeleteFile { .. } => ws.perform_file(action).await.into(),
            Action::GitDiff => Outcome::of(self.diff().await),
            Action::Commit { message } => Outcome::of(self.commit_action(message).await),
            Action::CreateBead { title, description, priority, bead_type, labels } => {
                let found = Discovered {
                    title: title.clone(),
                    description: description.clone(),
                    priority: *priority,
                    bead_type: *bead_type,
                    labels: labels.clone(),
                };
                Outcome::of(self.file_discovered(found).await)
            }
            Action::Comment { body } => Outcome::of(self.comment(body).await),
            // A run's machine keeps the plan in view; elsewhere it is read back, and that is all.
            Action::UpdatePlan { plan } => {
                Outcome::Ok(format!("Plan noted ({} steps).", plan.len()))
            }
            Action::Done { .. }
            | Action::Block { .. }
            | Action::Approve { .. }
            | Action::RequestChanges { .. } => return None,
        })
    }

    /// Merges the project branch into the worktree (see `Repos::merge_base`), for a bead
    /// whose branch conflicted with it: the conflicting paths, or `None` when there was
    /// nothing to merge. What the merge wrote is given to the sandbox's user.
    pub async fn merge_base(&self) -> Result<Option<Vec<String>>> {
        let (repos, repo, worktree) =
            (self.repos.clone(), self.repo.clone(), self.worktree.clone());
        let merged =
            detached(async move { repos.merge_base(&repo, &worktree).await.map_err(Error::from) })
                .await?;
        self.workspace.regive().await?;
        Ok(merged)
    }

    /// The commits this worktree's branch holds that the project branch does not (at most
    /// `n`, newest first): `(short sha, subject)`.
    pub async fn ahead(&self, n: usize) -> Result<Vec<(String, String)>> {
        let (repos, repo, branch) =
            (self.repos.clone(), self.repo.clone(), self.worktree.branch.clone());
        let commits =
            detached(async move { repos.ahead(&repo, &branch, n).await.map_err(Error::from) })
                .await?;
        Ok(commits
            .into_iter()
            .map(|c| {
                let subject = c.message.lines().next().unwrap_or_default().to_owned();
                (c.sha[..c.sha.len().min(12)].to_owned(), subject)
            })
            .collect())
    }

    /// Runs the project's `setup_command` in the sandbox with the network open.
    pub async fn setup(&self, command: &str) -> Outcome {
        self.workspace.setup(command).await.into()
    }

    /// The project's `AGENTS.md` in this worktree, read as the agent would read it.
    pub async fn agents_md(&self) -> Option<String> {
        self.workspace.agents_md().await
    }

    async fn diff(&self) -> Result<String> {
        let (repos, worktree) = (self.repos.clone(), self.worktree.clone());
        let diff = detached(async move { repos.diff(&worktree).await.map_err(Error::from) });
        diff.await.map(|d| if d.is_empty() { "no uncommitted changes".to_owned() } else { d })
    }

    async fn commit_action(&self, message: &str) -> Result<String> {
        Ok(match self.commit(message).await? {
            Some(sha) => {
                format!("committed {} on {}", &sha[..sha.len().min(12)], self.worktree.branch)
            }
            None => "nothing to commit: the worktree has no changes".into(),
        })
    }

    /// Commits everything in the worktree, authored by whoever acts, with the trailers, and
    /// records it; the sha, or `None` when there was nothing to commit.
    pub async fn commit(&self, message: &str) -> Result<Option<String>> {
        let name = &self.acting.name;
        let author = Signature::new(name.clone(), agent_email(name));
        let (repos, worktree) = (self.repos.clone(), self.worktree.clone());
        let (trailers, text) = (self.acting.trailers.clone(), message.to_owned());
        let sha = detached(async move {
            let trailers: Vec<(&str, &str)> =
                trailers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            repos.commit(&worktree, &author, &text, &trailers).await.map_err(Error::from)
        })
        .await?;
        let Some(sha) = sha else { return Ok(None) };
        let mut data = Map::new();
        for (key, value) in &self.acting.trailers {
            if key != "Bead" {
                data.insert(key.to_lowercase(), Value::String(value.clone()));
            }
        }
        let subject = message.lines().next().unwrap_or_default();
        data.insert("sha".into(), Value::String(sha.clone()));
        data.insert("message".into(), Value::String(subject.to_owned()));
        data.insert("branch".into(), Value::String(self.worktree.branch.clone()));
        self.record(Kind::GitCommit, Value::Object(data)).await?;
        Ok(Some(sha))
    }

    /// Writes an activity row about this work, by whoever acts, and wakes the feed.
    pub async fn record(&self, kind: Kind, data: Value) -> Result<()> {
        let record = Record {
            kind,
            project_id: Some(&self.project),
            bead_id: self.bead.as_deref(),
            actor: self.acting.actor,
            data,
        };
        Activity::record(&mut *self.pool.get().await?, record).await?;
        self.bus.committed();
        Ok(())
    }

    async fn file_discovered(&self, found: Discovered) -> Result<String> {
        let mut conn = self.pool.get().await?;
        let (project, from) = (&self.project, self.bead.as_deref());
        tracker::file_discovered(&mut conn, project, from, found, self.acting.actor).await
    }

    async fn comment(&self, body: &str) -> Result<String> {
        let Some(bead) = &self.bead else {
            return Err(Error::invalid(
                "no_bead",
                "this conversation is not on a bead; there is nothing to comment on",
            ));
        };
        let body = match &self.acting.byline {
            Some(by) => format!("*{by}:*\n\n{body}"),
            None => body.to_owned(),
        };
        let mut conn = self.pool.get().await?;
        tracker::comment(&mut conn, bead, body, self.acting.actor).await
    }
}

/// Runs a git operation in a task of its own: a caller stopped meanwhile (a reply stopped
/// by its person) stops waiting for it, but the operation (which holds the clone's lock
/// around work on the blocking pool) runs to its end, so nothing else touches the clone
/// half-way through it.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("a git operation stopped: {e}")))?
}

/// The code of the error a workbench opens with when the project's repository cannot be
/// fetched or cloned (see `GitError::is_source_unusable`): the executor marks the project
/// and gives the bead back uncharged.
pub const REPOSITORY_UNREACHABLE: &str = "repository_unreachable";

fn unusable_source(e: crate::git::GitError) -> Error {
    if e.is_source_unusable() {
        Error::conflict(REPOSITORY_UNREACHABLE, e.to_string())
    } else {
        Error::from(e)
    }
}
