//! The README's commands, run as a new user runs them: every command of its `sh` blocks and
//! every complete `loom ...` example in its text, in the order the README gives them, against
//! the real `loom serve` with its private database, in a fresh directory and HOME. Only the way
//! the binary is named changes (`cargo run --release --` and `loom` become the built binary),
//! and two things a reader brings are supplied: the repository the README points the project
//! at (`~/src/web`) and the id of the bead the README filed (its examples say `web-4k2x`).
//! Everything else is as written, so the README cannot drift from what Loom accepts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

/// Commands the README shows that this test does not run, and why.
const NOT_RUN: &[(&str, &str)] = &[(".ci/run", "the test suite itself")];

/// The commands of the README in order: its `sh` blocks' lines (continuations joined,
/// comments dropped) and its inline `loom ...` examples that are complete (flags, no
/// placeholders or alternatives).
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut fenced = false;
    let mut pending = String::new();
    let mut prose = String::new();
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            if !fenced {
                commands.extend(inline_commands(&prose));
                prose.clear();
                in_block = line.trim() == "```sh";
            }
            fenced = !fenced;
            continue;
        }
        if !fenced {
            prose.push_str(line);
            prose.push('\n');
            continue;
        }
        if !in_block {
            continue;
        }
        let code = strip_comment(line);
        match code.trim_end().strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(code.trim_end());
                let command = pending.split_whitespace().collect::<Vec<_>>().join(" ");
                if !command.is_empty() {
                    commands.push(command);
                }
                pending.clear();
            }
        }
    }
    commands.extend(inline_commands(&prose));
    commands
}

/// A shell line without its trailing `# comment` (a `#` outside quotes after a space).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

fn inline_commands(prose: &str) -> Vec<String> {
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|span| span.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|span| {
            span.starts_with("loom ") && span.contains(" --") && !span.contains(['|', '<', '['])
        })
        .collect()
}

/// A command as the shell runs it here: the built binary in place of `cargo run --release --`
/// or `loom`, and the bead the README's examples name replaced by the one it filed.
fn runnable(command: &str, bead: Option<&str>) -> String {
    let command = command.replace("cargo run --release --", "\"$LOOM\"");
    let command = match command.strip_prefix("loom ") {
        Some(rest) => format!("\"$LOOM\" {rest}"),
        None => command,
    };
    match bead {
        Some(id) => command.replace("web-4k2x", id),
        None => command,
    }
}

struct NewUser {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<std::process::Child>,
    logs: Vec<PathBuf>,
}

impl NewUser {
    fn new() -> NewUser {
        // Under /tmp and reachable by all: as root, the private cluster runs as `postgres`.
        let dir = tempfile::Builder::new().prefix("loom-readme-").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The repository the README points the project at: one the reader already has.
        let repo = dir.path().join("src/web");
        std::fs::create_dir_all(&repo).unwrap();
        let git = |args: &[&str]| {
            let status = Command::new("git").args(args).current_dir(&repo).status().unwrap();
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["-c", "user.name=Reader", "-c", "user.email=reader@example.com", "commit", "-q"]
            .into_iter()
            .chain(["--allow-empty", "-m", "start"])
            .collect::<Vec<_>>());
        NewUser { dir, port, server: None, logs: Vec::new() }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn shell(&self, command: &str) -> Command {
        let mut shell = Command::new("bash");
        shell
            .args(["-c", command])
            .current_dir(self.home())
            .env("HOME", self.home())
            .env("LOOM", env!("CARGO_BIN_EXE_loom"))
            .env("LOOM_BIND", format!("127.0.0.1:{}", self.port))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("LOOM_URL")
            .env_remove("LOOM_TOKEN")
            .env_remove("LOOM_DATABASE_URL")
            .env_remove("LOOM_DATA_DIR")
            .env_remove("LOOM_PERSONAS_DIR")
            .env_remove("RUST_LOG");
        shell
    }

    /// `serve` runs in the background (replacing one already running) until it answers.
    fn serve(&mut self, command: &str) {
        self.stop();
        let log = self.home().join(format!("serve-{}.log", self.logs.len()));
        let out = std::fs::File::create(&log).unwrap();
        let child = self
            .shell(command)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.server = Some(child);
        self.logs.push(log);
        for _ in 0..1200 {
            if healthy(self.port) {
                return;
            }
            if let Some(status) = self.server.as_mut().unwrap().try_wait().unwrap() {
                panic!("`{command}` exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("`{command}` never answered:\n{}", self.log());
    }

    fn run(&self, command: &str) -> String {
        use std::io::Write;
        let mut child = self
            .shell(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // What a person types when asked for a password; nothing for the others (`chat`
        // ends at the end of its input).
        let asks = command.contains(" user create ") || command.contains(" login ");
        let typed = if asks { format!("{PASSWORD}\n") } else { String::new() };
        child.stdin.take().unwrap().write_all(typed.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "`{command}` failed:\n{stdout}{stderr}");
        format!("{stdout}{stderr}")
    }

    fn log(&self) -> String {
        self.logs.iter().map(|l| std::fs::read_to_string(l).unwrap_or_default()).collect()
    }

    /// SIGTERM, as Ctrl-C would, and the wait for a clean exit.
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let pid = server.id().to_string();
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            let status = server.wait().unwrap();
            assert!(status.success(), "serve exited {status}:\n{}", self.log());
        }
    }
}

/// Whether `/healthz` answers 200 (HTTP/1.0 by hand: this test has no runtime).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let mut answer = String::new();
    let asked = stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok();
    asked && answer.split_whitespace().nth(1) == Some("200")
}

impl Drop for NewUser {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        // A failed test still leaves no database server behind.
        let data = self.home().join(".loom/postgres/data");
        if data.join("postmaster.pid").exists() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--", "pg_ctl", "-D"])
                .arg(&data)
                .args(["-m", "immediate", "stop"])
                .status();
        }
    }
}

#[test]
fn every_command_the_readme_shows_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands = readme_commands(&readme);
    for expected in ["serve", "user create", "login", "project create", "agent create --name"] {
        assert!(commands.iter().any(|c| c.contains(expected)), "no `{expected}` in {commands:#?}");
    }
    let mut user = NewUser::new();
    let mut bead: Option<String> = None;
    let mut outputs = Vec::new();
    for command in &commands {
        if NOT_RUN.iter().any(|(c, _)| c == command) {
            continue;
        }
        let shell = runnable(command, bead.as_deref());
        assert!(shell.contains("\"$LOOM\""), "a README command that is not Loom's: {command}");
        if shell.ends_with("\"$LOOM\" serve") {
            user.serve(&shell);
            continue;
        }
        let out = user.run(&shell);
        if command.contains(" bead create ") {
            // "created web-xxxx ..." : the id the README's later examples stand for.
            let id = out.split_whitespace().find(|w| w.starts_with("web-")).map(str::to_owned);
            bead = Some(id.unwrap_or_else(|| panic!("no bead id in {out}")));
        }
        outputs.push((command.clone(), out));
    }
    let said = |part: &str| {
        outputs.iter().find(|(c, _)| c.contains(part)).map(|(_, o)| o.clone()).unwrap_or_default()
    };
    assert!(said(" login ").contains(&format!("127.0.0.1:{}", user.port)), "{}", said(" login "));
    let ready = said(" bead ready");
    assert!(ready.contains("Add a login page") && ready.contains("P1"), "{ready}");
    assert!(said(" agent create ").contains("ada"), "{}", said(" agent create "));
    assert!(said("loom chat ").contains("Conversation "), "{}", said("loom chat "));

    user.stop();
    let log = user.log();
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal:\n{log}");
    assert!(!log.contains("/healthz"), "probes logged:\n{log}");
    assert!(!log.contains("malformed") && !log.contains("not loaded"), "{log}");
    let postmaster = user.home().join(".loom/postgres/data/postmaster.pid");
    assert!(!postmaster.exists(), "the private database outlived `loom serve`");
}

#[test]
fn the_readme_is_read_the_way_a_shell_reads_it() {
    let text = "Run it:\n\n```sh\ncargo run --release -- serve   # on 8080\nA=1 B='x # y' \\\n  cargo run \
                --release -- thing\n```\n\nOr `loom chat --project web\n  --bead web-4k2x`, `loom \
                bead ready|blocked`, `loom run show <id>` and `loom login`.\n\n```json\n{}\n```\n";
    assert_eq!(
        readme_commands(text),
        [
            "cargo run --release -- serve",
            "A=1 B='x # y' cargo run --release -- thing",
            "loom chat --project web --bead web-4k2x",
        ]
    );
    assert_eq!(
        runnable("loom chat --project web --bead web-4k2x", Some("web-a1b2")),
        "\"$LOOM\" chat --project web --bead web-a1b2"
    );
}
