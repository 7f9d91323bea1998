//! Credentials for remotes: the one callback every clone, fetch and push hands libgit2, and
//! the error an operation fails with once nothing Loom can offer is accepted.
//!
//! What is offered, in order, each at most once per operation: the user and password written
//! in the URL, the ssh-agent, the default key files (`~/.ssh/id_ed25519`, `~/.ssh/id_rsa`),
//! then a credential helper from Loom's own git config (`<data dir>/gitconfig`, for `http(s)`
//! URLs; never one from a clone's config, which an agent can write, nor the user's or the
//! system's). libgit2 asks again after every rejection, so the [`Plan`] also stops after
//! [`MAX_ASKS`] questions.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};
use tracing::debug;

use super::error::GitError;
use super::names::{UrlAuth, redact};
use super::own_config::OwnConfig;

/// The most times one operation may ask for credentials before Loom gives up.
pub(crate) const MAX_ASKS: u32 = 8;

/// One thing to offer a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The ssh user, when the URL names none.
    Username(String),
    /// The user and password written in the URL.
    UrlCredentials,
    SshAgent,
    SshKey(PathBuf),
    /// A credential helper (`credential.helper` in Loom's own git config).
    Helper,
}

impl Step {
    fn kind(&self) -> CredentialType {
        match self {
            Step::Username(_) => CredentialType::USERNAME,
            Step::UrlCredentials | Step::Helper => CredentialType::USER_PASS_PLAINTEXT,
            Step::SshAgent | Step::SshKey(_) => CredentialType::SSH_KEY,
        }
    }

    fn describe(&self) -> String {
        match self {
            Step::Username(user) => format!("the ssh user {user}"),
            Step::UrlCredentials => "the user and password in the URL".to_owned(),
            Step::SshAgent => "the ssh-agent".to_owned(),
            Step::SshKey(path) => path.display().to_string(),
            Step::Helper => "git's credential helper".to_owned(),
        }
    }
}

/// Which credentials to offer next. Pure: what the machine has is given to [`Plan::new`].
#[derive(Debug)]
pub(crate) struct Plan {
    candidates: Vec<Step>,
    next: usize,
    asks: u32,
    default_user: String,
    exhausted: bool,
}

impl Plan {
    pub(crate) fn new(
        url_credentials: bool,
        agent: bool,
        keys: Vec<PathBuf>,
        helper: bool,
        default_user: String,
    ) -> Plan {
        let mut candidates = Vec::new();
        if url_credentials {
            candidates.push(Step::UrlCredentials);
        }
        if agent {
            candidates.push(Step::SshAgent);
        }
        candidates.extend(keys.into_iter().map(Step::SshKey));
        if helper {
            candidates.push(Step::Helper);
        }
        Plan { candidates, next: 0, asks: 0, default_user, exhausted: false }
    }

    /// What to offer when libgit2 asks for one of `allowed`; `None` means give up.
    pub(crate) fn next(&mut self, allowed: CredentialType) -> Option<Step> {
        self.asks += 1;
        if self.asks > MAX_ASKS {
            self.exhausted = true;
            return None;
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Some(Step::Username(self.default_user.clone()));
        }
        while let Some(step) = self.candidates.get(self.next) {
            self.next += 1;
            if allowed.intersects(step.kind()) {
                return Some(step.clone());
            }
        }
        self.exhausted = true;
        None
    }

    /// Loom ran out of things to offer (the server rejected all it had).
    pub(crate) fn gave_up(&self) -> bool {
        self.exhausted
    }
}

/// The credentials side of one operation on `url`.
pub(crate) struct Auth {
    url: String,
    parsed: UrlAuth,
    plan: RefCell<Plan>,
    offered: RefCell<Vec<String>>,
    /// Where the credential helper is read from: Loom's own configuration only.
    git_config: OwnConfig,
}

impl Auth {
    /// Looks at what this machine has to offer for `url`: an agent socket, key files, and
    /// a credential helper in `git_config`.
    pub(crate) fn new(url: &str, git_config: &OwnConfig) -> Auth {
        let parsed = UrlAuth::parse(url);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let keys = home
            .map(|home| key_paths(&home).into_iter().filter(|path| path.is_file()).collect())
            .unwrap_or_default();
        let agent = std::env::var_os("SSH_AUTH_SOCK").is_some_and(|sock| !sock.is_empty());
        let default_user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|user| !user.is_empty()))
            .unwrap_or_else(|| "git".to_owned());
        let plan = Plan::new(parsed.user.is_some(), agent, keys, parsed.http, default_user);
        Auth {
            url: url.to_owned(),
            parsed,
            plan: RefCell::new(plan),
            offered: RefCell::new(Vec::new()),
            git_config: git_config.clone(),
        }
    }

    /// Callbacks with the credentials callback set; callers add their own to them.
    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, user, allowed| self.credentials(url, user, allowed));
        callbacks
    }

    fn credentials(
        &self,
        url: &str,
        user: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        loop {
            let step = self.plan.borrow_mut().next(allowed);
            let Some(step) = step else {
                let message = format!("authentication failed for {}", self.parsed.host);
                return Err(git2::Error::new(ErrorCode::Auth, ErrorClass::Net, message));
            };
            match self.make(&step, url, user) {
                Ok(cred) => {
                    self.offered.borrow_mut().push(step.describe());
                    return Ok(cred);
                }
                // Nothing to offer from there (no helper configured, an unreadable key):
                // on to the next.
                Err(e) => debug!(step = step.describe(), error = e.message(), "skipping"),
            }
        }
    }

    fn make(&self, step: &Step, url: &str, user: Option<&str>) -> Result<Cred, git2::Error> {
        let user = user.unwrap_or(&self.plan.borrow().default_user).to_owned();
        match step {
            Step::Username(name) => Cred::username(name),
            Step::UrlCredentials => {
                let user = self.parsed.user.as_deref().unwrap_or(&user);
                Cred::userpass_plaintext(user, self.parsed.password.as_deref().unwrap_or(""))
            }
            Step::SshAgent => Cred::ssh_key_from_agent(&user),
            Step::SshKey(private) => {
                let public = private.with_extension("pub");
                let public = public.is_file().then_some(public);
                Cred::ssh_key(&user, public.as_deref(), private, None)
            }
            Step::Helper => {
                let config = self.git_config.load()?;
                Cred::credential_helper(&config, url, self.parsed.user.as_deref())
            }
        }
    }

    /// The error for a failed `op` ("cloning", "fetching", ...): [`GitError::AuthFailed`]
    /// when it was authentication, else what [`GitError::remote`] makes of it, with any
    /// password from the URL scrubbed out of libgit2's message.
    pub(crate) fn error(&self, op: &'static str, source: git2::Error) -> GitError {
        let gave_up = self.plan.borrow().gave_up();
        if !gave_up && source.code() != ErrorCode::Auth {
            return GitError::remote(op, redact(&self.url), self.scrub(source));
        }
        let offered = self.offered.borrow();
        let mut detail = if offered.is_empty() {
            "Loom had no credentials to offer".to_owned()
        } else {
            format!("the server accepted none of {}", offered.join(", "))
        };
        if !gave_up {
            // libgit2's own reason (an auth scheme it lacks, ...).
            detail = format!("{}; {detail}", self.scrub(source).message());
        }
        GitError::AuthFailed { host: self.parsed.host.clone(), url: redact(&self.url), detail }
    }

    fn scrub(&self, source: git2::Error) -> git2::Error {
        let secrets = [self.parsed.password.as_deref(), self.url_password()];
        let mut message = source.message().to_owned();
        for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
            message = message.replace(secret, "***");
        }
        if message == source.message() {
            source
        } else {
            git2::Error::new(source.code(), source.class(), message)
        }
    }

    /// The password as written in the URL (still percent-encoded), if any.
    fn url_password(&self) -> Option<&str> {
        let rest = &self.url[self.url.find("://")? + 3..];
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let userinfo = &authority[..authority.rfind('@')?];
        userinfo.split_once(':').map(|(_, password)| password)
    }
}

/// The default key files under `home`, in the order they are offered.
fn key_paths(home: &Path) -> Vec<PathBuf> {
    ["id_ed25519", "id_rsa"].iter().map(|name| home.join(".ssh").join(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: CredentialType = CredentialType::USER_PASS_PLAINTEXT;

    fn no_config() -> OwnConfig {
        OwnConfig::in_data_dir(Path::new("/nonexistent"))
    }

    fn ssh() -> CredentialType {
        CredentialType::SSH_KEY | CredentialType::USER_PASS_PLAINTEXT
    }

    #[test]
    fn https_offers_the_url_credentials_then_the_helper_then_gives_up() {
        let mut plan = Plan::new(true, true, key_paths(Path::new("/h")), true, "me".into());

        assert_eq!(plan.next(HTTP), Some(Step::UrlCredentials));
        assert_eq!(plan.next(HTTP), Some(Step::Helper), "ssh steps are not offered to http");
        assert!(!plan.gave_up());
        assert_eq!(plan.next(HTTP), None);
        assert!(plan.gave_up());
        assert_eq!(plan.next(HTTP), None, "and stays given up");
    }

    #[test]
    fn ssh_asks_for_a_user_then_tries_the_agent_then_each_key() {
        let keys = key_paths(Path::new("/h"));
        let mut plan = Plan::new(false, true, keys.clone(), false, "me".into());

        assert_eq!(plan.next(CredentialType::USERNAME), Some(Step::Username("me".into())));
        assert_eq!(plan.next(ssh()), Some(Step::SshAgent));
        assert_eq!(plan.next(ssh()), Some(Step::SshKey(keys[0].clone())));
        assert_eq!(plan.next(ssh()), Some(Step::SshKey(keys[1].clone())));
        assert_eq!(plan.next(ssh()), None);
        assert!(plan.gave_up());
    }

    #[test]
    fn a_server_that_keeps_asking_is_answered_at_most_max_asks_times() {
        let mut plan = Plan::new(true, true, key_paths(Path::new("/h")), true, "me".into());
        let answered = (0..100).filter(|_| plan.next(CredentialType::USERNAME).is_some()).count();
        assert_eq!(answered, MAX_ASKS as usize);
        assert!(plan.gave_up());
    }

    #[test]
    fn with_nothing_to_offer_the_first_ask_gives_up() {
        let mut plan = Plan::new(false, false, Vec::new(), false, "me".into());
        assert_eq!(plan.next(ssh()), None);
        assert!(plan.gave_up());
    }

    #[test]
    fn an_auth_failure_names_the_host_and_never_the_password() {
        let auth = Auth::new("https://loom:s3cr%2Ft@git.example.com/r.git", &no_config());
        let source = git2::Error::new(ErrorCode::Auth, ErrorClass::Http, "401 for s3cr%2Ft");

        let err = auth.error("fetching", source);

        assert!(matches!(&err, GitError::AuthFailed { host, .. } if host == "git.example.com"));
        let message = err.to_string();
        assert!(message.contains("authentication to git.example.com failed"), "{message}");
        assert!(!message.contains("s3cr"), "{message}");
    }

    #[test]
    fn other_failures_keep_their_kind_with_the_password_scrubbed() {
        let auth = Auth::new("https://loom:s3cr%2Ft@127.0.0.1:9/r.git", &no_config());
        let source = git2::Error::new(
            ErrorCode::GenericError,
            ErrorClass::Net,
            "odd reply about s3cr%2Ft and s3cr/t",
        );

        let err = auth.error("fetching", source);

        assert!(matches!(err, GitError::Remote { op: "fetching", .. }), "{err:?}");
        let message = err.to_string();
        assert!(!message.contains("s3cr"), "{message}");
        assert!(message.contains("https://***@127.0.0.1:9/r.git"), "{message}");
    }
}
