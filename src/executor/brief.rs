//! Reads what a run needs to start from the database: its project, agent, persona and bead,
//! as a `prompt::Brief` plus the project's repository settings.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::pickup::OpenRun;
use super::prompt::Brief;
use crate::agents::Agent;
use crate::beads::{Bead, Comment, DependencyKind, Run, RunOutcome};
use crate::db::Conn;
use crate::db::schema::{agents, users};
use crate::error::Result;
use crate::git::ProjectRepo;
use crate::personas::Persona;
use crate::projects::Project;

/// Everything a run starts from.
pub struct Start {
    pub brief: Brief,
    pub repo: ProjectRepo,
    pub agent: Agent,
}

/// Comments put into the task; older ones are left out.
const MAX_COMMENTS: i64 = 50;

pub async fn load(conn: &mut Conn, run: &OpenRun) -> Result<Start> {
    let bead = Bead::get(conn, &run.bead_id).await?;
    let project = Project::find(conn, &bead.project_id).await?;
    let agent = Agent::find(conn, run.agent_id).await?;
    let persona = Persona::find(conn, &agent.persona).await?;
    let (dependencies, _) = Bead::links(conn, &bead).await?;
    let discovered_from = dependencies
        .into_iter()
        .filter(|l| l.kind == DependencyKind::DiscoveredFrom)
        .map(|l| (l.id, l.title))
        .collect();
    let comments = Comment::list(conn, &bead.id, None, MAX_COMMENTS).await?.items;
    let authored = authored(conn, comments).await?;
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
            None => last_run_ending(conn, &bead.id, run.id).await?,
        },
        resumed: run.resumes > 0,
    };
    let repo = ProjectRepo { id: project.id, repo: project.repo, branch: project.branch };
    Ok(Start { brief, repo, agent })
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

/// How the bead's previous run ended, when it did not succeed.
async fn last_run_ending(
    conn: &mut Conn,
    bead: &str,
    current: uuid::Uuid,
) -> Result<Option<String>> {
    let runs = Run::for_bead(conn, bead).await?;
    let last = runs.into_iter().find(|r| r.id != current && r.outcome.is_some());
    Ok(last.and_then(|r| match (r.outcome, r.error) {
        (Some(RunOutcome::Success) | None, _) => None,
        (Some(outcome), Some(error)) => Some(format!("{outcome}: {error}")),
        (Some(outcome), None) => Some(outcome.to_string()),
    }))
}

/// Comments with their authors as the model should read them, the names read in two
/// queries whatever the number of comments.
async fn authored(conn: &mut Conn, comments: Vec<Comment>) -> Result<Vec<(String, String)>> {
    let user_ids: Vec<Uuid> = comments.iter().filter_map(|c| c.author_user_id).collect();
    let agent_ids: Vec<Uuid> = comments.iter().filter_map(|c| c.author_agent_id).collect();
    let users: HashMap<Uuid, String> = users::table
        .filter(users::id.eq_any(&user_ids))
        .select((users::id, users::username))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();
    let agents: HashMap<Uuid, String> = agents::table
        .filter(agents::id.eq_any(&agent_ids))
        .select((agents::id, agents::name))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();
    Ok(comments
        .into_iter()
        .map(|c| {
            let who = match (c.author_user_id, c.author_agent_id) {
                (Some(u), _) => users.get(&u).cloned().unwrap_or_else(|| "a person".into()),
                (None, Some(a)) => {
                    format!("agent {}", agents.get(&a).map_or("(deleted)", String::as_str))
                }
                (None, None) => "Loom".into(),
            };
            (who, c.body)
        })
        .collect())
}
