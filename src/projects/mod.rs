//! Projects: a repository Loom works on, its branch, and the prefix of its bead ids.

mod landing;
mod repo;
pub mod repo_state;
mod sandbox;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::activity::{Activity, Actor, Record};
use crate::beads::BeadStatus;
use crate::db::Conn;
use crate::db::schema::{beads, projects};
use crate::error::{Error, Result};
use crate::events::Kind;
pub use landing::Review;
use landing::{
    DEFAULT_CHECK_TIMEOUT_S, DEFAULT_MAX_REVIEW_ROUNDS, DEFAULT_MAX_TRAIN, check_check_command,
    check_landing_limits, parse_review,
};
pub use repo_state::RepoState;
pub use sandbox::Network;
use sandbox::{check_setup_command, parse_network};

#[derive(Clone, Queryable, Selectable, Serialize, Deserialize, utoipa::ToSchema)]
#[diesel(table_name = projects)]
pub struct Project {
    pub id: String,
    pub name: String,
    /// A local path or a git URL. Credentials in a URL are shown as `***`
    /// (`https://***@host/x.git`); sending the URL back as shown keeps the stored one.
    #[serde(serialize_with = "repo::serialize_shown")]
    pub repo: String,
    pub branch: String,
    /// Bead ids in this project start with `<prefix>-`.
    pub prefix: String,
    pub max_parallel: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Tokens the project's runs may spend in the spend window (null: no budget of its own).
    pub token_budget: Option<i64>,
    /// Most beads in progress at once (null: as many as there are agents).
    pub max_in_progress: Option<i32>,
    /// Most finished beads waiting to land (in review or the landing queue, or blocked on a
    /// merge conflict or a check that could not run) before no more work is claimed (null:
    /// no limit).
    pub max_awaiting_merge: Option<i32>,
    /// Whether agents' commands may reach the network (`none` or `open`).
    pub network: Network,
    /// Run with the network open in the bead's worktree before each run's first turn.
    pub setup_command: Option<String>,
    /// `unreachable` when Loom could not fetch or clone the repository the last time it
    /// tried: no bead of the project is started until the ticker reaches it again.
    pub repo_state: RepoState,
    /// Why it could not be reached (credentials in URLs masked).
    pub repo_error: Option<String>,
    /// When the state was last set (null: never checked).
    pub repo_checked_at: Option<DateTime<Utc>>,
    /// Run in the sandbox on every merged tree before it lands; it must exit 0 (null: merges
    /// are serialised and pushed unchecked).
    pub check_command: Option<String>,
    /// A check running longer is stopped and lands nothing (`check_unavailable`).
    pub check_timeout_s: i32,
    /// Who reviews work before it lands: `none`, `agent` or `human`.
    pub review: Review,
    /// Most beads checked together in one merge train.
    pub max_train: i32,
    /// Review rounds a bead may take before it waits for a person.
    pub max_review_rounds: i32,
}

impl Project {
    /// The repository as it may be shown: credentials in a URL replaced by `***`.
    pub fn repo_shown(&self) -> String {
        crate::git::redact_url(&self.repo)
    }
}

/// The repository is shown redacted: projects end up in logs with `?`.
impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("repo", &self.repo_shown())
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

/// A new project, as the API receives it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub id: String,
    pub name: String,
    pub repo: String,
    #[serde(default)]
    pub branch: Option<String>,
    /// Defaults to the id.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub max_parallel: Option<i32>,
    #[serde(default)]
    pub max_attempts: Option<i32>,
    #[serde(default)]
    pub token_budget: Option<i64>,
    #[serde(default)]
    pub max_in_progress: Option<i32>,
    #[serde(default)]
    pub max_awaiting_merge: Option<i32>,
    /// `none` (the default) or `open`.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub setup_command: Option<String>,
    #[serde(default)]
    pub check_command: Option<String>,
    /// Seconds (default 1800).
    #[serde(default)]
    pub check_timeout_s: Option<i32>,
    /// `none` (the default), `agent` or `human`.
    #[serde(default)]
    pub review: Option<String>,
    /// Default 8.
    #[serde(default)]
    pub max_train: Option<i32>,
    /// Default 3.
    #[serde(default)]
    pub max_review_rounds: Option<i32>,
}

/// Changes to a project; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    pub name: Option<String>,
    /// The URL exactly as Loom shows it (credentials as `***`) leaves it unchanged.
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub max_parallel: Option<i32>,
    pub max_attempts: Option<i32>,
    /// null removes the limit; absent leaves it.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<i64>)]
    pub token_budget: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<i32>)]
    pub max_in_progress: Option<Option<i32>>,
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<i32>)]
    pub max_awaiting_merge: Option<Option<i32>>,
    /// `none` or `open`; null goes back to `none`.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    pub network: Option<Option<String>>,
    /// null (or "") removes it.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    pub setup_command: Option<Option<String>>,
    /// null (or "") removes it.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    pub check_command: Option<Option<String>>,
    /// null goes back to the default (1800).
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<i32>)]
    pub check_timeout_s: Option<Option<i32>>,
    /// `none`, `agent` or `human`; null goes back to `none`.
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<String>)]
    pub review: Option<Option<String>>,
    /// null goes back to the default (8).
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<i32>)]
    pub max_train: Option<Option<i32>>,
    /// null goes back to the default (3).
    #[serde(default, deserialize_with = "crate::serde_ext::double_option")]
    #[schema(value_type = Option<i32>)]
    pub max_review_rounds: Option<Option<i32>>,
}

/// A slug: 1–32 lowercase letters, digits and single dashes, starting with a letter.
pub fn check_slug(value: &str, code: &'static str, what: &str) -> Result<()> {
    let ok = (1..=32).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && !value.contains("--")
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            code,
            format!(
                "{what} must be 1-32 lowercase letters, digits and single dashes, \
                 starting with a letter: {value:?}"
            ),
        ))
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid("invalid_name", "a project name is 1-200 characters"));
    }
    Ok(())
}

/// Branch names as git accepts them, minus the oddities nobody needs.
fn check_branch(branch: &str) -> Result<()> {
    let bad = branch.is_empty()
        || branch.len() > 200
        || branch.starts_with(['-', '/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch.chars().any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c));
    if bad {
        return Err(Error::invalid(
            "invalid_branch",
            format!("not a valid branch name: {branch:?}"),
        ));
    }
    Ok(())
}

/// The spend and work-in-progress limits, where given.
fn check_work_limits(
    token_budget: Option<i64>,
    max_in_progress: Option<i32>,
    max_awaiting_merge: Option<i32>,
) -> Result<()> {
    if token_budget.is_some_and(|n| n < 1) {
        return Err(Error::invalid(
            "invalid_token_budget",
            "token_budget is a positive number of tokens, or null",
        ));
    }
    if max_in_progress.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return Err(Error::invalid(
            "invalid_max_in_progress",
            "max_in_progress is between 1 and 10000, or null",
        ));
    }
    if max_awaiting_merge.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return Err(Error::invalid(
            "invalid_max_awaiting_merge",
            "max_awaiting_merge is between 1 and 10000, or null",
        ));
    }
    Ok(())
}

fn check_limits(max_parallel: Option<i32>, max_attempts: Option<i32>) -> Result<()> {
    if max_parallel.is_some_and(|n| !(1..=64).contains(&n)) {
        return Err(Error::invalid("invalid_max_parallel", "max_parallel is between 1 and 64"));
    }
    if max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(Error::invalid("invalid_max_attempts", "max_attempts is between 1 and 100"));
    }
    Ok(())
}

impl Project {
    pub async fn create(conn: &mut Conn, new: NewProject, actor: Actor) -> Result<Project> {
        check_slug(&new.id, "invalid_project_id", "a project id")?;
        let prefix = new.prefix.unwrap_or_else(|| new.id.clone());
        check_slug(&prefix, "invalid_prefix", "a bead id prefix")?;
        check_name(&new.name)?;
        repo::check_repo(&new.repo)?;
        let branch = new.branch.unwrap_or_else(|| "main".into());
        check_branch(&branch)?;
        check_limits(new.max_parallel, new.max_attempts)?;
        check_work_limits(new.token_budget, new.max_in_progress, new.max_awaiting_merge)?;
        let network = new.network.as_deref().map(parse_network).transpose()?.unwrap_or_default();
        let setup_command = check_setup_command(new.setup_command.as_deref())?;
        let check_command = check_check_command(new.check_command.as_deref())?;
        check_landing_limits(new.check_timeout_s, new.max_train, new.max_review_rounds)?;
        let review = new.review.as_deref().map(parse_review).transpose()?.unwrap_or_default();
        conn.transaction::<_, Error, _>(async move |conn| {
            let inserted = diesel::insert_into(projects::table)
                .values((
                    projects::id.eq(&new.id),
                    projects::name.eq(new.name.trim()),
                    projects::repo.eq(new.repo.trim()),
                    projects::branch.eq(&branch),
                    projects::prefix.eq(&prefix),
                    projects::max_parallel.eq(new.max_parallel.unwrap_or(2)),
                    projects::max_attempts.eq(new.max_attempts.unwrap_or(3)),
                    projects::token_budget.eq(new.token_budget),
                    projects::max_in_progress.eq(new.max_in_progress),
                    projects::max_awaiting_merge.eq(new.max_awaiting_merge),
                    projects::network.eq(network),
                    projects::setup_command.eq(&setup_command),
                    projects::check_command.eq(&check_command),
                    projects::check_timeout_s
                        .eq(new.check_timeout_s.unwrap_or(DEFAULT_CHECK_TIMEOUT_S)),
                    projects::review.eq(review),
                    projects::max_train.eq(new.max_train.unwrap_or(DEFAULT_MAX_TRAIN)),
                    projects::max_review_rounds
                        .eq(new.max_review_rounds.unwrap_or(DEFAULT_MAX_REVIEW_ROUNDS)),
                ))
                .on_conflict_do_nothing()
                .returning(Project::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let Some(project) = inserted else {
                return Err(Error::conflict(
                    "project_exists",
                    "a project with this id or bead id prefix already exists",
                ));
            };
            Activity::record(
                conn,
                Record {
                    kind: Kind::ProjectCreated,
                    project_id: Some(&project.id),
                    bead_id: None,
                    actor,
                    data: serde_json::json!({ "name": project.name }),
                },
            )
            .await?;
            Ok(project)
        })
        .await
    }

    pub async fn find(conn: &mut Conn, id: &str) -> Result<Project> {
        projects::table
            .find(id)
            .select(Project::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("project {id}")))
    }

    pub async fn list(conn: &mut Conn, after: Option<&str>, limit: i64) -> Result<Vec<Project>> {
        let mut q = projects::table.select(Project::as_select()).order(projects::id).into_boxed();
        if let Some(after) = after {
            q = q.filter(projects::id.gt(after.to_owned()));
        }
        Ok(q.limit(limit).load(conn).await?)
    }

    pub async fn update(
        conn: &mut Conn,
        id: &str,
        patch: ProjectPatch,
        actor: Actor,
    ) -> Result<Project> {
        if let Some(n) = &patch.name {
            check_name(n)?;
        }
        if let Some(b) = &patch.branch {
            check_branch(b)?;
        }
        check_limits(patch.max_parallel, patch.max_attempts)?;
        check_work_limits(
            patch.token_budget.flatten(),
            patch.max_in_progress.flatten(),
            patch.max_awaiting_merge.flatten(),
        )?;
        let network = match &patch.network {
            Some(Some(n)) => Some(parse_network(n)?),
            Some(None) => Some(Network::None),
            None => None,
        };
        let setup_command = match &patch.setup_command {
            Some(c) => Some(check_setup_command(c.as_deref())?),
            None => None,
        };
        let check_command = match &patch.check_command {
            Some(c) => Some(check_check_command(c.as_deref())?),
            None => None,
        };
        let review = match &patch.review {
            Some(Some(r)) => Some(parse_review(r)?),
            Some(None) => Some(Review::None),
            None => None,
        };
        check_landing_limits(
            patch.check_timeout_s.flatten(),
            patch.max_train.flatten(),
            patch.max_review_rounds.flatten(),
        )?;
        // null goes back to the default; absent keeps what is there.
        let or_default = |v: Option<Option<i32>>, default: i32| v.map(|v| v.unwrap_or(default));
        let check_timeout_s = or_default(patch.check_timeout_s, DEFAULT_CHECK_TIMEOUT_S);
        let max_train = or_default(patch.max_train, DEFAULT_MAX_TRAIN);
        let max_review_rounds = or_default(patch.max_review_rounds, DEFAULT_MAX_REVIEW_ROUNDS);
        let id = id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            let current = projects::table
                .find(&id)
                .select(Project::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| Error::not_found(format!("project {id}")))?;
            let repo = repo::changed_repo(patch.repo.as_deref(), &current.repo)?;
            // Another repository starts afresh: it has not been tried yet.
            let (repo_state, repo_error, repo_checked_at) = if repo == current.repo {
                (current.repo_state, current.repo_error, current.repo_checked_at)
            } else {
                (RepoState::Ok, None, None)
            };
            let updated = diesel::update(projects::table.find(&id))
                .set((
                    projects::name.eq(patch
                        .name
                        .as_deref()
                        .map(str::trim)
                        .unwrap_or(&current.name)),
                    projects::repo.eq(&repo),
                    projects::branch.eq(patch.branch.as_deref().unwrap_or(&current.branch)),
                    projects::max_parallel.eq(patch.max_parallel.unwrap_or(current.max_parallel)),
                    projects::max_attempts.eq(patch.max_attempts.unwrap_or(current.max_attempts)),
                    projects::token_budget.eq(patch.token_budget.unwrap_or(current.token_budget)),
                    projects::max_in_progress
                        .eq(patch.max_in_progress.unwrap_or(current.max_in_progress)),
                    projects::max_awaiting_merge
                        .eq(patch.max_awaiting_merge.unwrap_or(current.max_awaiting_merge)),
                    projects::network.eq(network.unwrap_or(current.network)),
                    projects::setup_command.eq(setup_command.unwrap_or(current.setup_command)),
                    projects::check_command.eq(check_command.unwrap_or(current.check_command)),
                    projects::check_timeout_s
                        .eq(check_timeout_s.unwrap_or(current.check_timeout_s)),
                    projects::review.eq(review.unwrap_or(current.review)),
                    projects::max_train.eq(max_train.unwrap_or(current.max_train)),
                    projects::max_review_rounds
                        .eq(max_review_rounds.unwrap_or(current.max_review_rounds)),
                    projects::repo_state.eq(repo_state),
                    projects::repo_error.eq(repo_error),
                    projects::repo_checked_at.eq(repo_checked_at),
                    projects::updated_at.eq(diesel::dsl::now),
                ))
                .returning(Project::as_returning())
                .get_result(conn)
                .await?;
            Activity::record(
                conn,
                Record {
                    kind: Kind::ProjectUpdated,
                    project_id: Some(&id),
                    bead_id: None,
                    actor,
                    data: serde_json::json!({}),
                },
            )
            .await?;
            Ok(updated)
        })
        .await
    }

    /// Deletes a project and its closed beads; refused while any bead is not closed.
    pub async fn delete(conn: &mut Conn, id: &str, actor: Actor) -> Result<()> {
        let id = id.to_owned();
        conn.transaction::<_, Error, _>(async move |conn| {
            // Reopening takes the graph lock and filing reads the project row FOR SHARE:
            // holding both, no bead can come back or slip in between check and delete.
            crate::beads::lock_graph(conn).await?;
            projects::table
                .find(&id)
                .select(projects::id)
                .for_update()
                .first::<String>(conn)
                .await
                .optional()?
                .ok_or_else(|| Error::not_found(format!("project {id}")))?;
            let unfinished: i64 = beads::table
                .filter(beads::project_id.eq(&id))
                .filter(beads::status.ne(BeadStatus::Closed))
                .count()
                .get_result(conn)
                .await?;
            if unfinished > 0 {
                return Err(Error::conflict(
                    "project_has_open_beads",
                    format!("the project still has {unfinished} bead(s) that are not closed"),
                ));
            }
            // Children reference parents without cascade; clear the links first.
            diesel::update(beads::table.filter(beads::project_id.eq(&id)))
                .set(beads::parent_id.eq(None::<String>))
                .execute(conn)
                .await?;
            diesel::delete(projects::table.find(&id)).execute(conn).await?;
            Activity::record(
                conn,
                Record {
                    kind: Kind::ProjectDeleted,
                    project_id: Some(&id),
                    bead_id: None,
                    actor,
                    data: serde_json::json!({}),
                },
            )
            .await?;
            Ok(())
        })
        .await
    }
}
