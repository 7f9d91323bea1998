//! The pieces of a bead's page: its comments, its runs turn by turn with the commit each was
//! merged as, its links and holds, as the template shows them.

use std::collections::HashMap;

use uuid::Uuid;

use super::markdown;
use super::page::{PageError, Viewer};
use super::view::ago;
use crate::beads::{BlockedReason, Comment, DependencyKind, Hold, Link, Run};
use crate::db::Conn;
use crate::git::ProjectRepo;
use crate::users::User;

/// Most runs shown turn by turn (the newest); older ones are listed without their steps.
const RUNS_WITH_STEPS: usize = 5;
/// Bytes of a commit's patch shown before it is cut.
const PATCH_BYTES: usize = 64 * 1024;
/// Characters of a step's result shown before it is cut.
const RESULT_CHARS: usize = 4000;

pub struct CommentView {
    pub author: String,
    pub when: String,
    pub at: String,
    pub html: String,
}

/// A dependency as the page lists it.
pub struct LinkView {
    pub id: String,
    pub title: String,
    pub status: String,
    pub kind: &'static str,
}

impl From<Link> for LinkView {
    fn from(l: Link) -> Self {
        LinkView {
            kind: match l.kind {
                DependencyKind::Blocks => "blocks",
                DependencyKind::ParentChild => "parent / child",
                DependencyKind::Related => "related",
                DependencyKind::DiscoveredFrom => "discovered from",
            },
            id: l.id,
            title: l.title,
            status: l.status.to_string(),
        }
    }
}

pub struct StepView {
    pub turn: i32,
    pub action: String,
    pub detail: String,
    pub ok: bool,
    pub result: String,
    pub cut: bool,
    pub tokens: i64,
    pub ms: i64,
}

/// One line of a patch, with how to show it.
pub struct DiffLine {
    pub class: &'static str,
    pub text: String,
}

/// The commit a run's work was merged as.
pub struct CommitView {
    pub sha: String,
    pub subject: String,
    pub author: String,
    pub files: Vec<String>,
    pub lines: Vec<DiffLine>,
    pub truncated: bool,
}

pub struct RunView {
    pub run: Run,
    /// `None` when this replica's clone does not have the merge (another one did the work).
    pub commit: Option<CommitView>,
    pub agent: String,
    pub outcome: String,
    pub when: String,
    pub steps: Option<Vec<StepView>>,
}

pub fn hold_line(h: &Hold) -> String {
    match h {
        Hold::Blockers { blockers } => format!(
            "waits on {}",
            blockers.iter().map(|l| l.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
        Hold::Blocked { reason: BlockedReason::Manual, note: Some(n) } => format!("blocked: {n}"),
        Hold::Blocked { reason, note: Some(n) } => format!("blocked ({reason}): {n}"),
        Hold::Blocked { reason, note: None } => format!("blocked ({reason})"),
        Hold::Deferred { until: Some(t) } => format!("deferred until {}", t.to_rfc3339()),
        Hold::Deferred { until: None } => "deferred".into(),
        Hold::Ancestor { id, status, .. } => format!("its ancestor {id} is {status}"),
        Hold::Backoff { until } => format!("retrying after {}", until.to_rfc3339()),
        Hold::Paired { conversation } => {
            format!("a person is pairing on it (conversation {conversation})")
        }
        Hold::InProgress { .. } => "being worked on".into(),
        Hold::Closed => "closed".into(),
        other => format!("{other:?}"),
    }
}

/// A patch as lines classed for showing (file headers, hunks, additions, deletions).
pub fn diff_lines(patch: &str) -> Vec<DiffLine> {
    // `---`/`+++` name files only in a file's header, before its first hunk: inside a hunk
    // they are a removed `-- …` or an added `++ …` line.
    let mut in_header = false;
    patch
        .lines()
        .map(|l| {
            if l.starts_with("diff --git") {
                in_header = true;
            } else if l.starts_with("@@") {
                in_header = false;
            }
            let class = if l.starts_with("diff --git")
                || (in_header && (l.starts_with("+++") || l.starts_with("---")))
            {
                "file"
            } else if l.starts_with("@@") {
                "hunk"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "ctx"
            };
            DiffLine { class, text: l.to_owned() }
        })
        .collect()
}

/// The merge of a run, read from Loom's clone of the project (a failure to read it is logged
/// and the page shows the sha alone: the page matters more than the diff).
async fn commit_view(viewer: &Viewer, project: &ProjectRepo, sha: &str) -> Option<CommitView> {
    match viewer.state.repos.show(project, sha, PATCH_BYTES).await {
        Ok(Some(c)) => Some(CommitView {
            sha: c.info.sha,
            subject: c.info.message.lines().next().unwrap_or_default().to_owned(),
            author: c.info.author.name,
            files: c.info.files,
            lines: diff_lines(&c.patch),
            truncated: c.truncated,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, sha, "could not read a run's commit");
            None
        }
    }
}

/// An action as a page shows it: its name, and its arguments as a short line.
pub fn action_parts(action: &serde_json::Value) -> (String, String) {
    let name = action.get("action").and_then(|a| a.as_str()).unwrap_or("?").to_owned();
    let mut rest = action.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("action");
    }
    let detail: String = match &rest {
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        v => v.to_string().chars().take(400).collect(),
    };
    (name, detail)
}

fn step_view(step: crate::beads::RunStep) -> StepView {
    let (name, detail) = action_parts(&step.action);
    let cut = step.result.chars().count() > RESULT_CHARS;
    StepView {
        turn: step.turn,
        action: name,
        detail,
        ok: step.ok,
        result: step.result.chars().take(RESULT_CHARS).collect(),
        cut,
        tokens: step.prompt_tokens + step.completion_tokens,
        ms: step.duration_ms,
    }
}

/// The comments, each with its author's name and its markdown rendered.
pub async fn comments(
    conn: &mut Conn,
    comments: &[Comment],
    agents: &HashMap<Uuid, String>,
) -> Result<Vec<CommentView>, PageError> {
    let user_ids: Vec<Uuid> = comments.iter().filter_map(|c| c.author_user_id).collect();
    let people = User::names(conn, &user_ids).await?;
    let author = |c: &Comment| {
        c.author_user_id
            .and_then(|u| people.get(&u).cloned())
            .or_else(|| {
                c.author_agent_id.and_then(|a| agents.get(&a).map(|n| format!("{n} (agent)")))
            })
            .unwrap_or_else(|| "someone".into())
    };
    Ok(comments
        .iter()
        .map(|c| CommentView {
            author: author(c),
            when: ago(c.created_at),
            at: c.created_at.to_rfc3339(),
            html: markdown::render(&c.body),
        })
        .collect())
}

/// The runs, newest first; the newest few with their steps and their commit.
pub async fn runs(
    viewer: &Viewer,
    conn: &mut Conn,
    repo: &ProjectRepo,
    runs: Vec<Run>,
    agents: &HashMap<Uuid, String>,
) -> Result<Vec<RunView>, PageError> {
    let mut views = Vec::with_capacity(runs.len());
    for (i, run) in runs.into_iter().enumerate() {
        let (steps, commit) = if i < RUNS_WITH_STEPS {
            let with = Run::with_steps(conn, run.id).await?;
            let commit = match &run.merged_sha {
                Some(sha) => commit_view(viewer, repo, sha).await,
                None => None,
            };
            (Some(with.steps.into_iter().map(step_view).collect()), commit)
        } else {
            (None, None)
        };
        views.push(RunView {
            agent: run.agent_id.and_then(|a| agents.get(&a).cloned()).unwrap_or_else(|| "—".into()),
            outcome: run.outcome.map_or_else(|| "running".to_owned(), |o| o.to_string()),
            when: ago(run.started_at),
            steps,
            commit,
            run,
        });
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::diff_lines;

    #[test]
    fn dashes_and_pluses_name_files_only_in_a_file_header() {
        let patch = "diff --git a/x.sql b/x.sql\n--- a/x.sql\n+++ b/x.sql\n@@ -1,2 +1,2 @@\n\
                     --- a comment removed\n+++ a line added\n keep\n";
        let classes: Vec<&str> = diff_lines(patch).iter().map(|l| l.class).collect();
        assert_eq!(classes, ["file", "file", "file", "hunk", "del", "add", "ctx"]);
    }
}
