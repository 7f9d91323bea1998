//! Where a conversation's agent acts: the bead's own worktree (on `loom/<bead>`, the one its
//! runs use, so a handoff goes on from there), or one of the conversation's on
//! `loom/chat-<id>`, through the same `Workbench` runs use (its path checks, its sandbox, its
//! git identity); only `done` and `block` are a run's and not offered here.

use serde_json::Value;
use uuid::Uuid;

use super::writer::Halt;
use crate::activity::Actor;
use crate::db::Pool;
use crate::events::Bus;
use crate::executor::run::RunEnv;
use crate::gateway::Tool;
use crate::git::Repos;
use crate::projects::Project;
use crate::workbench::actions::{Action, Toolset};
use crate::workbench::{Acting, Opening, Outcome, Sandbox, Workbench};

/// The actions a conversation's agent is offered: all but a run's endings.
pub fn tools() -> Vec<Tool> {
    RunEnv::tools(Toolset::Work)
        .into_iter()
        .filter(|t| !matches!(t.function.name.as_str(), "done" | "block"))
        .collect()
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
    pub sandbox: &'a Sandbox,
    pub project: &'a Project,
    pub bead: Option<&'a str>,
    pub conversation: Uuid,
    pub who: Who,
    pub homes: &'a std::path::Path,
    pub run_env: &'a [(String, String)],
}

/// Opens the conversation's workbench; a person reads what went wrong, the log says why.
pub async fn open(s: Setup<'_>) -> Result<Workbench, Halt> {
    let conversation = s.conversation.to_string();
    let mut trailers = vec![("Conversation".to_owned(), conversation)];
    if let Some(bead) = s.bead {
        trailers.insert(0, ("Bead".to_owned(), bead.to_owned()));
    }
    let acting = Acting { actor: s.who.actor, name: s.who.name, byline: s.who.byline, trailers };
    let worktree = match s.bead {
        Some(bead) => bead.to_owned(),
        None => format!("chat-{}", s.conversation),
    };
    let opened = Workbench::open(Opening {
        repos: s.repos,
        pool: s.pool,
        bus: s.bus,
        sandbox: s.sandbox,
        project: s.project,
        worktree,
        bead: s.bead.map(str::to_owned),
        acting,
        homes: s.homes,
        run_env: s.run_env,
    })
    .await;
    opened.map_err(|e| {
        // The cause (with Loom's paths in it) is for the log; a person reads what to do.
        tracing::warn!(project.id = %s.project.id, error = %e, "a conversation's worktree could not be prepared");
        Halt::failed(
            "workspace_unavailable",
            "the project's worktree could not be prepared (its repository could not be \
             fetched or checked out); an admin can see why in Loom's log",
        )
    })
}

/// Performs one action; whatever happens is a result for the model and the person.
pub async fn perform(bench: &Workbench, action: &Action) -> (bool, String) {
    match bench.perform(action).await {
        Some(outcome @ Outcome::Ok(_)) => (true, outcome.text().to_owned()),
        Some(outcome) => (false, outcome.text().to_owned()),
        None => (
            false,
            format!(
                "{} ends an autonomous run; in a conversation the person decides when the bead \
                 goes back to autonomous work",
                action.name()
            ),
        ),
    }
}

/// An action as the stream shows it: long arguments (a whole file) cut.
pub fn shown(action: &Action) -> Value {
    crate::executor::run::clipped(serde_json::to_value(action).unwrap_or_default())
}
