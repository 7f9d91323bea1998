//! The git module's error type and its mapping onto the domain error.

use anyhow::anyhow;

use crate::error::Error;

pub type Result<T, E = GitError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A project or bead id that cannot name a directory or a branch.
    #[error("{what} {value:?} cannot be used: {reason}")]
    InvalidName { what: &'static str, value: String, reason: &'static str },
    /// Commit input git would reject or mangle (an empty message, a bad trailer, ...).
    #[error("{0}")]
    InvalidInput(String),
    #[error("source repository {0} does not exist")]
    SourceMissing(String),
    #[error("branch {branch} does not exist in {repo}")]
    BranchNotFound { branch: String, repo: String },
    #[error("project {0} has not been cloned yet")]
    NotCloned(String),
    /// Nothing answered at the remote's address: it does not resolve, refuses the
    /// connection or times out.
    #[error("could not reach {url} while {op} it: {}", .source.message())]
    Unreachable {
        op: &'static str,
        url: String,
        #[source]
        source: git2::Error,
    },
    /// Talking to a remote failed once connected, or a local source went bad.
    #[error("{op} {url} failed: {}", .source.message())]
    Remote {
        op: &'static str,
        url: String,
        #[source]
        source: git2::Error,
    },
    /// The remote asked for credentials and accepted none that Loom could offer (see
    /// `auth.rs` for what is offered).
    #[error("authentication to {host} failed for {url}: {detail}")]
    AuthFailed { host: String, url: String, detail: String },
    /// No transport for the URL's scheme (local paths, `file://`, `git://`, `http(s)://`,
    /// `ssh://` and `user@host:path` work). Checked before libgit2 sees the URL, which would
    /// take any other `scheme://host` for an ssh `host:path`.
    #[error("{url} cannot be reached: this build of Loom has no transport for it ({})", .source.message())]
    UnsupportedUrl {
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("push of {branch} to {url} was rejected: {reason}")]
    PushRejected { branch: String, url: String, reason: String },
    /// Origin's branch has commits Loom's does not, and merging them into Loom's conflicts:
    /// nothing was merged, pushed or forced. A person has to merge the two.
    #[error(
        "origin's {branch} ({url}) has moved on and merging it into Loom's {branch} conflicts \
         in {}: nothing was pushed (Loom never forces); merge the two by hand",
        .paths.join(", ")
    )]
    UpstreamConflict { branch: String, url: String, paths: Vec<String> },
    #[error("{context}: {}", .source.message())]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl GitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        GitError::Io { context: context.into(), source }
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> Self {
        GitError::InvalidInput(message.into())
    }

    /// The project's repository could not be used as it is now: missing, unreachable,
    /// refusing Loom, or without the project branch. Not the fault of the work asked of it:
    /// whoever set the repository up (or the network) has to act.
    pub fn is_source_unusable(&self) -> bool {
        matches!(
            self,
            GitError::SourceMissing(_)
                | GitError::BranchNotFound { .. }
                | GitError::Unreachable { .. }
                | GitError::Remote { .. }
                | GitError::AuthFailed { .. }
                | GitError::UnsupportedUrl { .. }
        )
    }

    /// A failure talking to `url`; `url` is shown, so it must already be redacted.
    pub(crate) fn remote(op: &'static str, url: String, source: git2::Error) -> Self {
        let unsupported = match source.class() {
            git2::ErrorClass::Net => source.message().contains("unsupported URL protocol"),
            git2::ErrorClass::Ssl => source.message().contains("no TLS stream available"),
            _ => false,
        };
        let message = source.message();
        // Writing what was fetched into Loom's own clone failed: not the remote's doing.
        if source.class() == git2::ErrorClass::Os && message.starts_with("failed to lock file") {
            return GitError::Git { context: format!("{op} {url}"), source };
        }
        let unreachable = matches!(source.class(), git2::ErrorClass::Net | git2::ErrorClass::Os)
            && (message.starts_with("failed to connect to")
                || message.starts_with("failed to resolve address"));
        if unsupported {
            GitError::UnsupportedUrl { url, source }
        } else if unreachable {
            GitError::Unreachable { op, url, source }
        } else {
            GitError::Remote { op, url, source }
        }
    }
}

/// Attaches what was being done to a libgit2 error.
pub(crate) trait GitContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
    fn with_ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> GitContext<T> for std::result::Result<T, git2::Error> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| GitError::Git { context: context.to_owned(), source })
    }

    fn with_ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GitError::Git { context: context(), source })
    }
}

impl From<GitError> for Error {
    fn from(e: GitError) -> Self {
        let message = e.to_string();
        match e {
            GitError::InvalidName { .. } => Error::invalid("invalid_git_name", message),
            GitError::InvalidInput(_) => Error::invalid("invalid_git_input", message),
            GitError::SourceMissing(_) => Error::invalid("git_source_missing", message),
            GitError::BranchNotFound { .. } => Error::invalid("git_branch_not_found", message),
            GitError::NotCloned(_) => Error::conflict("git_not_cloned", message),
            GitError::PushRejected { .. } => Error::conflict("git_push_rejected", message),
            GitError::UpstreamConflict { .. } => Error::conflict("git_upstream_conflict", message),
            GitError::UnsupportedUrl { .. } => Error::invalid("git_unsupported_url", message),
            GitError::AuthFailed { .. } => Error::invalid("git_auth_failed", message),
            GitError::Remote { .. } | GitError::Unreachable { .. } => {
                Error::Unavailable(message.into())
            }
            GitError::Git { .. } | GitError::Io { .. } | GitError::Task(_) => {
                Error::Internal(anyhow!(e))
            }
        }
    }
}
