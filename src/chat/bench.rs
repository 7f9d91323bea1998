//! Where a conversation's agent acts: the bead's own worktree (on `loom/<bead>`, the one its
//! runs use, so a handoff goes on from there), or one of the conversation's on
//! `loom/chat-<id>`. The actions are the executor's vocabulary, performed by the same
//! `Workspace` (its path checks, its scrubbed `run`), the same git module and the same
//! tracker calls; only `done` and `block` are a run's and not offered here.

use serde_json::Value;
use uuid::Uuid;

use super::writer::Halt;
use crate::activity::{Activity, Actor, Record};
use crate::db::Pool;
use crate::error::{Error, Result};
use crate::events::{Bus, Kind};
use crate::executor::actions::Action;
use crate::executor::run::{RunEnv, agent_email, agents_md, git_identity};
use crate::executor::tracker::{self, Discovered};
use crate::executor::workspace::Workspace;
use crate::gateway::Tool;
use crate::git::{EnsureOutcome, ProjectRepo, Repos, Signature, Worktree};
use crate::projects::Project;

/// The actions a conversation's agent is offered: all but a run's endings.
pub fn tools() -> Vec<Tool> {
    RunEnv::tools()
        .into_iter()
        .filter(|t| !matches!(t.function.name.as_str(), "done" | "block"))
        .collect()
}

pub struct Bench {
    pub workspace: Workspace,
    pub worktree: Worktree,
    pub agents_md: Option<String>,
    repos: Repos,
    pool: Pool,
    bus: Bus,
    project: String,
    bead: Option<String>,
    conversation: Uuid,
    actor: Actor,
    byline: Option<String>,
    author: Signature,
}

/// Who acts in the tracker and in git: the conversation's agent, else Loom on behalf of the
/// persona (which has no row to name), with a byline saying so on what it writes.
pub struct Who {
    pub actor: Actor,
    pub name: String,
    pub byline: Option<String>,
}

pub struct Setup<'a> {
    pub repos: &'a Repos,
    pub pool: &'a Pool,
    pub bus: &'a Bus,
    pub project: &'a Project,
    pub bead: Option<&'a str>,
    pub conversation: Uuid,
    pub who: Who,
    pub homes: &'a std::path::Path,
    pub run_env: &'a [(String, String)],
}

impl Bench {
    /// Makes sure Loom's clone is current and the worktree exists.
    pub async fn open(s: Setup<'_>) -> std::result::Result<Bench, Halt> {
        let repo = ProjectRepo {
            id: s.project.id.clone(),
            repo: s.project.repo.clone(),
            branch: s.project.branch.clone(),
        };
        // The cause (with Loom's paths in it) is for the log; a person reads what to do.
        let unusable = |e: &dyn std::fmt::Display| {
            tracing::warn!(project.id = %repo.id, error = %e, "a conversation's worktree could not be prepared");
            Halt::failed(
                "workspace_unavailable",
                "the project's worktree could not be prepared (its repository could not be \
                 fetched or checked out); an admin can see why in Loom's log",
            )
        };
        if let EnsureOutcome::UpstreamConflict { paths } = detached({
            let (repos, repo) = (s.repos.clone(), repo.clone());
            async move { repos.ensure(&repo).await.map_err(Error::from) }
        })
        .await
        .map_err(|e| unusable(&e))?
        {
            tracing::warn!(project.id = %repo.id, paths = ?paths, "upstream conflicts with Loom's branch; the conversation works in Loom's clone");
        }
        let name = match s.bead {
            Some(bead) => bead.to_owned(),
            None => format!("chat-{}", s.conversation),
        };
        let worktree = detached({
            let (repos, repo) = (s.repos.clone(), repo.clone());
            async move { repos.worktree(&repo, &name).await.map_err(Error::from) }
        })
        .await
        .map_err(|e| unusable(&e))?;
        let mut env = s.run_env.to_vec();
        env.extend(git_identity(&s.who.name));
        let workspace = Workspace::new(&worktree.path)
            .map_err(|e| unusable(&e))?
            .with_home(s.homes.join(&s.project.id))
            .with_env(env);
        let agents_md = agents_md(&workspace).await;
        Ok(Bench {
            workspace,
            worktree,
            agents_md,
            repos: s.repos.clone(),
            pool: s.pool.clone(),
            bus: s.bus.clone(),
            project: s.project.id.clone(),
            bead: s.bead.map(str::to_owned),
            conversation: s.conversation,
            actor: s.who.actor,
            byline: s.who.byline.clone(),
            author: Signature::new(s.who.name.clone(), agent_email(&s.who.name)),
        })
    }

    /// Performs one action; whatever happens is a result for the model and the person.
    pub async fn perform(&self, action: &Action) -> (bool, String) {
        if let Some(done) = self.workspace.perform(action).await {
            return match done {
                Ok(text) => (true, text),
                Err(e) => (false, e.to_string()),
            };
        }
        let outcome = match action {
            Action::GitDiff => {
                let (repos, worktree) = (self.repos.clone(), self.worktree.clone());
                detached(async move { repos.diff(&worktree).await.map_err(Error::from) })
                    .await
                    .map(|d| if d.is_empty() { "no uncommitted changes".to_owned() } else { d })
            }
            Action::Commit { message } => self.commit(message).await,
            Action::CreateBead { title, description, priority, bead_type, labels } => {
                let found = Discovered {
                    title: title.clone(),
                    description: description.clone(),
                    priority: *priority,
                    bead_type: *bead_type,
                    labels: labels.clone(),
                };
                let filed = async {
                    let mut conn = self.pool.get().await?;
                    let from = self.bead.as_deref();
                    tracker::file_discovered(&mut conn, &self.project, from, found, self.actor)
                        .await
                };
                filed.await
            }
            Action::Comment { body } => match &self.bead {
                None => Err(Error::invalid(
                    "no_bead",
                    "this conversation is not on a bead; there is nothing to comment on",
                )),
                Some(bead) => {
                    async {
                        let mut conn = self.pool.get().await?;
                        let body = match &self.byline {
                            Some(by) => format!("*{by}:*\n\n{body}"),
                            None => body.clone(),
                        };
                        tracker::comment(&mut conn, bead, body, self.actor).await
                    }
                    .await
                }
            },
            Action::Done { .. } | Action::Block { .. } => Err(Error::invalid(
                "not_in_chat",
                "done and block end an autonomous run; in a conversation the person decides \
                 when the bead goes back to autonomous work",
            )),
            other => Err(Error::Internal(anyhow::anyhow!("no performer for {}", other.name()))),
        };
        match outcome {
            Ok(text) => (true, text),
            Err(e) => (false, e.to_string()),
        }
    }

    async fn commit(&self, message: &str) -> Result<String> {
        let conversation = self.conversation.to_string();
        let mut trailers = vec![("Conversation", conversation.as_str())];
        if let Some(bead) = &self.bead {
            trailers.insert(0, ("Bead", bead.as_str()));
        }
        let trailers: Vec<(String, String)> =
            trailers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let (repos, worktree, author) =
            (self.repos.clone(), self.worktree.clone(), self.author.clone());
        let message_owned = message.to_owned();
        let committed = detached(async move {
            let trailers: Vec<(&str, &str)> =
                trailers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            repos.commit(&worktree, &author, &message_owned, &trailers).await.map_err(Error::from)
        });
        let Some(sha) = committed.await? else {
            return Ok("nothing to commit: the worktree has no changes".into());
        };
        let subject = message.lines().next().unwrap_or_default();
        let data = serde_json::json!({
            "conversation": self.conversation, "sha": sha, "message": subject,
            "branch": self.worktree.branch,
        });
        let record = Record {
            kind: Kind::GitCommit,
            project_id: Some(&self.project),
            bead_id: self.bead.as_deref(),
            actor: self.actor,
            data,
        };
        Activity::record(&mut *self.pool.get().await?, record).await?;
        self.bus.committed();
        Ok(format!("committed {} on {}", &sha[..sha.len().min(12)], self.worktree.branch))
    }
}

/// An action as the stream shows it: long arguments (a whole file) cut.
pub fn shown(action: &Action) -> Value {
    crate::executor::run::clipped(serde_json::to_value(action).unwrap_or_default())
}

/// Runs a git operation in a task of its own: a reply stopped meanwhile stops waiting for
/// it, but the operation (which holds the clone's lock around work on the blocking pool)
/// runs to its end, so nothing else touches the clone half-way through it.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("a git operation stopped: {e}")))?
}
