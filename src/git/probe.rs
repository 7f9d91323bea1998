//! Asking a project's repository whether it answers, without cloning or fetching anything:
//! what `git ls-remote` does, for the ticker's check of repositories marked unreachable.

use git2::{Direction, Remote};
use tracing::instrument;

use super::auth::Auth;
use super::error::{GitError, Result};
use super::names::{Source, check_branch, redact};
use super::{ProjectRepo, Repos, blocking};

impl Repos {
    /// Connects to the project's repository and lists its branches. Fine when it answers
    /// and either has the project branch or has no branch at all (an empty repository,
    /// whose branch the first push creates); otherwise the error says why, as `ensure`'s
    /// would.
    #[instrument(skip_all, fields(project.id = %project.id))]
    pub async fn probe(&self, project: &ProjectRepo) -> Result<()> {
        check_branch(&project.branch)?;
        let (repo, branch, config) =
            (project.repo.clone(), project.branch.clone(), self.git_config());
        blocking(move || {
            let url = Source::parse(&repo)?.url();
            let auth = Auth::new(&url, &config);
            let op = "reaching";
            let mut remote =
                Remote::create_detached(url.as_str()).map_err(|source| auth.error(op, source))?;
            let connection = remote
                .connect_auth(Direction::Fetch, Some(auth.callbacks()), None)
                .map_err(|source| auth.error(op, source))?;
            let heads = connection.list().map_err(|source| auth.error(op, source))?;
            let wanted = format!("refs/heads/{branch}");
            let mut branches = heads.iter().filter(|h| h.name().starts_with("refs/heads/"));
            let any = branches.clone().next().is_some();
            if !any || branches.any(|h| h.name() == wanted) {
                Ok(())
            } else {
                Err(GitError::BranchNotFound { branch, repo: redact(&url) })
            }
        })
        .await
    }
}
