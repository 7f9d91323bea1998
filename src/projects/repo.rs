//! A project's repository as Loom shows it and takes it. The stored URL keeps any credentials
//! in it (Loom fetches and pushes with them); everything that shows a project (the API, the
//! dashboard, the CLI, logs) shows it through `git::redact_url`: `https://***@host/x.git`.

use serde::Serializer;

use crate::error::{Error, Result};
use crate::git::{has_redacted_credentials, missing_local_repository, redact_url};

/// serde's `serialize_with` for a project's repository: credentials hidden.
pub(super) fn serialize_shown<S: Serializer>(repo: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(repo))
}

/// A repository a project may be given: a local path or a git URL, and not one as Loom
/// shows it (with `***` for its credentials), which could never log in. A local path (or
/// `file://` URL) must be a git repository already (an empty `git init --bare` will do).
pub(super) fn check_repo(repo: &str) -> Result<()> {
    if repo.trim().is_empty() || repo.len() > 2000 || repo.contains('\0') {
        return Err(Error::invalid("invalid_repo", "repo must be a local path or a git URL"));
    }
    if has_redacted_credentials(repo) {
        return Err(Error::invalid(
            "invalid_repo",
            "the repository URL has *** where its credentials go, as Loom shows them: give the \
             real ones, or send the URL exactly as shown to keep the stored one",
        ));
    }
    // A local repository is there or not now; a remote one is tried when work starts.
    if let Some(why) = missing_local_repository(repo.trim()) {
        return Err(Error::invalid("repository_not_found", why));
    }
    Ok(())
}

/// The repository a change leaves the project with. The URL exactly as Loom shows it means
/// "unchanged": a settings form, or a client that read the project and sends it back, keeps
/// the stored credentials it never saw.
pub(super) fn changed_repo(asked: Option<&str>, current: &str) -> Result<String> {
    match asked.map(str::trim) {
        None => Ok(current.to_owned()),
        Some(asked) if asked == redact_url(current) => Ok(current.to_owned()),
        Some(asked) => {
            check_repo(asked)?;
            Ok(asked.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "https://loom:t0ken@git.example.com/x.git";

    #[test]
    fn the_url_as_shown_keeps_the_stored_one_and_another_replaces_it() {
        let shown = "https://***@git.example.com/x.git";
        assert_eq!(changed_repo(Some(shown), REAL).ok().as_deref(), Some(REAL));
        assert_eq!(changed_repo(None, REAL).ok().as_deref(), Some(REAL));
        let other = "https://loom:n3w@git.example.com/x.git";
        assert_eq!(changed_repo(Some(other), REAL).ok().as_deref(), Some(other));
    }

    #[test]
    fn a_redacted_url_for_another_repository_is_refused() {
        let err = changed_repo(Some("https://***@elsewhere.example.com/y.git"), REAL);
        assert!(matches!(err, Err(Error::Invalid { code: "invalid_repo", .. })), "{err:?}");
        assert!(check_repo("https://***@git.example.com/x.git").is_err());
        assert!(check_repo("git@git.example.com:x.git").is_ok());
    }
}
