//! One worktree as the agent's actions see it: every path is relative to its root and is
//! refused, with a message for the model, when it would leave the root (absolute, `..`, a
//! symlink pointing out) or touch `.git`. The file actions live in `files` and `edit`;
//! commands (`run`) go through the sandbox.

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::actions::Action;
use super::sandbox::{Cell, Sandbox};

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
    /// A command was refused because no sandbox can be made for it.
    #[error("{0}")]
    SandboxUnavailable(String),
}

/// A worktree's root, canonicalised, and the sandbox its commands run in.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(super) root: PathBuf,
    pub(super) sandbox: Sandbox,
    /// What commands see; `cell.worktree` is `root`.
    pub(super) cell: Cell,
    /// Variables added to `run`'s otherwise empty environment, by the operator's choice.
    pub(super) extra_env: Vec<(String, String)>,
    /// When Loom runs as root, the unprivileged owner that files it creates are given to, so
    /// that the sandboxed commands (which run as that user) can change them too.
    pub(super) owner: Option<(u32, u32)>,
}

/// The most of a project's AGENTS.md put into a prompt.
const AGENTS_MD_MAX_CHARS: usize = 10_000;

/// A path an action named, checked: `shown` is its normalised relative form, for messages;
/// `real` is where it is on disk, with every symlink that exists along it followed.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) parts: Vec<String>,
    pub(super) shown: String,
    pub(super) real: PathBuf,
}

impl Workspace {
    /// A workspace over the directory `root`, which must exist, whose commands run in
    /// `sandbox` seeing `cell`.
    pub fn new(root: impl AsRef<Path>, sandbox: Sandbox, cell: Cell) -> std::io::Result<Workspace> {
        let root = fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"));
        }
        let cell = Cell { worktree: root.clone(), ..cell };
        Ok(Workspace { root, sandbox, cell, extra_env: Vec::new(), owner: None })
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

    /// Makes the worktree and the project's cache ready for commands: the cache exists, and
    /// when Loom runs as root both belong to the user the sandbox runs commands as.
    pub async fn ready(&self) -> crate::Result<()> {
        let owner = self.sandbox.owner().await;
        let (root, cache) = (self.root.clone(), self.cell.cache.clone());
        let done = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::MetadataExt;
            fs::create_dir_all(&cache)?;
            if let Some(owner) = owner {
                give_worktree(&root, owner)?;
                if fs::symlink_metadata(&cache)?.uid() != owner.0 {
                    give_tree(&cache, owner)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| crate::Error::Internal(anyhow::anyhow!("preparing the worktree: {e}")))?;
        done.map_err(|e| {
            crate::Error::Internal(anyhow::anyhow!("preparing {}: {e}", self.root.display()))
        })
    }

    /// Gives the worktree to the sandbox's user again, whatever it was given before: after
    /// Loom (as root) wrote files into it outside the file actions.
    pub async fn regive(&self) -> crate::Result<()> {
        let Some(owner) = self.sandbox.owner().await else { return Ok(()) };
        let root = self.root.clone();
        let done = tokio::task::spawn_blocking(move || give_entries(&root, owner)).await;
        done.map_err(|e| crate::Error::Internal(anyhow::anyhow!("preparing the worktree: {e}")))?
            .map_err(|e| crate::Error::Internal(anyhow::anyhow!("preparing the worktree: {e}")))
    }

    /// Whether this workspace's commands run confined, and if not why.
    pub async fn sandbox_status(&self) -> super::SandboxStatus {
        self.sandbox.status().await
    }

    /// Performs a file action on the blocking pool; `run` and the actions that are not about
    /// files are refused (the workbench performs those).
    pub async fn perform_file(&self, action: &Action) -> Result<String, ToolError> {
        let mut ws = self.clone();
        ws.owner = self.sandbox.owner().await;
        let action = action.clone();
        let result = tokio::task::spawn_blocking(move || ws.perform_blocking(&action)).await;
        result.unwrap_or_else(|e| Err(ToolError::Failed(format!("the operation failed: {e}"))))
    }

    fn perform_blocking(&self, action: &Action) -> Result<String, ToolError> {
        match action {
            Action::ListFiles { path, depth } => self.list_files(path.as_deref(), *depth),
            Action::ReadFile { path, start_line, end_line } => {
                self.read_file(path, *start_line, *end_line)
            }
            Action::Search { query, path, regex, glob, files_only } => {
                self.search(super::search::SearchQuery {
                    query,
                    path: path.as_deref(),
                    regex: regex.unwrap_or(false),
                    glob: glob.as_deref(),
                    files_only: files_only.unwrap_or(false),
                })
            }
            Action::FindFiles { pattern, path } => self.find_files(pattern, path.as_deref()),
            Action::WriteFile { path, content } => self.write_file(path, content),
            Action::EditFile { path, old, new, replace_all } => {
                let edit = super::actions::Edit {
                    old: old.clone(),
                    new: new.clone(),
                    replace_all: *replace_all,
                };
                self.edit(path, std::slice::from_ref(&edit))
            }
            Action::MultiEdit { path, edits } => self.edit(path, edits),
            Action::InsertLines { path, after_line, text } => {
                self.insert_lines(path, *after_line, text)
            }
            Action::DeleteFile { path } => self.delete_file(path),
            other => Err(ToolError::Failed(format!("{} is not a file action", other.name()))),
        }
    }

    /// The worktree's AGENTS.md, read like any file the agent reads: a link out of the
    /// worktree (to `/proc/self/environ`, say) is refused, and a big file is cut.
    pub async fn agents_md(&self) -> Option<String> {
        let ws = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            let at = ws.resolve("AGENTS.md")?;
            let text = String::from_utf8_lossy(&ws.load_text(&at)?).into_owned();
            Ok::<_, ToolError>(super::clip::clip(&text, AGENTS_MD_MAX_CHARS))
        })
        .await;
        match read {
            Ok(Ok(text)) => Some(text),
            Ok(Err(ToolError::NotFound(_))) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "AGENTS.md was not used");
                None
            }
            Err(_) => None,
        }
    }

    /// Checks `path` and finds it on disk. Lexically first (no absolute paths, no `..` above
    /// the root, nothing in `.git`), then through the filesystem: each existing component
    /// that is a symlink must resolve to somewhere inside the root and outside `.git`.
    pub(super) fn resolve(&self, path: &str) -> Result<Resolved, ToolError> {
        let parts = lexical_parts(path)?;
        let shown = if parts.is_empty() { ".".to_string() } else { parts.join("/") };
        if touches_git(parts.iter().map(String::as_str)) {
            return Err(git_refused(&shown));
        }
        let real = self.follow(&parts, &shown)?;
        Ok(Resolved { parts, shown, real })
    }

    pub(super) fn follow(&self, parts: &[String], shown: &str) -> Result<PathBuf, ToolError> {
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
pub(super) fn touches_git<'a>(mut parts: impl Iterator<Item = &'a str>) -> bool {
    parts.any(|p| p.eq_ignore_ascii_case(".git"))
}

fn git_refused(shown: &str) -> ToolError {
    ToolError::Refused(format!(
        "\"{shown}\" is inside .git, which actions may not touch; use git_diff and commit."
    ))
}

/// An I/O error as the model should read it, naming the path it wrote.
pub(super) fn io_failed(shown: &str, e: &std::io::Error) -> ToolError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ToolError::NotFound(format!("\"{shown}\" does not exist.")),
        _ => ToolError::Failed(format!("\"{shown}\": {e}")),
    }
}

/// Gives a worktree to `owner` for commands to work in, while libgit2 (which refuses a
/// repository whose directory or `.git` another user owns) still takes it for Loom's: the
/// directory and its `.git` stay Loom's, the directory's group becomes the owner's with
/// write permission, and everything else becomes the owner's. Skipped when done before
/// (what Loom adds later is given as it is made).
fn give_worktree(root: &Path, owner: (u32, u32)) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::symlink_metadata(root)?;
    if meta.gid() == owner.1 {
        return Ok(());
    }
    give_entries(root, owner)?;
    std::os::unix::fs::lchown(root, None, Some(owner.1))?;
    fs::set_permissions(root, fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o070))
}

/// Gives everything in a worktree but its `.git` to `owner`.
fn give_entries(root: &Path, owner: (u32, u32)) -> std::io::Result<()> {
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_name() != ".git" {
            give_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

/// Gives a whole tree to `owner`, not following symlinks.
fn give_tree(root: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        if fs::symlink_metadata(&path)?.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Agents' commands run as Loom's own user when the sandbox is off, so without this they could read Loom's secrets
/// from `/proc/<loom>/environ` (the gateway key, the database URL) or attach to it. Marking
/// Loom not dumpable makes its `/proc` entries unreadable and unattachable for them (and
/// turns off its core dumps). A process running as root is not protected from its children
/// this way. In the sandbox, commands see no process of Loom's at all.
pub fn shield_loom_from_commands(unconfined: bool) {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not hide Loom's process from agents' commands");
    }
    if unconfined && nix::unistd::Uid::effective().is_root() {
        tracing::warn!(
            "Loom runs as root: agents' commands run as root too and can read its secrets; \
             run it as an ordinary user"
        );
    }
}
