//! One worktree as the agent's actions see it: every path is relative to its root and is
//! refused, with a message for the model, when it would leave the root (absolute, `..`, a
//! symlink pointing out) or touch `.git`. The operations live in `files`, `edit` and `run`.
//!
//! The checks bound the file actions only: `run` executes whatever shell command the model
//! writes, as Loom's user, with a scrubbed environment but no filesystem sandbox.

mod edit;
mod files;
mod run;
#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]
mod tests;

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::actions::Action;

/// What an operation tells the model when it cannot do what was asked. The text is the
/// message; the variant lets the loop count refusals apart from ordinary failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The path leaves the worktree or touches `.git`.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// Anything else: a binary file, an ambiguous edit, a directory where a file was meant, an
    /// I/O error.
    #[error("{0}")]
    Failed(String),
}

/// A worktree's root, canonicalised, and where `run` puts `HOME`.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    home: Option<PathBuf>,
    /// Variables added to `run`'s otherwise empty environment, by the operator's choice.
    extra_env: Vec<(String, String)>,
}

/// A path an action named, checked: `shown` is its normalised relative form, for messages;
/// `real` is where it is on disk, with every symlink that exists along it followed.
#[derive(Debug)]
struct Resolved {
    parts: Vec<String>,
    shown: String,
    real: PathBuf,
}

impl Workspace {
    /// A workspace over the directory `root`, which must exist.
    pub fn new(root: impl AsRef<Path>) -> std::io::Result<Workspace> {
        let root = fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(Workspace { root, home: None, extra_env: Vec::new() })
    }

    /// Use `home` (created when missing) as `HOME` for every `run`, so caches survive between
    /// commands. Without it each command gets a fresh empty `HOME`, removed afterwards.
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Workspace {
        self.home = Some(home.into());
        self
    }

    /// Adds these variables to every `run` (say, where the toolchains live); `LOOM_*` names
    /// are dropped, so Loom's own settings and secrets cannot be passed on by mistake.
    pub fn with_env(mut self, vars: Vec<(String, String)>) -> Workspace {
        self.extra_env = vars.into_iter().filter(|(k, _)| !k.starts_with("LOOM_")).collect();
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Performs a workspace action (the file actions and `run`), or None for the actions that
    /// belong to the run loop (`git_diff`, `commit`, `create_bead`, `comment`, `done`,
    /// `block`). File operations run on the blocking pool.
    pub async fn perform(&self, action: &Action) -> Option<Result<String, ToolError>> {
        if let Action::Run { command, timeout_s } = action {
            return Some(self.run(command, *timeout_s).await);
        }
        let (ws, action) = (self.clone(), action.clone());
        let result = tokio::task::spawn_blocking(move || ws.perform_blocking(&action)).await;
        match result {
            Ok(outcome) => outcome,
            Err(e) => Some(Err(ToolError::Failed(format!("the operation failed: {e}")))),
        }
    }

    fn perform_blocking(&self, action: &Action) -> Option<Result<String, ToolError>> {
        Some(match action {
            Action::ListFiles { path, depth } => self.list_files(path.as_deref(), *depth),
            Action::ReadFile { path, start_line, end_line } => {
                self.read_file(path, *start_line, *end_line)
            }
            Action::Search { query, path } => self.search(query, path.as_deref()),
            Action::WriteFile { path, content } => self.write_file(path, content),
            Action::EditFile { path, old, new } => self.edit_file(path, old, new),
            Action::DeleteFile { path } => self.delete_file(path),
            _ => return None,
        })
    }

    /// Checks `path` and finds it on disk. Lexically first (no absolute paths, no `..` above
    /// the root, nothing in `.git`), then through the filesystem: each existing component
    /// that is a symlink must resolve to somewhere inside the root and outside `.git`.
    fn resolve(&self, path: &str) -> Result<Resolved, ToolError> {
        let parts = lexical_parts(path)?;
        let shown = if parts.is_empty() { ".".to_string() } else { parts.join("/") };
        if touches_git(parts.iter().map(String::as_str)) {
            return Err(git_refused(&shown));
        }
        let real = self.follow(&parts, &shown)?;
        Ok(Resolved { parts, shown, real })
    }

    fn follow(&self, parts: &[String], shown: &str) -> Result<PathBuf, ToolError> {
        let mut real = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            let next = real.join(part);
            let Ok(meta) = fs::symlink_metadata(&next) else {
                // Nothing exists from here on, so no symlink can be in the way.
                real = next;
                real.extend(&parts[i + 1..]);
                break;
            };
            if !meta.file_type().is_symlink() {
                real = next;
                continue;
            }
            let link = parts[..=i].join("/");
            let outside = || {
                ToolError::Refused(format!(
                    "\"{shown}\" goes through the symlink \"{link}\", which points outside the \
                     worktree; only paths inside it can be used."
                ))
            };
            let target = fs::canonicalize(&next).map_err(|_| {
                ToolError::Refused(format!(
                    "\"{shown}\" goes through the symlink \"{link}\", whose target does not exist."
                ))
            })?;
            let inside = target.strip_prefix(&self.root).map_err(|_| outside())?;
            if touches_git(inside.iter().filter_map(|c| c.to_str())) {
                return Err(git_refused(shown));
            }
            real = target;
        }
        Ok(real)
    }
}

/// The normal components of a relative path, with `.` dropped and `..` applied.
fn lexical_parts(path: &str) -> Result<Vec<String>, ToolError> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(ToolError::Refused(format!(
                        "\"{path}\" leaves the worktree; paths must stay inside it."
                    )));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ToolError::Refused(format!(
                    "\"{path}\" is an absolute path; paths are relative to the worktree root, \
                     like \"src/main.rs\"."
                )));
            }
        }
    }
    Ok(parts)
}

/// `.git` in any letter case: case-insensitive filesystems make `.GIT` the same directory.
fn touches_git<'a>(mut parts: impl Iterator<Item = &'a str>) -> bool {
    parts.any(|p| p.eq_ignore_ascii_case(".git"))
}

fn git_refused(shown: &str) -> ToolError {
    ToolError::Refused(format!(
        "\"{shown}\" is inside .git, which actions may not touch; use git_diff and commit."
    ))
}

/// An I/O error as the model should read it, naming the path it wrote.
fn io_failed(shown: &str, e: &std::io::Error) -> ToolError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ToolError::NotFound(format!("\"{shown}\" does not exist.")),
        _ => ToolError::Failed(format!("\"{shown}\": {e}")),
    }
}

/// Agents' commands run as Loom's own user, so without this they could read Loom's secrets
/// from `/proc/<loom>/environ` (the gateway key, the database URL) or attach to it. Marking
/// Loom not dumpable makes its `/proc` entries unreadable and unattachable for them (and
/// turns off its core dumps). A process running as root is not protected from its children
/// this way: run Loom as an ordinary user.
pub fn shield_loom_from_commands() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not hide Loom's process from agents' commands");
    }
    if nix::unistd::Uid::effective().is_root() {
        tracing::warn!(
            "Loom runs as root: agents' commands run as root too and can read its secrets; \
             run it as an ordinary user"
        );
    }
}
