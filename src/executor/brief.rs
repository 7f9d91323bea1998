//! Reads what a run needs to start from the database: its project, agent, persona and bead,
//! as a `prompt::Brief` plus the project's repository settings.

use std::collections::HashMap;

use uuid::Uuid;

use super::pickup::OpenRun;
use super::prompt::{Brief, Pairing, REVIEWERS, Reviewed, UnderReview};
use crate::agents::Agent;
use crate::beads::{
    Bead, Comment, DependencyKind, LANDING_CONFLICT, Link, Run, RunKind, RunOutcome,
};
use crate::chat::{ChatRole, ChatState, Conversation, Transcript};
use crate::db::Conn;
use crate::error::Result;
use crate::git::ProjectRepo;
use crate::personas::Persona;
use crate::projects::Project;
use crate::workbench::clip::clip;

/// Everything a run starts from.
pub struct Start {
    pub brief: Brief,
    pub repo: ProjectRepo,
    pub project: Project,
    pub agent: Agent,
}

/// Comments put into the task; older ones are left out.
const MAX_COMMENTS: i64 = 50;
/// Messages of a handed-off conversation put into the task (the newest), and the longest
/// one kept whole.
const MAX_PAIRING_MESSAGES: i64 = 40;
const MAX_PAIRING_MESSAGE_CHARS: usize = 4_000;

pub async fn load(conn: &mut Conn, run: &OpenRun) -> Result<Start> {
    let bead = Bead::get(conn, &run.bead_id).await?;
    let project = Project::find(conn, &bead.project_id).await?;
    let agent = Agent::find(conn, run.agent_id).await?;
    let persona = Persona::find(conn, &agent.persona).await?;
    let (dependencies, _) = Bead::links(conn, &bead).await?;
    let runs = Run::for_bead(conn, &bead.id).await?;
    // A reviewer's bead reviews the beads it links to; a review run, the bead's own work.
    let reviewer = REVIEWERS.contains(&persona.name.as_str()) && run.kind == RunKind::Work;
    let review = match reviewer {
        true => Some(reviewed(conn, &dependencies).await?),
        false => None,
    };
    let reviewing = match run.kind {
        RunKind::Review => Some(under_review(conn, &runs).await?),
        RunKind::Work => None,
    };
    let discovered_from = dependencies
        .into_iter()
        .filter(|l| l.kind == DependencyKind::DiscoveredFrom)
        .map(|l| (l.id, l.title))
        .collect();
    let comments = Comment::list(conn, &bead.id, None, MAX_COMMENTS).await?.items;
    let authored = authored(conn, comments).await?;
    // The bead's previous run that ended, if any.
    let last = runs.iter().find(|r| r.id != run.id && r.outcome.is_some());
    let pairing = match Conversation::handed_off_on(conn, &bead.id, MAX_PAIRING_MESSAGES).await? {
        Some(transcript) => Some(pairing(conn, transcript).await?),
        None => None,
    };
    let brief = Brief {
        agent_name: agent.name.clone(),
        persona_name: persona.name.clone(),
        persona_role: persona.role.clone(),
        persona_instructions: persona.instructions.clone(),
        project_id: project.id.clone(),
        project_name: project.name.clone(),
        branch: project.branch.clone(),
        agents_md: None,
        bead_id: bead.id.clone(),
        bead_type: bead.bead_type.to_string(),
        priority: bead.priority.get(),
        title: bead.title.clone(),
        description: bead.description.clone(),
        labels: bead.labels.clone(),
        comments: authored,
        discovered_from,
        attempt: run.attempt,
        last_error: match bead.last_error.clone() {
            Some(e) => Some(e),
            // Reopening by hand clears the bead's last error; the last run still says.
            None => ending(last),
        },
        // Its work conflicted with the project branch, when it last ended or in the queue.
        merge_conflict: last.and_then(|r| r.outcome) == Some(RunOutcome::MergeConflict)
            || bead.last_error.as_deref().is_some_and(|e| e.starts_with(LANDING_CONFLICT)),
        resumed: run.resumes > 0,
        on_branch: Vec::new(),
        pairing,
        setup: None,
        merged_base: None,
        review,
        reviewing,
    };
    let repo = ProjectRepo {
        id: project.id.clone(),
        repo: project.repo.clone(),
        branch: project.branch.clone(),
    };
    Ok(Start { brief, repo, project, agent })
}

/// What a conversation on `bead` is told of it: the bead and its comments, as a run would be
/// (the agent and persona fields are the caller's to fill).
pub async fn of_bead(conn: &mut Conn, bead: &Bead) -> Result<Brief> {
    let comments = Comment::list(conn, &bead.id, None, MAX_COMMENTS).await?.items;
    Ok(Brief {
        bead_id: bead.id.clone(),
        bead_type: bead.bead_type.to_string(),
        priority: bead.priority.get(),
        title: bead.title.clone(),
        description: bead.description.clone(),
        labels: bead.labels.clone(),
        comments: authored(conn, comments).await?,
        attempt: bead.attempts,
        last_error: bead.last_error.clone(),
        ..Brief::default()
    })
}

/// The beads a reviewer's bead is linked to (what it waits for, its parent, where it was
/// discovered), with the project-branch commits their work was merged as.
async fn reviewed(conn: &mut Conn, links: &[Link]) -> Result<Vec<Reviewed>> {
    let mut reviewed = Vec::new();
    for link in links {
        let runs = Run::for_bead(conn, &link.id).await?;
        let merged = runs.into_iter().filter_map(|r| r.merged_sha).collect();
        reviewed.push(Reviewed { id: link.id.clone(), title: link.title.clone(), merged });
    }
    Ok(reviewed)
}

/// Who did the work a review run judges and what the last of them said; the diff is the
/// runner's to add, from the worktree's repository.
async fn under_review(conn: &mut Conn, runs: &[Run]) -> Result<UnderReview> {
    let work = runs.iter().filter(|r| r.kind == RunKind::Work);
    let summary = work
        .clone()
        .find(|r| r.outcome == Some(RunOutcome::Success))
        .and_then(|r| r.summary.clone());
    let mut ids: Vec<Uuid> = work.filter_map(|r| r.agent_id).collect();
    ids.sort();
    ids.dedup();
    let names = Agent::names(conn, &ids).await?;
    let mut authors: Vec<String> = names.into_values().collect();
    authors.sort();
    Ok(UnderReview { authors, summary, ..UnderReview::default() })
}

/// How a run ended, when it did not succeed.
fn ending(run: Option<&Run>) -> Option<String> {
    run.and_then(|r| match (r.outcome, r.error.clone()) {
        (Some(RunOutcome::Success) | None, _) => None,
        (Some(outcome), Some(error)) => Some(format!("{outcome}: {error}")),
        (Some(outcome), None) => Some(outcome.to_string()),
    })
}

/// The names of the users and agents who wrote something, read in two queries whatever the
/// number of authors.
struct Names {
    users: HashMap<Uuid, String>,
    agents: HashMap<Uuid, String>,
}

impl Names {
    async fn load(
        conn: &mut Conn,
        authors: impl Iterator<Item = (Option<Uuid>, Option<Uuid>)>,
    ) -> Result<Names> {
        let (user_ids, agent_ids): (Vec<_>, Vec<_>) = authors.unzip();
        let user_ids: Vec<Uuid> = user_ids.into_iter().flatten().collect();
        let agent_ids: Vec<Uuid> = agent_ids.into_iter().flatten().collect();
        let users = crate::users::User::names(conn, &user_ids).await?;
        let agents = Agent::names(conn, &agent_ids).await?;
        Ok(Names { users, agents })
    }

    fn user(&self, id: Uuid) -> String {
        self.users.get(&id).cloned().unwrap_or_else(|| "a person".into())
    }

    fn agent(&self, id: Uuid) -> String {
        format!("agent {}", self.agents.get(&id).map_or("(deleted)", String::as_str))
    }
}

/// Comments with their authors as the model should read them.
async fn authored(conn: &mut Conn, comments: Vec<Comment>) -> Result<Vec<(String, String)>> {
    let names =
        Names::load(conn, comments.iter().map(|c| (c.author_user_id, c.author_agent_id))).await?;
    Ok(comments
        .into_iter()
        .map(|c| {
            let who = match (c.author_user_id, c.author_agent_id) {
                (Some(u), _) => names.user(u),
                (None, Some(a)) => names.agent(a),
                (None, None) => "Loom".into(),
            };
            (who, c.body)
        })
        .collect())
}

/// A handed-off conversation as the model should read it: who said what (the person by
/// name, the other side as its agent or persona), long messages clipped, a reply that did
/// not finish said so.
async fn pairing(conn: &mut Conn, t: Transcript) -> Result<Pairing> {
    let names =
        Names::load(conn, t.messages.iter().map(|m| (m.author_user_id, m.author_agent_id))).await?;
    let persona = &t.conversation.persona;
    let messages = t
        .messages
        .into_iter()
        .filter(|m| !m.body.trim().is_empty())
        .map(|m| {
            let who = match (m.role, m.author_user_id, m.author_agent_id) {
                (ChatRole::User, Some(u), _) => names.user(u),
                (ChatRole::User, None, _) => "a person".into(),
                (ChatRole::Assistant, _, Some(a)) => format!("{} ({persona})", names.agent(a)),
                (ChatRole::Assistant, _, None) => format!("{persona} (persona)"),
            };
            let mut body = clip(&m.body, MAX_PAIRING_MESSAGE_CHARS);
            if matches!(m.state, ChatState::Stopped | ChatState::Failed) {
                body.push_str("\n\n[this reply did not finish]");
            }
            (who, body)
        })
        .collect();
    Ok(Pairing { title: t.conversation.title, messages, earlier: t.earlier })
}
