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
    #[error("source repository {0} has no commits yet")]
    EmptySource(String),
    #[error("branch {branch} does not exist in {repo}")]
    BranchNotFound { branch: String, repo: String },
    #[error("project {0} has not been cloned yet")]
    NotCloned(String),
    /// Talking to a remote failed: unreachable, refused, or a protocol this build lacks.
    #[error("{op} {url} failed: {}", .source.message())]
    Remote {
        op: &'static str,
        url: String,
        #[source]
        source: git2::Error,
    },
    /// libgit2 in this build has no transport for the URL (it is built without https and
    /// ssh support; local paths, `file://`, `git://` and `http://` work).
    #[error("{url} cannot be reached: this build of Loom has no transport for it ({})", .source.message())]
    UnsupportedUrl {
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("push of {branch} to {url} was rejected: {reason}")]
    PushRejected { branch: String, url: String, reason: String },
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

    /// A failure talking to `url`; `url` is shown, so it must already be redacted.
    pub(crate) fn remote(op: &'static str, url: String, source: git2::Error) -> Self {
        let unsupported = match source.class() {
            git2::ErrorClass::Net => source.message().contains("unsupported URL protocol"),
            git2::ErrorClass::Ssl => source.message().contains("no TLS stream available"),
            _ => false,
        };
        if unsupported {
            GitError::UnsupportedUrl { url, source }
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
            GitError::EmptySource(_) => Error::invalid("git_empty_repository", message),
            GitError::BranchNotFound { .. } => Error::invalid("git_branch_not_found", message),
            GitError::NotCloned(_) => Error::conflict("git_not_cloned", message),
            GitError::PushRejected { .. } => Error::conflict("git_push_rejected", message),
            GitError::UnsupportedUrl { .. } => Error::invalid("git_unsupported_url", message),
            GitError::Remote { .. } => Error::Unavailable(message.into()),
            GitError::Git { .. } | GitError::Io { .. } | GitError::Task(_) => {
                Error::Internal(anyhow!(e))
            }
        }
    }
}
