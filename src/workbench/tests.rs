use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::Duration;

use super::files::{LIST_MAX_ENTRIES, READ_PAGE_CHARS};
use super::run::{OUTPUT_HEAD, OUTPUT_TAIL};
use super::search::SearchQuery;
use super::*;

/// A worktree with a file, a nested file and a `.git` directory, beside an "outside" directory
/// holding a secret.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) ws: Workspace,
    outside: PathBuf,
}

/// Commands unconfined (`LOOM_SANDBOX=off`): what these tests check of `run` (process
/// groups, output, the environment) holds in the sandbox too, which `sandboxed` checks.
pub(super) fn fixture() -> Fixture {
    with_sandbox(SandboxMode::Off)
}

/// Commands in the sandbox, the worktree readied for it as a workbench readies it.
async fn sandboxed() -> Fixture {
    let f = with_sandbox(SandboxMode::Auto);
    f.ws.ready().await.unwrap();
    f
}

fn with_sandbox(mode: SandboxMode) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("wt");
    let outside = dir.path().join("outside");
    fs::create_dir_all(root.join("src/deep")).unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(root.join("README.md"), "# Hello\nsecond line\n").unwrap();
    fs::write(root.join("src/lib.rs"), "pub fn answer() -> u32 {\n    42\n}\n").unwrap();
    fs::write(root.join("src/deep/inner.txt"), "inner\n").unwrap();
    fs::write(root.join(".git/config"), "[core]\n").unwrap();
    fs::write(outside.join("secret"), "s3cret\n").unwrap();
    let clone = dir.path().join("clone");
    fs::create_dir_all(clone.join("worktrees/wt")).unwrap();
    let cell = sandbox::Cell {
        worktree: root.clone(),
        admin: clone.join("worktrees/wt"),
        clone,
        cache: dir.path().join("cache"),
        network: crate::projects::Network::None,
    };
    fs::create_dir_all(&cell.cache).unwrap();
    let sandbox = Sandbox::new(SandboxConfig { mode, ..SandboxConfig::default() });
    let ws = Workspace::new(&root, sandbox, cell).unwrap();
    Fixture { _dir: dir, ws, outside }
}

fn refused<T: std::fmt::Debug>(result: Result<T, ToolError>) -> String {
    match result {
        Err(ToolError::Refused(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A literal search of `query` under `path`.
pub(super) fn q<'a>(query: &'a str, path: Option<&'a str>) -> SearchQuery<'a> {
    SearchQuery { query, path, ..SearchQuery::default() }
}

pub(super) fn failed<T: std::fmt::Debug>(result: Result<T, ToolError>) -> String {
    match result {
        Err(ToolError::Failed(message)) => message,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn paths_that_leave_the_worktree_are_refused_for_every_operation() {
    let f = fixture();
    let ws = &f.ws;
    for path in ["../outside/secret", "/etc/passwd", "src/../../outside/secret", "a/../../x"] {
        refused(ws.read_file(path, None, None));
        refused(ws.write_file(path, "x"));
        refused(ws.edit_file(path, "s3cret", "x"));
        refused(ws.delete_file(path));
        refused(ws.list_files(Some(path), None));
        refused(ws.search(q("s", Some(path))));
    }
    assert!(refused(ws.read_file("/etc/passwd", None, None)).contains("absolute"));
    assert!(refused(ws.read_file("a/../../x", None, None)).contains("leaves the worktree"));
    assert_eq!(fs::read_to_string(f.outside.join("secret")).unwrap(), "s3cret\n");
    // `..` that stays inside is fine.
    assert!(ws.read_file("src/../README.md", None, None).unwrap().contains("\t# Hello"));
}

#[test]
fn a_symlinked_directory_pointing_outside_is_refused() {
    let f = fixture();
    symlink("/etc", f.ws.root().join("etc")).unwrap();
    symlink(&f.outside, f.ws.root().join("out")).unwrap();
    let e = refused(f.ws.read_file("etc/passwd", None, None));
    assert!(e.contains("symlink \"etc\"") && e.contains("outside"), "{e}");
    refused(f.ws.list_files(Some("etc"), None));
    refused(f.ws.search(q("root", Some("etc"))));
    refused(f.ws.write_file("out/new.txt", "x"));
    refused(f.ws.write_file("out/deeper/new.txt", "x"));
    refused(f.ws.delete_file("out/secret"));
    assert!(!f.outside.join("new.txt").exists() && !f.outside.join("deeper").exists());
    assert!(f.outside.join("secret").exists());
}

#[test]
fn a_symlinked_file_pointing_outside_cannot_be_read_written_or_deleted() {
    let f = fixture();
    let link = f.ws.root().join("secret.txt");
    symlink(f.outside.join("secret"), &link).unwrap();
    symlink(f.outside.join("missing"), f.ws.root().join("dangling")).unwrap();
    refused(f.ws.read_file("secret.txt", None, None));
    refused(f.ws.write_file("secret.txt", "overwritten"));
    refused(f.ws.edit_file("secret.txt", "s3cret", "x"));
    refused(f.ws.delete_file("secret.txt"));
    // A dangling link must not let a write create its target outside.
    refused(f.ws.write_file("dangling", "created?"));
    assert!(!f.outside.join("missing").exists());
    assert_eq!(fs::read_to_string(f.outside.join("secret")).unwrap(), "s3cret\n");
    assert!(link.symlink_metadata().is_ok());
}

#[test]
fn dot_git_is_refused_directly_and_through_a_symlink() {
    let f = fixture();
    symlink(f.ws.root().join(".git"), f.ws.root().join("g")).unwrap();
    for path in [".git/config", ".git", "src/../.git/config", ".GIT/config", "g/config"] {
        let e = refused(f.ws.read_file(path, None, None));
        assert!(e.contains(".git"), "{path}: {e}");
        refused(f.ws.write_file(path, "x"));
        refused(f.ws.delete_file(path));
    }
    assert_eq!(fs::read_to_string(f.ws.root().join(".git/config")).unwrap(), "[core]\n");
}

#[test]
fn a_symlink_inside_the_worktree_is_followed_and_deleting_it_removes_only_the_link() {
    let f = fixture();
    symlink("src/lib.rs", f.ws.root().join("lib-link")).unwrap();
    assert!(f.ws.read_file("lib-link", None, None).unwrap().contains("42"));
    f.ws.edit_file("lib-link", "42", "43").unwrap();
    assert!(fs::read_to_string(f.ws.root().join("src/lib.rs")).unwrap().contains("43"));
    f.ws.delete_file("lib-link").unwrap();
    assert!(f.ws.root().join("src/lib.rs").exists());
    assert!(f.ws.root().join("lib-link").symlink_metadata().is_err());
}

#[test]
fn files_can_be_written_read_edited_and_deleted_inside() {
    let f = fixture();
    let ws = &f.ws;
    assert!(ws.write_file("new/dir/a.txt", "one\ntwo\n").unwrap().starts_with("Created"));
    assert_eq!(
        ws.read_file("./new/dir/a.txt", None, None).unwrap(),
        "new/dir/a.txt L1-2 of 2\n     1\tone\n     2\ttwo"
    );
    assert!(ws.write_file("new/dir/a.txt", "one\ntwo\nthree\n").unwrap().starts_with("Replaced"));
    assert_eq!(
        ws.edit_file("new/dir/a.txt", "two\n", "2\n").unwrap(),
        "Edited \"new/dir/a.txt\". Line 2 changed; the file has 3 lines. Lines 1-3 now:\n     1\tone\n     2\t2\n     3\tthree"
    );
    assert_eq!(text_of(ws.read_file("new/dir/a.txt", None, None)), "one\n2\nthree\n");
    assert_eq!(
        ws.read_file("new/dir/a.txt", Some(2), Some(2)).unwrap(),
        "new/dir/a.txt L2-2 of 3\n     2\t2\n[1 more lines: read on with start_line=3]"
    );
    assert_eq!(ws.delete_file("new/dir/a.txt").unwrap(), "Deleted \"new/dir/a.txt\".");
    assert!(matches!(ws.read_file("new/dir/a.txt", None, None), Err(ToolError::NotFound(_))));
    assert!(failed(ws.delete_file("new/dir")).contains("directory"));
    assert!(failed(ws.write_file("src", "x")).contains("directory"));
    assert!(ws.root().join("new/dir").is_dir());
}

#[test]
fn a_missing_old_is_reported_with_the_closest_line() {
    let f = fixture();
    let e = failed(f.ws.edit_file("src/lib.rs", "pub fn answr() -> u32 {\n    41\n", "x"));
    assert!(e.contains("not found"), "{e}");
    assert!(e.contains("most like its first line is 1:\n\"pub fn answer() -> u32 {\""), "{e}");
    let unlike = failed(f.ws.edit_file("src/lib.rs", "zzzz qqqq", "x"));
    assert!(!unlike.contains("most like"), "{unlike}");
    assert!(failed(f.ws.edit_file("src/lib.rs", "", "x")).contains("empty"));
}

#[test]
fn an_ambiguous_old_names_every_line_it_occurs_on() {
    let f = fixture();
    f.ws.write_file("dup.txt", "x = 1\ny = 2\nx = 1\n").unwrap();
    let e = failed(f.ws.edit_file("dup.txt", "x = 1", "x = 3"));
    assert!(e.contains("occurs 2 times") && e.contains("lines 1, 3"), "{e}");
    assert!(e.contains("surrounding text"), "{e}");
    f.ws.edit_file("dup.txt", "y = 2\nx = 1", "y = 2\nx = 3").unwrap();
    assert_eq!(text_of(f.ws.read_file("dup.txt", None, None)), "x = 1\ny = 2\nx = 3\n");
}

#[test]
fn crlf_files_match_an_old_written_with_newlines() {
    let f = fixture();
    f.ws.write_file("win.txt", "a\r\nb\r\nc\r\n").unwrap();
    f.ws.edit_file("win.txt", "a\nb\n", "a\nB\n").unwrap();
    assert_eq!(fs::read(f.ws.root().join("win.txt")).unwrap(), b"a\r\nB\r\nc\r\n");
}

#[test]
fn a_big_file_is_read_page_by_page_to_its_end_with_numbers_and_where_to_read_on() {
    let f = fixture();
    let file: String = (1..=2000).map(|i| format!("line {i} {}\n", "x".repeat(40))).collect();
    f.ws.write_file("big.txt", &file).unwrap();
    let (mut next, mut pages, mut seen) = (Some(1), 0, String::new());
    while let Some(start) = next {
        let page = f.ws.read_file("big.txt", Some(start), None).unwrap();
        assert!(page.chars().count() <= READ_PAGE_CHARS + 200, "{}", page.chars().count());
        let header = page.lines().next().unwrap();
        assert!(header.starts_with(&format!("big.txt L{start}-")) && header.ends_with(" of 2000"));
        assert!(page.lines().nth(1).unwrap().starts_with(&format!("{start:>6}\tline {start} ")));
        next = page
            .rsplit_once("read on with start_line=")
            .map(|(_, n)| n.trim_end_matches(']').parse::<usize>().unwrap());
        seen.push_str(&text_of(Ok(page)));
        pages += 1;
    }
    assert_eq!(seen, file, "every line once, in order");
    assert!(pages > 1 && pages < 30, "{pages} pages");
    let past = failed(f.ws.read_file("big.txt", Some(2001), None));
    assert!(past.contains("has 2000 lines"), "{past}");
}

/// A read_file page's text: its lines without the header, numbers and notes.
fn text_of(page: Result<String, ToolError>) -> String {
    let page = page.unwrap();
    page.lines()
        .skip(1)
        .filter(|l| !l.starts_with('['))
        .map(|l| format!("{}\n", l.split_once('\t').unwrap().1))
        .collect()
}

#[test]
fn binary_files_are_refused_for_reading_and_editing() {
    let f = fixture();
    fs::write(f.ws.root().join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    assert!(failed(f.ws.read_file("logo.png", None, None)).contains("binary"));
    assert!(failed(f.ws.edit_file("logo.png", "PNG", "GIF")).contains("binary"));
}

#[test]
fn search_reports_file_and_line_and_skips_git_binaries_and_big_files() {
    let f = fixture();
    let ws = &f.ws;
    fs::write(ws.root().join(".git/HEAD"), "answer\n").unwrap();
    fs::write(ws.root().join("bin.dat"), b"answer\0").unwrap();
    fs::write(ws.root().join("huge.txt"), "answer\n".repeat(200_000)).unwrap();
    fs::write(ws.root().join("src/deep/notes.md"), "no\nthe answer is 42\n").unwrap();
    let out = ws.search(q("answer", None)).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "src/deep/notes.md:2: the answer is 42",
            "src/lib.rs:1: pub fn answer() -> u32 {",
            "[1 files over 1048576 bytes were not searched]",
        ]
    );
    assert_eq!(
        ws.search(q("answer", Some("src/lib.rs"))).unwrap(),
        "src/lib.rs:1: pub fn answer() -> u32 {"
    );
    assert!(ws.search(q("Answer", Some("src"))).unwrap().starts_with("No matches"));
}

#[test]
fn listing_is_sorted_marks_directories_honours_depth_and_skips_git() {
    let f = fixture();
    let ws = &f.ws;
    assert_eq!(ws.list_files(None, None).unwrap(), "README.md\nsrc/\nsrc/deep/\nsrc/lib.rs");
    assert_eq!(ws.list_files(Some("src"), Some(1)).unwrap(), "src/deep/\nsrc/lib.rs");
    assert_eq!(
        ws.list_files(Some("src"), Some(5)).unwrap(),
        "src/deep/\nsrc/deep/inner.txt\nsrc/lib.rs"
    );
    assert!(failed(ws.list_files(Some("README.md"), None)).contains("read_file"));
}

#[test]
fn a_long_listing_keeps_the_top_level_and_says_it_was_cut() {
    let f = fixture();
    for i in 0..LIST_MAX_ENTRIES {
        fs::write(f.ws.root().join(format!("src/deep/f{i:03}")), "").unwrap();
    }
    let out = f.ws.list_files(None, Some(3)).unwrap();
    assert!(out.contains("README.md\nsrc/\n"), "{}", &out[..100]);
    assert!(out.contains("src/lib.rs"));
    assert_eq!(out.lines().count(), LIST_MAX_ENTRIES + 1);
    assert!(out.ends_with("list a subdirectory, or use a smaller depth]"));
}

#[tokio::test]
async fn run_reports_the_exit_code_and_both_streams() {
    let f = fixture();
    let out = f.ws.run("cat README.md; echo oops >&2; exit 3", None).await.unwrap();
    assert_eq!(out, "[exit code 3]\n# Hello\nsecond line\noops\n");
    let out = f.ws.run("cat; pwd", Some(10)).await.unwrap();
    assert_eq!(out, format!("[exit code 0]\n{}\n", f.ws.root().display()));
}

#[tokio::test]
async fn a_check_says_how_it_ended_in_the_sandbox_and_a_missing_command_is_not_runnable() {
    let f = sandboxed().await;
    let green = f.ws.check("grep -q Hello README.md && echo fine", 60).await.unwrap();
    assert_eq!(green, Ran { ended: Ended::Exited(0), output: "fine\n".into() });
    assert!(green.ended.succeeded() && !green.ended.not_runnable());
    let red = f.ws.check("echo 2 failed; exit 1", 60).await.unwrap();
    assert_eq!((red.ended.clone(), red.output.as_str()), (Ended::Exited(1), "2 failed\n"));
    assert!(!red.ended.succeeded() && !red.ended.not_runnable());
    let missing = f.ws.check("no-such-check-tool --all", 60).await.unwrap();
    assert!(missing.ended.not_runnable(), "{missing:?}");
    assert!(missing.output.contains("not found"), "{missing:?}");
    let slow = f.ws.check("sleep 30", 1).await.unwrap();
    assert_eq!(slow.ended, Ended::TimedOut(1));
    assert_eq!(slow.ended.to_string(), "[killed after 1 s: timed out]");
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_its_children() {
    let f = fixture();
    let command = "sleep 100 & echo $! > bg.pid; sh -c 'echo $$ > fg.pid; exec sleep 100'";
    let run = f.ws.run(command, Some(1));
    let out = tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap();
    assert!(out.starts_with("[killed after 1 s: timed out]"), "{out}");
    for name in ["bg.pid", "fg.pid"] {
        let pid = fs::read_to_string(f.ws.root().join(name)).unwrap();
        assert!(dies(pid.trim()).await, "{name} {pid} survived");
    }
}

#[tokio::test]
async fn background_processes_are_killed_when_the_command_ends() {
    let f = fixture();
    let run = f.ws.run("sleep 100 & echo $! > bg.pid; echo started", Some(60));
    let out = tokio::time::timeout(Duration::from_secs(30), run).await.unwrap().unwrap();
    assert_eq!(out, "[exit code 0]\nstarted\n");
    let pid = fs::read_to_string(f.ws.root().join("bg.pid")).unwrap();
    assert!(dies(pid.trim()).await);
}

/// Whether the process stops running within a few seconds (against the 100 s it would sleep).
/// The pipe reaches end-of-file as a killed process closes its files, a moment before the
/// kernel marks it a zombie, hence the short wait.
async fn dies(pid: &str) -> bool {
    let gone = || match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie only waits for its reaper.
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
        Err(_) => true,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !gone() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn long_output_keeps_its_head_and_tail() {
    let f = fixture();
    let out = f.ws.run("seq 1 200000", None).await.unwrap();
    assert!(out.starts_with("[exit code 0]\n1\n2\n3\n"), "{}", &out[..40]);
    assert!(out.ends_with("199999\n200000\n"));
    assert!(out.contains("bytes of output left out ...]"));
    assert!(out.len() <= OUTPUT_HEAD + OUTPUT_TAIL + 100, "{}", out.len());
}

#[tokio::test]
async fn the_environment_is_scrubbed_of_everything_but_the_basics() {
    // Cargo and nextest set CARGO_* for the test process: proof that there is something to scrub.
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO_")));
    let f = fixture();
    let out = f.ws.run("env", None).await.unwrap();
    let keys: Vec<&str> =
        out.lines().skip(1).filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
    assert!(keys.contains(&"PATH") && keys.contains(&"HOME"), "{out}");
    let allowed = ["PATH", "HOME", "LANG", "TERM", "PWD", "SHLVL", "_", "OLDPWD"];
    for key in keys {
        assert!(allowed.contains(&key) || key.starts_with("GIT_"), "{key} leaked into run");
        assert!(!key.starts_with("CARGO") && !key.starts_with("LOOM_"));
    }
    let home = out.lines().find_map(|l| l.strip_prefix("HOME=")).unwrap();
    assert!(!home.is_empty() && !std::path::Path::new(home).starts_with(f.ws.root()));
}

#[tokio::test]
async fn in_the_sandbox_home_and_cargo_home_are_the_project_cache_and_nothing_of_loom_passes() {
    let f = sandboxed().await;
    let out = f.ws.run("env; id -u", None).await.unwrap();
    let cache = f.ws.cell.cache.display().to_string();
    assert!(out.contains(&format!("HOME={cache}\n")), "{out}");
    assert!(out.contains(&format!("CARGO_HOME={cache}/.cargo\n")), "{out}");
    assert!(
        !out.contains("LOOM_") && !out.contains("CARGO_PKG") && !out.contains("NEXTEST"),
        "{out}"
    );
    if nix::unistd::Uid::effective().is_root() {
        assert!(!out.trim_end().ends_with("\n0"), "commands never run as root: {out}");
    }
}

#[tokio::test]
async fn in_the_sandbox_the_command_sees_its_worktree_and_no_process_of_the_host() {
    let f = sandboxed().await;
    let out = f.ws.run("cat README.md; ls /proc | grep -c '^[0-9]'; echo made > new.txt", None);
    let out = out.await.unwrap();
    assert!(out.starts_with("[exit code 0]\n# Hello\n"), "{out}");
    let pids: usize = out.lines().nth(3).unwrap().trim().parse().unwrap();
    assert!(pids < 10, "the sandbox's own few processes only, saw {pids}: {out}");
    assert_eq!(fs::read_to_string(f.ws.root().join("new.txt")).unwrap(), "made\n");
}

#[tokio::test]
async fn in_the_sandbox_what_a_command_leaves_running_dies_with_it() {
    let f = sandboxed().await;
    // A daemon that left the session and the process group still dies: its PID namespace
    // ends with the command.
    let command = "setsid sh -c 'while true; do date +%s%N > beat; sleep 0.05; done' \
                   </dev/null >/dev/null 2>&1 & sleep 0.3; echo started";
    let out = f.ws.run(command, Some(30)).await.unwrap();
    assert_eq!(out, "[exit code 0]\nstarted\n");
    let beat = f.ws.root().join("beat");
    let first = fs::read_to_string(&beat).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fs::read_to_string(&beat).unwrap(), first, "the daemon still writes");
}

#[tokio::test]
async fn variables_the_operator_passes_on_reach_run_but_never_loom_settings() {
    let f = fixture();
    let ws = f.ws.clone().with_env(vec![
        ("RUSTUP_HOME".into(), "/opt/rustup".into()),
        ("LOOM_GATEWAY_API_KEY".into(), "sk-never".into()),
    ]);
    let out = ws.run("env", None).await.unwrap();
    assert!(out.contains("RUSTUP_HOME=/opt/rustup"), "{out}");
    assert!(!out.contains("sk-never") && !out.contains("LOOM_"), "{out}");
}

#[tokio::test]
async fn perform_file_does_the_file_actions_and_refuses_the_rest() {
    let f = fixture();
    let read = Action::ReadFile { path: "README.md".into(), start_line: None, end_line: None };
    assert!(f.ws.perform_file(&read).await.unwrap().contains("\t# Hello"));
    let run = Action::Run { command: "echo hi".into(), timeout_s: None };
    assert!(failed(f.ws.perform_file(&run).await).contains("not a file action"));
}

#[test]
fn pipes_are_refused_instead_of_blocking_a_thread_forever() {
    let f = fixture();
    let fifo = f.ws.root().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert!(failed(f.ws.read_file("pipe", None, None)).contains("not a regular file"));
    assert!(failed(f.ws.write_file("pipe", "x")).contains("not a regular file"));
    assert!(f.ws.search(q("x", None)).unwrap().starts_with("No matches"));
}

#[test]
fn loom_is_shielded_from_its_agents_commands() {
    super::shield_loom_from_commands(false);
    assert!(
        !nix::sys::prctl::get_dumpable().unwrap(),
        "Loom's /proc entries are closed to its commands"
    );
}

#[test]
fn writing_a_hard_link_to_a_file_outside_replaces_the_link_and_leaves_the_file_alone() {
    let f = fixture();
    let secret = f.outside.join("secret");
    fs::hard_link(&secret, f.ws.root().join("linked")).unwrap();
    assert_eq!(
        f.ws.write_file("linked", "mine\n").unwrap(),
        "Replaced \"linked\" (5 bytes, 1 lines)."
    );
    assert_eq!(fs::read_to_string(&secret).unwrap(), "s3cret\n");
    assert_eq!(fs::read_to_string(f.ws.root().join("linked")).unwrap(), "mine\n");
    let edited = f.ws.edit_file("linked", "mine", "ours").unwrap();
    assert!(edited.starts_with("Edited"), "{edited}");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "s3cret\n");
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_action_never_lets_a_write_or_read_out() {
    let f = fixture();
    let (root, outside) = (f.ws.root().to_path_buf(), f.outside.clone());
    let d = root.join("d");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (d, outside, stop) = (d.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let tmp = d.with_file_name("d.tmp");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // A real directory, then (atomically) a symlink pointing out, and back.
                let _ = fs::remove_file(&tmp);
                let _ = fs::remove_dir_all(&tmp);
                let _ = fs::create_dir(&tmp);
                let _ = fs::rename(&tmp, &d);
                let _ = symlink(&outside, &tmp);
                let _ = fs::rename(&tmp, &d);
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    let (mut wrote, mut refused) = (0, 0);
    while std::time::Instant::now() < deadline {
        match f.ws.write_file("d/x", "escaped?\n") {
            Ok(_) => wrote += 1,
            Err(_) => refused += 1,
        }
        if let Ok(text) = f.ws.read_file("d/secret", None, None) {
            panic!("read outside through a swapped symlink: {text}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(!outside.join("x").exists(), "a write went out ({wrote} written, {refused} refused)");
    assert!(wrote + refused > 10, "the race was tried: {wrote} written, {refused} refused");
}

#[tokio::test]
async fn a_big_agents_md_is_cut_by_the_one_truncation_policy_and_a_missing_one_is_none() {
    let f = fixture();
    assert_eq!(f.ws.agents_md().await, None);
    let rules: String = (1..=2_000).map(|i| format!("rule {i}: be careful\n")).collect();
    fs::write(f.ws.root().join("AGENTS.md"), &rules).unwrap();
    let read = f.ws.agents_md().await.expect("read");
    assert!(read.chars().count() <= 10_000, "{}", read.chars().count());
    assert!(read.starts_with("rule 1: be careful\n") && read.contains("left out here"), "cut");
    assert!(read.ends_with("rule 2000: be careful\n"), "the end is kept");
}
