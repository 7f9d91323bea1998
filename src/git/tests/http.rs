//! A real smart-HTTP remote: `git http-backend` (git's own CGI program) behind a small
//! HTTP/1.1 server on 127.0.0.1 that demands basic auth, so cloning, fetching and pushing
//! go through libgit2's http transport and the credentials callback for real.

use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;

use super::push::bare_origin;
use super::*;
use crate::git::auth::MAX_ASKS;
use crate::git::names::file_url;
use crate::git::{EnsureOutcome, PushOutcome};

struct GitHttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Requests answered 401.
    challenged: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl GitHttpServer {
    /// Serves the repositories under `root` to a client that logs in as `user`/`password`.
    fn start(root: &Path, user: &str, password: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (stop, challenged) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let server = Backend { root: root.to_path_buf(), user: user.to_owned(), expected };
        let (stop_flag, counter) = (stop.clone(), challenged.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Err(e) = server.answer(stream, &counter) {
                    eprintln!("test git server: {e}");
                }
            }
        });
        GitHttpServer { port, stop, challenged, thread: Some(thread) }
    }

    fn challenged(&self) -> usize {
        self.challenged.load(Ordering::SeqCst)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Backend {
    root: PathBuf,
    user: String,
    expected: String,
}

impl Backend {
    /// One request per connection (the reply says `Connection: close`).
    fn answer(&self, stream: TcpStream, challenged: &AtomicUsize) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut out = stream;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (path, query) = (path.to_owned(), query.to_owned());
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        if header("authorization").as_deref() != Some(self.expected.as_str()) {
            challenged.fetch_add(1, Ordering::SeqCst);
            let reply = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"loom\"\r\n\
                         Content-Length: 0\r\nConnection: close\r\n\r\n";
            return out.write_all(reply.as_bytes());
        }
        let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            read_chunked(&mut reader)?
        } else {
            let length = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            body
        };
        let output = self.run_backend(&method, &path, &query, header("content-type"), &body)?;
        out.write_all(&cgi_to_http(&output))
    }

    fn run_backend(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: Option<String>,
        body: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut input = tempfile::tempfile()?;
        input.write_all(body)?;
        input.rewind()?;
        let output = Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REMOTE_USER", &self.user)
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", content_type.unwrap_or_default())
            .env("CONTENT_LENGTH", body.len().to_string())
            .stdin(Stdio::from(input))
            .stderr(Stdio::inherit())
            .output()?;
        Ok(output.stdout)
    }
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|e| std::io::Error::other(format!("bad chunk size: {e}")))?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A CGI reply (`Status:` and other headers, a blank line, the body) as an HTTP response.
fn cgi_to_http(output: &[u8]) -> Vec<u8> {
    let split = output.windows(4).position(|w| w == b"\r\n\r\n").map(|at| (at, at + 4));
    let split = split.or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|a| (a, a + 2)));
    let (head, body) = match split {
        Some((end, start)) => {
            (String::from_utf8_lossy(&output[..end]).into_owned(), &output[start..])
        }
        None => (String::new(), output),
    };
    let mut status = "200 OK".to_owned();
    let mut reply = String::new();
    for line in head.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                status = value.trim().to_owned();
            }
            _ => reply.push_str(&format!("{line}\r\n")),
        }
    }
    let mut response = format!(
        "HTTP/1.1 {status}\r\n{reply}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// A bare origin under `srv/`, served over http with the given login.
fn served_origin(fx: &Fixture, user: &str, password: &str) -> GitHttpServer {
    source_with(&fx.path("seed"), &[("README.md", "hi\n")]);
    bare_copy(&fx.path("seed"), &fx.path("srv/origin.git"));
    GitHttpServer::start(&fx.path("srv"), user, password)
}

fn http_project(port: u16, userinfo: &str) -> ProjectRepo {
    let repo = format!("http://{userinfo}@127.0.0.1:{port}/origin.git");
    ProjectRepo { id: "web".into(), repo, branch: "main".into() }
}

#[tokio::test]
async fn a_smart_http_remote_is_cloned_and_pushed_to_with_basic_auth_from_the_url() {
    let fx = Fixture::new();
    let server = served_origin(&fx, "loom", "t0k:en/x");
    let project = http_project(server.port, "loom:t0k%3Aen%2Fx");

    assert_eq!(fx.repos.ensure(&project).await.expect("clone"), EnsureOutcome::Ready);
    let readme = fx.repos.read_file(&project, "README.md").await.expect("read");
    assert_eq!(readme.as_deref(), Some(&b"hi\n"[..]));
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");
    let main = tip(&fx.clone_dir("web"), "main").expect("main");

    let outcome = fx.repos.push(&project).await.expect("push over http");

    assert_eq!(outcome, PushOutcome::Pushed { sha: main.clone() });
    assert_eq!(tip(&fx.path("srv/origin.git"), "main"), Some(main));
    assert!(server.challenged() > 0, "the server asked for credentials");
    assert_eq!(fx.repos.ensure(&project).await.expect("fetch"), EnsureOutcome::Ready);
}

#[tokio::test]
async fn upstream_moving_on_over_http_is_merged_in_and_pushed() {
    let fx = Fixture::new();
    let server = served_origin(&fx, "loom", "secret");
    let project = http_project(server.port, "loom:secret");
    fx.repos.ensure(&project).await.expect("clone");
    let origin = Repository::open(fx.path("srv/origin.git")).expect("origin");
    let theirs = commit_to_ref(&origin, "main", &[("theirs.txt", "t\n")]).to_string();
    bead_commits(&fx, &project, "b1", &[("ours.txt", "o\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");

    let PushOutcome::Pushed { sha } = fx.repos.push(&project).await.expect("push") else {
        panic!("not pushed")
    };

    assert_eq!(tip(&fx.path("srv/origin.git"), "main"), Some(sha.clone()));
    let merge = origin.find_commit(git2::Oid::from_str(&sha).expect("oid")).expect("merge");
    assert_eq!(merge.parent_id(1).expect("second parent").to_string(), theirs);
}

#[tokio::test]
async fn a_wrong_token_fails_after_a_few_tries_naming_the_host_and_not_the_token() {
    let fx = Fixture::new();
    let server = served_origin(&fx, "loom", "right-token");
    let project = http_project(server.port, "loom:wrong-token");

    let err = fx.repos.ensure(&project).await.expect_err("refused");

    let host = format!("127.0.0.1:{}", server.port);
    assert!(matches!(&err, GitError::AuthFailed { host: h, .. } if *h == host), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("authentication to {host} failed")), "{message}");
    assert!(message.contains("the user and password in the URL"), "{message}");
    assert!(!message.contains("wrong-token"), "{message}");
    assert_eq!(crate::error::Error::from(err).code(), "git_auth_failed");
    let challenged = server.challenged();
    assert!((1..=MAX_ASKS as usize + 2).contains(&challenged), "asked {challenged} times");
    assert!(!fx.clone_dir("web").exists());
}

#[tokio::test]
async fn a_push_to_a_server_that_refuses_the_login_is_an_auth_error() {
    let fx = Fixture::new();
    let project = bare_origin(&fx).await;
    let server = GitHttpServer::start(&fx.path(""), "loom", "right");
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");
    let before = tip(&fx.path("origin.git"), "main");
    let mut moved = project.clone();
    moved.repo = format!("http://loom:wrong@127.0.0.1:{}/origin.git", server.port);

    let err = fx.repos.push(&moved).await.expect_err("refused");

    assert!(matches!(err, GitError::AuthFailed { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "{err}");
    assert_eq!(tip(&fx.path("origin.git"), "main"), before);
}

#[tokio::test]
async fn a_credential_helper_in_loom_s_own_git_config_is_offered_when_the_url_has_none() {
    let fx = Fixture::new();
    let server = served_origin(&fx, "loom", "from-helper");
    let helper = "!f() { echo username=loom; echo password=from-helper; }; f";
    std::fs::create_dir_all(fx.path("data")).expect("mkdir");
    let config = format!("[credential]\n\thelper = \"{helper}\"\n");
    std::fs::write(fx.path("data/gitconfig"), config).expect("write");
    let project = http_project_without_login(server.port);

    assert_eq!(fx.repos.ensure(&project).await.expect("clone"), EnsureOutcome::Ready);

    assert_eq!(tip(&fx.clone_dir("web"), "main"), tip(&fx.path("srv/origin.git"), "main"));
    assert!(server.challenged() > 0, "the server asked for credentials");
}

fn http_project_without_login(port: u16) -> ProjectRepo {
    let repo = format!("http://127.0.0.1:{port}/origin.git");
    ProjectRepo { id: "web".into(), repo, branch: "main".into() }
}

/// What an agent's command can do in a bead's worktree: `git config` there writes the
/// clone's config. Plants a credential helper that leaves `marker` behind when run (and
/// would answer the server), a `pushurl` and `insteadOf`s to `elsewhere`.
fn plant_in_clone_config(fx: &Fixture, marker: &Path, elsewhere: &Path, url: &str) {
    let helper = format!(
        "!f() {{ touch {}; echo username=loom; echo password=from-helper; }}; f",
        marker.display()
    );
    let mut config = git2::Config::open(&fx.clone_dir("web").join("config")).expect("config");
    let elsewhere = file_url(elsewhere);
    config.set_str("credential.helper", &helper).expect("helper");
    config.set_str("remote.origin.url", &elsewhere).expect("url");
    config.set_str("remote.origin.pushurl", &elsewhere).expect("pushurl");
    config.set_str(&format!("url.{elsewhere}.insteadOf"), url).expect("insteadOf");
    config.set_str(&format!("url.{elsewhere}.pushInsteadOf"), url).expect("pushInsteadOf");
}

#[tokio::test]
async fn a_helper_and_push_urls_planted_in_the_clone_s_config_are_never_used() {
    let fx = Fixture::new();
    let server = served_origin(&fx, "loom", "from-helper");
    // Cloned while the URL carried the login; then the login is gone from the project.
    let with_login = http_project(server.port, "loom:from-helper");
    fx.repos.ensure(&with_login).await.expect("clone");
    bead_commits(&fx, &with_login, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&with_login, "b1").await.expect("merge");
    let (marker, elsewhere) = (fx.path("helper-ran"), fx.path("elsewhere.git"));
    bare_copy(&fx.path("srv/origin.git"), &elsewhere);
    let url = format!("http://127.0.0.1:{}/origin.git", server.port);
    plant_in_clone_config(&fx, &marker, &elsewhere, &url);
    let before = tip(&elsewhere, "main");

    let pushed = fx.repos.push(&with_login).await.expect("pushed to the project's URL");
    let refused = fx.repos.push(&http_project_without_login(server.port)).await;

    let PushOutcome::Pushed { sha } = pushed else { panic!("not pushed: {pushed:?}") };
    assert_eq!(tip(&fx.path("srv/origin.git"), "main"), Some(sha));
    assert_eq!(tip(&elsewhere, "main"), before, "nothing went to the planted URL");
    let err = refused.expect_err("no login: the planted helper is not asked");
    assert!(matches!(err, GitError::AuthFailed { .. }), "{err:?}");
    assert!(!marker.exists(), "the planted credential helper ran");
    let fetched = fx.repos.ensure(&with_login).await.expect("fetched from the project's URL");
    assert_eq!(fetched, EnsureOutcome::Ready);
    assert!(!marker.exists(), "the planted credential helper ran");
}

#[tokio::test]
async fn the_login_in_a_project_url_is_written_nowhere_in_the_clone_or_the_worktree() {
    let fx = Fixture::new();
    let server = served_origin(&fx, "loom", "s3cret-token");
    let project = http_project(server.port, "loom:s3cret-token");

    fx.repos.ensure(&project).await.expect("clone");
    bead_commits(&fx, &project, "b1", &[("one.txt", "1\n")]).await;
    fx.repos.merge(&project, "b1").await.expect("merge");
    fx.repos.push(&project).await.expect("push");
    fx.repos.ensure(&project).await.expect("fetch");

    let mut files = Vec::new();
    readable_files(&fx.path("data"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("config")), "{files:?}");
    for file in files {
        let text = String::from_utf8_lossy(&std::fs::read(&file).expect("read")).into_owned();
        assert!(!text.contains("s3cret-token"), "{}:\n{text}", file.display());
    }
    assert!(fx.clone_repo("web").find_remote("origin").is_err());
}

/// Every file under `dir` but git's (compressed) objects: what a `cat` would show.
fn readable_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() && !path.ends_with("objects") {
            readable_files(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}
