//! The file actions: list, read, search, write, edit, delete. Blocking; `Workspace::perform`
//! runs them on the blocking pool.

use std::fs;
use std::path::Path;

use super::{Resolved, ToolError, Workspace, io_failed, touches_git};

pub(super) const LIST_DEFAULT_DEPTH: usize = 2;
const LIST_MAX_DEPTH: usize = 20;
pub(super) const LIST_MAX_ENTRIES: usize = 500;
/// What one read_file returns at most.
pub(super) const READ_MAX_BYTES: usize = 64 * 1024;
/// Larger files are not loaded at all (read_file, edit_file).
const FILE_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// A NUL byte in this many leading bytes marks a file binary.
const BINARY_SNIFF: usize = 8 * 1024;
pub(super) const SEARCH_MAX_MATCHES: usize = 100;
const SEARCH_MAX_FILE_BYTES: u64 = 1024 * 1024;
const SEARCH_MAX_LINE_CHARS: usize = 200;

impl Workspace {
    /// The entries under `path` (default the root), `depth` levels down (default 2), breadth
    /// first so that a cut-off listing still shows the top levels, then sorted.
    pub fn list_files(
        &self,
        path: Option<&str>,
        depth: Option<usize>,
    ) -> Result<String, ToolError> {
        let at = self.resolve(path.unwrap_or("."))?;
        let meta = fs::metadata(&at.real).map_err(|e| io_failed(&at.shown, &e))?;
        if !meta.is_dir() {
            return Err(ToolError::Failed(format!(
                "\"{}\" is a file, not a directory; read it with read_file.",
                at.shown
            )));
        }
        let depth = depth.unwrap_or(LIST_DEFAULT_DEPTH).clamp(1, LIST_MAX_DEPTH);
        let prefix = if at.parts.is_empty() { String::new() } else { format!("{}/", at.shown) };
        let mut entries = Vec::new();
        let mut level = vec![(at.real.clone(), prefix)];
        let mut truncated = false;
        'levels: for _ in 0..depth {
            let mut next = Vec::new();
            for (dir, prefix) in level {
                for (name, kind) in sorted_children(&dir) {
                    if entries.len() == LIST_MAX_ENTRIES {
                        truncated = true;
                        break 'levels;
                    }
                    match kind {
                        Kind::Dir => {
                            entries.push(format!("{prefix}{name}/"));
                            next.push((dir.join(&name), format!("{prefix}{name}/")));
                        }
                        Kind::Symlink(target) => {
                            entries.push(format!("{prefix}{name} -> {target}"))
                        }
                        Kind::File => entries.push(format!("{prefix}{name}")),
                    }
                }
            }
            level = next;
        }
        if entries.is_empty() {
            return Ok(format!("\"{}\" is empty.", at.shown));
        }
        entries.sort();
        let mut out = entries.join("\n");
        if truncated {
            out.push_str(&format!(
                "\n[listing stopped at {LIST_MAX_ENTRIES} entries: list a subdirectory, or use a \
                 smaller depth]"
            ));
        }
        Ok(out)
    }

    /// A text file, or the lines `start_line..=end_line` of it, cut at `READ_MAX_BYTES` with a
    /// note saying where to read on.
    pub fn read_file(
        &self,
        path: &str,
        start_line: Option<usize>,
        end_line: Option<usize>,
    ) -> Result<String, ToolError> {
        let at = self.resolve(path)?;
        let text = String::from_utf8_lossy(&load_text(&at)?).into_owned();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let total = lines.len();
        if total == 0 {
            return Ok(format!("\"{}\" is empty.", at.shown));
        }
        let start = start_line.unwrap_or(1).max(1);
        let end = end_line.unwrap_or(total).min(total);
        if start > total {
            return Err(ToolError::Failed(format!(
                "\"{}\" has {total} lines; start_line {start} is past the end.",
                at.shown
            )));
        }
        if end < start {
            return Err(ToolError::Failed(format!("end_line {end} is before start_line {start}.")));
        }
        let (mut out, mut last) = (String::new(), start - 1);
        for line in &lines[start - 1..end] {
            if out.len() + line.len() > READ_MAX_BYTES {
                break;
            }
            out.push_str(line);
            last += 1;
        }
        if last < start {
            // One line longer than the whole budget: show its beginning.
            let line = lines[start - 1];
            let cut = floor_char_boundary(line, READ_MAX_BYTES);
            let next = if start < total {
                format!("; the next line is start_line={}", start + 1)
            } else {
                String::new()
            };
            return Ok(format!(
                "{}\n[line {start} is {} bytes long, this is its first {cut}; see the rest with \
                 run, e.g. `sed -n {start}p {} | cut -b {}-`{next}]",
                &line[..cut],
                line.len(),
                at.shown,
                cut + 1
            ));
        }
        if !out.ends_with('\n') {
            out.push('\n');
        }
        if last < end {
            let left: usize = lines[last..end].iter().map(|l| l.len()).sum();
            out.push_str(&format!(
                "[cut at {READ_MAX_BYTES} bytes: showed lines {start}-{last} of {total}, {left} \
                 bytes left out; read on with start_line={}]",
                last + 1
            ));
        } else if start > 1 || end < total {
            out.push_str(&format!("[lines {start}-{end} of {total}]"));
        }
        Ok(out)
    }

    /// `file:line: text` for every line under `path` that contains `query`, in path order.
    pub fn search(&self, query: &str, path: Option<&str>) -> Result<String, ToolError> {
        if query.is_empty() {
            return Err(ToolError::Failed("search needs a non-empty query.".into()));
        }
        if query.contains('\n') {
            return Err(ToolError::Failed(
                "query must be one line: search matches within single lines.".into(),
            ));
        }
        let at = self.resolve(path.unwrap_or("."))?;
        let meta = fs::metadata(&at.real).map_err(|e| io_failed(&at.shown, &e))?;
        let mut found = Search { query, matches: Vec::new(), full: false, too_big: 0 };
        if meta.is_dir() {
            let prefix = if at.parts.is_empty() { String::new() } else { format!("{}/", at.shown) };
            found.dir(&at.real, &prefix);
        } else {
            found.file(&at.real, &at.shown);
        }
        let mut out = if found.matches.is_empty() {
            format!("No matches for {query:?} in \"{}\".", at.shown)
        } else {
            found.matches.join("\n")
        };
        if found.full {
            out.push_str(&format!(
                "\n[stopped at {SEARCH_MAX_MATCHES} matches: narrow the query or the path]"
            ));
        }
        if found.too_big > 0 {
            out.push_str(&format!(
                "\n[{} files over {SEARCH_MAX_FILE_BYTES} bytes were not searched]",
                found.too_big
            ));
        }
        Ok(out)
    }

    /// Creates or replaces a file, creating missing parent directories.
    pub fn write_file(&self, path: &str, content: &str) -> Result<String, ToolError> {
        let at = self.resolve(path)?;
        let existed = match fs::metadata(&at.real) {
            Ok(meta) if meta.is_dir() => return Err(is_dir(&at.shown)),
            // Opening a FIFO or a device for writing could block or do worse.
            Ok(meta) if !meta.is_file() => return Err(not_regular(&at.shown)),
            Ok(_) => true,
            Err(_) => false,
        };
        if let Some(parent) = at.real.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                ToolError::Failed(format!("\"{}\": cannot create its directory: {e}", at.shown))
            })?;
        }
        fs::write(&at.real, content).map_err(|e| io_failed(&at.shown, &e))?;
        if !existed {
            self.give(&at.real).map_err(|e| io_failed(&at.shown, &e))?;
        }
        Ok(format!(
            "{} \"{}\" ({} bytes, {} lines).",
            if existed { "Replaced" } else { "Created" },
            at.shown,
            content.len(),
            content.lines().count()
        ))
    }

    /// Deletes one file; a symlink (inside the worktree) is removed itself, not its target.
    pub fn delete_file(&self, path: &str) -> Result<String, ToolError> {
        let at = self.resolve(path)?;
        let Some((name, parent)) = at.parts.split_last() else {
            return Err(is_dir(&at.shown));
        };
        let parent = self.follow(parent, &at.shown)?;
        let entry = parent.join(name);
        let meta = fs::symlink_metadata(&entry).map_err(|e| io_failed(&at.shown, &e))?;
        if meta.is_dir() {
            return Err(is_dir(&at.shown));
        }
        fs::remove_file(&entry).map_err(|e| io_failed(&at.shown, &e))?;
        Ok(format!("Deleted \"{}\".", at.shown))
    }
}

fn not_regular(shown: &str) -> ToolError {
    ToolError::Failed(format!("\"{shown}\" is not a regular file (a pipe, socket or device)."))
}

pub(super) fn is_dir(shown: &str) -> ToolError {
    ToolError::Failed(format!("\"{shown}\" is a directory; this action works on one file."))
}

/// The bytes of a text file: refused when it is a directory, too large, or binary.
pub(super) fn load_text(at: &Resolved) -> Result<Vec<u8>, ToolError> {
    let meta = fs::metadata(&at.real).map_err(|e| io_failed(&at.shown, &e))?;
    if meta.is_dir() {
        return Err(ToolError::Failed(format!(
            "\"{}\" is a directory; see it with list_files.",
            at.shown
        )));
    }
    if !meta.is_file() {
        return Err(not_regular(&at.shown));
    }
    if meta.len() > FILE_MAX_BYTES {
        return Err(ToolError::Failed(format!(
            "\"{}\" is {} bytes, too large to load; look at parts of it with run, e.g. \
             `sed -n 1,200p {}` or `grep -n`.",
            at.shown,
            meta.len(),
            at.shown
        )));
    }
    let bytes = fs::read(&at.real).map_err(|e| io_failed(&at.shown, &e))?;
    if is_binary(&bytes) {
        return Err(ToolError::Failed(format!(
            "\"{}\" is a binary file ({} bytes); only text files can be read or edited.",
            at.shown,
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0)
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

enum Kind {
    Dir,
    File,
    Symlink(String),
}

/// A directory's entries by name, without `.git`; symlinks are shown, never followed.
fn sorted_children(dir: &Path) -> Vec<(String, Kind)> {
    let Ok(read) = fs::read_dir(dir) else { return Vec::new() };
    let mut children: Vec<(String, Kind)> = read
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if touches_git(std::iter::once(name.as_str())) {
                return None;
            }
            let kind = match entry.file_type().ok()? {
                t if t.is_dir() => Kind::Dir,
                t if t.is_symlink() => Kind::Symlink(
                    fs::read_link(entry.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_default(),
                ),
                _ => Kind::File,
            };
            Some((name, kind))
        })
        .collect();
    children.sort_by(|a, b| a.0.cmp(&b.0));
    children
}

struct Search<'q> {
    query: &'q str,
    matches: Vec<String>,
    full: bool,
    too_big: usize,
}

impl Search<'_> {
    fn dir(&mut self, dir: &Path, prefix: &str) {
        for (name, kind) in sorted_children(dir) {
            if self.full {
                return;
            }
            match kind {
                Kind::Dir => self.dir(&dir.join(&name), &format!("{prefix}{name}/")),
                Kind::File => self.file(&dir.join(&name), &format!("{prefix}{name}")),
                Kind::Symlink(_) => {}
            }
        }
    }

    fn file(&mut self, path: &Path, shown: &str) {
        match fs::metadata(path) {
            Ok(meta) if !meta.is_file() => return,
            Ok(meta) if meta.len() > SEARCH_MAX_FILE_BYTES => {
                self.too_big += 1;
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(bytes) = fs::read(path) else { return };
        if is_binary(&bytes) {
            return;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if !line.contains(self.query) {
                continue;
            }
            if self.matches.len() == SEARCH_MAX_MATCHES {
                self.full = true;
                return;
            }
            let line = if line.chars().count() > SEARCH_MAX_LINE_CHARS {
                format!("{}…", line.chars().take(SEARCH_MAX_LINE_CHARS).collect::<String>())
            } else {
                line.to_string()
            };
            self.matches.push(format!("{shown}:{}: {line}", i + 1));
        }
    }
}
