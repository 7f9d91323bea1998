//! Parsing what the rest of Loom hands the git module: ids that become directory and branch
//! names, and a project's `repo` string (a local path or a URL).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::{GitError, Result};

/// A project or bead id used as one path component and inside `loom/<bead-id>`: ASCII
/// letters, digits, `.`, `_` and `-`, not starting with `.` or `-` (so never `..`, a hidden
/// directory or something that reads as an option).
pub(crate) fn check_id(what: &'static str, value: &str) -> Result<()> {
    let invalid = |reason| Err(GitError::InvalidName { what, value: value.to_owned(), reason });
    if value.is_empty() || value.len() > 200 {
        return invalid("it must be 1 to 200 characters long");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return invalid("only letters, digits, '.', '_' and '-' are allowed");
    }
    if value.starts_with(['.', '-']) || value.ends_with(".lock") || value.contains("..") {
        return invalid("it must not start with '.' or '-', contain '..' or end in '.lock'");
    }
    Ok(())
}

/// A project branch name git accepts as `refs/heads/<branch>`.
pub(crate) fn check_branch(branch: &str) -> Result<()> {
    if git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        Ok(())
    } else {
        Err(GitError::InvalidName {
            what: "branch",
            value: branch.to_owned(),
            reason: "git does not accept it as a branch name",
        })
    }
}

/// The URL schemes libgit2 has a transport for in this build (`file://` is read as a path).
const TRANSPORTS: [&str; 6] = ["git", "http", "https", "ssh", "ssh+git", "git+ssh"];

/// Where a project's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// An existing directory on this machine, absolute and canonical.
    Local(PathBuf),
    /// Anything libgit2 has to reach through a transport (`https://`, `ssh://`, `git@host:p`).
    Url(String),
}

impl Source {
    pub(crate) fn parse(repo: &str) -> Result<Source> {
        let repo = repo.trim();
        if repo.is_empty() {
            return Err(GitError::invalid_input("the project has no repository to clone"));
        }
        if let Some(path) = local_path(repo) {
            let path = std::path::absolute(&path).unwrap_or(path);
            return match path.canonicalize() {
                Ok(path) if path.is_dir() => Ok(Source::Local(path)),
                _ => Err(GitError::SourceMissing(path.display().to_string())),
            };
        }
        if let Some((scheme, _)) = repo.split_once("://")
            && !TRANSPORTS.iter().any(|known| known.eq_ignore_ascii_case(scheme))
        {
            // libgit2 would take such a URL for `host:path` and try ssh with it.
            let message = format!("unsupported URL protocol {scheme}://");
            return Err(GitError::UnsupportedUrl {
                url: redact(repo),
                source: git2::Error::new(
                    git2::ErrorCode::GenericError,
                    git2::ErrorClass::Net,
                    message,
                ),
            });
        }
        Ok(Source::Url(repo.to_owned()))
    }

    /// The URL the clone's `origin` gets. A local path becomes a `file://` URL, so that a
    /// path containing ':' is not taken for `host:path` by libgit2.
    pub(crate) fn url(&self) -> String {
        match self {
            Source::Local(path) => file_url(path),
            Source::Url(url) => url.clone(),
        }
    }
}

/// The directory a local path or `file://` URL names; `None` for a remote URL.
pub(crate) fn local_path(repo: &str) -> Option<PathBuf> {
    if let Some(rest) = repo.strip_prefix("file://") {
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        return Some(bytes_to_path(percent_decode(rest)));
    }
    if repo.contains("://") || is_scp_like(repo) {
        return None;
    }
    Some(PathBuf::from(repo))
}

/// Why a local path (or `file://` URL) cannot be a project's repository: it does not exist,
/// or it is not a git repository (bare, or with a `.git`). `None` for a usable one, and for
/// a remote URL, which is only tried when work starts. Looks at the file system only.
pub fn missing_local_repository(repo: &str) -> Option<String> {
    let path = local_path(repo)?;
    let path = std::path::absolute(&path).unwrap_or(path);
    let shown = path.display();
    if !path.is_dir() {
        return Some(format!("the repository {shown} does not exist on the server"));
    }
    let bare = path.join("HEAD").is_file() && path.join("objects").is_dir();
    if !bare && std::fs::symlink_metadata(path.join(".git")).is_err() {
        return Some(format!(
            "{shown} is not a git repository (make one with `git init --bare {shown}`)"
        ));
    }
    None
}

/// `[user@]host:path`, the form git reads as ssh: a ':' before any '/'.
fn is_scp_like(repo: &str) -> bool {
    match (repo.find(':'), repo.find('/')) {
        (Some(0), _) => false,
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A URL fit for logs, error messages and every place a project's repository is shown: its
/// credentials become `***` (`https://***@host/x.git`), user and password alike, as does the
/// user of an `http(s)` URL that has no password (`https://<token>@host/...` is a usual way
/// to hand over a token, and so is a token as the user with any password). An ssh URL's
/// plain user (`ssh://git@host/...`) stays.
pub fn redact(url: &str) -> String {
    let Some(parts) = UrlParts::split(url) else { return url.to_owned() };
    match parts.userinfo {
        Some(userinfo) if userinfo.contains(':') || parts.is_http() => {
            format!("{}***@{}", parts.scheme, parts.host_and_rest)
        }
        _ => url.to_owned(),
    }
}

/// Whether `url` carries what [`redact`] puts in place of credentials (`***@`, or
/// `user:***@` as older versions showed it): a URL shown by Loom and sent back, not one
/// that can log in.
pub fn has_redacted_credentials(url: &str) -> bool {
    let Some(parts) = UrlParts::split(url.trim()) else { return false };
    match parts.userinfo {
        Some(userinfo) => userinfo == "***" || userinfo.ends_with(":***"),
        None => false,
    }
}

/// What authenticating to a remote needs from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlAuth {
    /// `host[:port]`, for messages; the whole (redacted) URL when it has no host part.
    pub(crate) host: String,
    /// The user and password written into the URL, percent-decoded.
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    /// `http://` or `https://`, where git's credential helpers apply.
    pub(crate) http: bool,
}

impl UrlAuth {
    pub(crate) fn parse(url: &str) -> UrlAuth {
        let Some(parts) = UrlParts::split(url) else {
            return scp_auth(url).unwrap_or_else(|| UrlAuth {
                host: redact(url),
                user: None,
                password: None,
                http: false,
            });
        };
        let end = parts.host_and_rest.find('/').unwrap_or(parts.host_and_rest.len());
        let (user, password) = match parts.userinfo.map(|info| info.split_once(':')) {
            None => (None, None),
            Some(None) => (parts.userinfo, None),
            Some(Some((user, password))) => (Some(user), Some(password)),
        };
        UrlAuth {
            host: parts.host_and_rest[..end].to_owned(),
            user: user.map(decode_str),
            password: password.map(decode_str),
            http: parts.is_http(),
        }
    }
}

/// `[user@]host:path`: the user, and the host between '@' and ':'.
fn scp_auth(url: &str) -> Option<UrlAuth> {
    if !is_scp_like(url) {
        return None;
    }
    let (login, _) = url.split_once(':')?;
    let (user, host) = match login.rsplit_once('@') {
        Some((user, host)) => (Some(user.to_owned()), host),
        None => (None, login),
    };
    Some(UrlAuth { host: host.to_owned(), user, password: None, http: false })
}

/// `scheme://[userinfo@]host...` cut at the userinfo.
struct UrlParts<'a> {
    /// Up to and including `://`.
    scheme: &'a str,
    userinfo: Option<&'a str>,
    /// Everything after the userinfo's `@`.
    host_and_rest: &'a str,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Option<UrlParts<'a>> {
        let scheme_end = url.find("://")? + 3;
        let rest = &url[scheme_end..];
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let (userinfo, host_and_rest) = match authority.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        Some(UrlParts { scheme: &url[..scheme_end], userinfo, host_and_rest })
    }

    fn is_http(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("http://") || self.scheme.eq_ignore_ascii_case("https://")
    }
}

fn decode_str(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(s)).into_owned()
}

pub(crate) fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(unix)]
fn bytes_to_path(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from(String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_a_directory_or_break_a_ref_are_rejected() {
        for bad in ["", "..", ".hidden", "-opt", "a/b", "a b", "x.lock", "a..b", "é"] {
            assert!(check_id("bead id", bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["web-abc", "bd-a3f8.1", "Proj_2"] {
            assert!(check_id("bead id", good).is_ok(), "{good:?} was rejected");
        }
    }

    #[test]
    fn branch_names_git_rejects_are_invalid() {
        assert!(check_branch("main").is_ok());
        assert!(check_branch("feature/x").is_ok());
        assert!(matches!(check_branch("bad..name"), Err(GitError::InvalidName { .. })));
        assert!(check_branch("").is_err());
    }

    #[test]
    fn urls_and_scp_forms_are_remote_and_paths_are_local() {
        assert_eq!(local_path("https://example.com/a.git"), None);
        assert_eq!(local_path("ssh://git@example.com/a.git"), None);
        assert_eq!(local_path("git@example.com:org/a.git"), None);
        assert_eq!(local_path("/srv/a"), Some(PathBuf::from("/srv/a")));
        assert_eq!(local_path("./a:b/c"), Some(PathBuf::from("./a:b/c")));
        assert_eq!(local_path("file:///srv/a%20b"), Some(PathBuf::from("/srv/a b")));
        assert_eq!(local_path("file://localhost/srv/a"), Some(PathBuf::from("/srv/a")));
    }

    #[test]
    fn file_urls_round_trip_awkward_paths() {
        let path = Path::new("/tmp/a b:c%d");
        let url = file_url(path);
        assert_eq!(url, "file:///tmp/a%20b%3Ac%25d");
        assert_eq!(local_path(&url), Some(path.to_path_buf()));
    }

    #[test]
    fn a_missing_local_source_or_an_empty_repo_string_is_an_error() {
        let missing = Source::parse("/definitely/not/here");
        assert!(matches!(missing, Err(GitError::SourceMissing(_))));
        assert!(matches!(Source::parse("  "), Err(GitError::InvalidInput(_))));
    }

    #[test]
    fn only_schemes_with_a_transport_are_urls() {
        for url in ["https://h/r.git", "HTTP://h/r", "ssh://h/r", "git+ssh://h/r", "git://h/r"] {
            assert_eq!(Source::parse(url).ok(), Some(Source::Url(url.to_owned())), "{url}");
        }
        assert_eq!(Source::parse("git@h:r.git").ok(), Some(Source::Url("git@h:r.git".into())));
        let err = Source::parse("svn://u:pw@h/r").expect_err("no svn transport");
        assert!(matches!(err, GitError::UnsupportedUrl { .. }), "{err:?}");
        assert!(err.to_string().starts_with("svn://***@h/r cannot be reached"), "{err}");
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(redact("https://u:secret@host/r.git"), "https://***@host/r.git");
        assert_eq!(redact("https://host/r.git"), "https://host/r.git");
        assert_eq!(redact("ssh://git@host/r.git"), "ssh://git@host/r.git");
        assert_eq!(redact("ssh://git:pw@host:22/r.git"), "ssh://***@host:22/r.git");
        assert_eq!(redact("git@host:r.git"), "git@host:r.git");
        assert_eq!(redact("http://u:p%40ss@h/a@b"), "http://***@h/a@b");
    }

    #[test]
    fn a_token_given_as_the_user_of_an_http_url_is_redacted() {
        assert_eq!(redact("https://ghp_token123@host/r.git"), "https://***@host/r.git");
        assert_eq!(redact("HTTP://tok@host/r.git"), "HTTP://***@host/r.git");
    }

    #[test]
    fn a_redacted_url_is_told_from_one_with_credentials() {
        for shown in ["https://***@h/r.git", "ssh://***@h/r"] {
            assert!(has_redacted_credentials(shown), "{shown}");
            assert_eq!(redact(shown), shown, "redacting is idempotent");
        }
        assert!(has_redacted_credentials("https://u:***@h/r.git"), "as older versions showed");
        for real in ["https://tok@h/r.git", "https://u:p@h/r.git", "git@h:r.git", "/srv/r", "h"] {
            assert!(!has_redacted_credentials(real), "{real}");
        }
    }

    #[test]
    fn credentials_and_host_come_out_of_a_url_decoded() {
        let auth = UrlAuth::parse("https://loom:t%3Ak%40n@git.example.com:8443/org/r.git");
        assert_eq!(auth.host, "git.example.com:8443");
        assert_eq!(auth.user.as_deref(), Some("loom"));
        assert_eq!(auth.password.as_deref(), Some("t:k@n"));
        assert!(auth.http);

        let token_only = UrlAuth::parse("https://tok@host/r.git");
        assert_eq!((token_only.user.as_deref(), token_only.password), (Some("tok"), None));

        let plain = UrlAuth::parse("https://host/r.git");
        assert_eq!((plain.host.as_str(), plain.user, plain.password), ("host", None, None));

        let ssh = UrlAuth::parse("ssh://git@127.0.0.1:2222/x");
        assert_eq!((ssh.host.as_str(), ssh.user.as_deref()), ("127.0.0.1:2222", Some("git")));
        assert!(!ssh.http);

        let scp = UrlAuth::parse("git@github.com:org/r.git");
        assert_eq!((scp.host.as_str(), scp.user.as_deref()), ("github.com", Some("git")));
        assert_eq!(UrlAuth::parse("github.com:org/r.git").user, None);
    }
}
