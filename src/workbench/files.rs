//! The file actions list, read, write and delete (`edit` and `search` have modules of their
//! own). Blocking; `Workspace::perform` runs them on the blocking pool.

use std::path::Path;

use super::beneath::{self, Beneath, Entry};
use super::{Resolved, ToolError, Workspace, touches_git};

pub(super) const LIST_DEFAULT_DEPTH: usize = 2;
const LIST_MAX_DEPTH: usize = 20;
pub(super) const LIST_MAX_ENTRIES: usize = 500;
/// What one read_file page holds at most, numbers included: under `clip::RESULT_MAX_CHARS`
/// with room for its header and note, so that a page is never cut.
pub(super) const READ_PAGE_CHARS: usize = 10_000;
/// What `numbered` puts before each line.
const NUMBER_WIDTH: usize = 7;
/// Larger files are not loaded at all (read_file, edit_file).
const FILE_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// A NUL byte in this many leading bytes marks a file binary.
const BINARY_SNIFF: usize = 8 * 1024;

impl Workspace {
    /// The entries under `path` (default the root), `depth` levels down (default 2), breadth
    /// first so that a cut-off listing still shows the top levels, then sorted.
    pub fn list_files(
        &self,
        path: Option<&str>,
        depth: Option<usize>,
    ) -> Result<String, ToolError> {
        let at = self.resolve(path.unwrap_or("."))?;
        let fs = self.beneath()?;
        let meta = fs.stat(self.rel(&at)).map_err(|e| self.used(&at.shown, &e))?;
        if !beneath::is_dir(&meta) {
            return Err(ToolError::Failed(format!(
                "\"{}\" is a file, not a directory; read it with read_file.",
                at.shown
            )));
        }
        let depth = depth.unwrap_or(LIST_DEFAULT_DEPTH).clamp(1, LIST_MAX_DEPTH);
        let prefix = if at.parts.is_empty() { String::new() } else { format!("{}/", at.shown) };
        let mut entries = Vec::new();
        let mut level = vec![(self.rel(&at).to_path_buf(), prefix)];
        let mut truncated = false;
        'levels: for _ in 0..depth {
            let mut next = Vec::new();
            for (dir, prefix) in level {
                for (name, kind) in sorted_children(&fs, &dir) {
                    if entries.len() == LIST_MAX_ENTRIES {
                        truncated = true;
                        break 'levels;
                    }
                    match kind {
                        Entry::Dir => {
                            entries.push(format!("{prefix}{name}/"));
                            next.push((dir.join(&name), format!("{prefix}{name}/")));
                        }
                        Entry::Symlink(target) => {
                            entries.push(format!("{prefix}{name} -> {target}"))
                        }
                        Entry::File | Entry::Other => entries.push(format!("{prefix}{name}")),
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

    /// A page of a text file: the lines `start_line..=end_line` (default all of it) under a
    /// header `path L a-b of N`, numbered, as many as fit in `READ_PAGE_CHARS`, and a note
    /// with the `start_line` to read on from when lines are left.
    pub fn read_file(
        &self,
        path: &str,
        start_line: Option<usize>,
        end_line: Option<usize>,
    ) -> Result<String, ToolError> {
        let at = self.resolve(path)?;
        let text = String::from_utf8_lossy(&self.load_text(&at)?).into_owned();
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
        let (mut page, mut used, mut last) = (String::new(), 0, start - 1);
        for line in &lines[start - 1..end] {
            let cost = line.chars().count() + NUMBER_WIDTH;
            if used + cost > READ_PAGE_CHARS {
                break;
            }
            numbered(&mut page, last + 1, std::iter::once(*line));
            used += cost;
            last += 1;
        }
        if last < start {
            // One line longer than a whole page: show its beginning.
            let line = lines[start - 1];
            let cut = floor_char_boundary(line, READ_PAGE_CHARS);
            let next = if start < total {
                format!("; the next line is start_line={}", start + 1)
            } else {
                String::new()
            };
            return Ok(format!(
                "{} L{start} of {total}\n{}\n[line {start} is {} bytes long, this is its first \
                 {cut}; see the rest with run, e.g. `sed -n {start}p {} | cut -b {}-`{next}]",
                at.shown,
                &line[..cut],
                line.len(),
                at.shown,
                cut + 1
            ));
        }
        let mut out = format!("{} L{start}-{last} of {total}\n{page}", at.shown);
        if last < total {
            let left = total - last;
            let why = if last < end { "the page is full; " } else { "" };
            out.push_str(&format!(
                "[{why}{left} more lines: read on with start_line={}]",
                last + 1
            ));
        } else {
            out.truncate(out.trim_end_matches('\n').len());
        }
        Ok(out)
    }

    /// Creates or replaces a file, creating missing parent directories.
    pub fn write_file(&self, path: &str, content: &str) -> Result<String, ToolError> {
        let at = self.resolve(path)?;
        let fs = self.beneath()?;
        let rel = self.rel(&at);
        match fs.stat(rel) {
            Ok(meta) if beneath::is_dir(&meta) => return Err(is_dir(&at.shown)),
            // A FIFO or a device is never written to; a symlink here appeared after the
            // check (the path was resolved through it) and is not followed.
            Ok(meta) if !beneath::is_file(&meta) => return Err(not_regular(&at.shown)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.used(&at.shown, &e)),
        }
        if let Some(parent) = rel.parent() {
            fs.make_dirs(parent, self.owner).map_err(|e| match beneath::is_swap(&e) {
                true => self.used(&at.shown, &e),
                false => {
                    ToolError::Failed(format!("\"{}\": cannot create its directory: {e}", at.shown))
                }
            })?;
        }
        let existed = fs
            .replace(rel, content.as_bytes(), self.owner)
            .map_err(|e| self.used(&at.shown, &e))?;
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
        let entry = parent.strip_prefix(&self.root).unwrap_or(Path::new("")).join(name);
        let fs = self.beneath()?;
        let meta = fs.stat(&entry).map_err(|e| self.used(&at.shown, &e))?;
        if beneath::is_dir(&meta) {
            return Err(is_dir(&at.shown));
        }
        fs.remove(&entry).map_err(|e| self.used(&at.shown, &e))?;
        Ok(format!("Deleted \"{}\".", at.shown))
    }
}

fn not_regular(shown: &str) -> ToolError {
    ToolError::Failed(format!("\"{shown}\" is not a regular file (a pipe, socket or device)."))
}

pub(super) fn is_dir(shown: &str) -> ToolError {
    ToolError::Failed(format!("\"{shown}\" is a directory; this action works on one file."))
}

impl Workspace {
    /// The bytes of a text file: refused when it is a directory, too large, or binary.
    pub(super) fn load_text(&self, at: &Resolved) -> Result<Vec<u8>, ToolError> {
        let (mut file, meta) =
            self.beneath()?.read(self.rel(at)).map_err(|e| self.used(&at.shown, &e))?;
        if beneath::is_dir(&meta) {
            return Err(ToolError::Failed(format!(
                "\"{}\" is a directory; see it with list_files.",
                at.shown
            )));
        }
        if !beneath::is_file(&meta) {
            return Err(not_regular(&at.shown));
        }
        let size = meta.st_size.max(0) as u64;
        if size > FILE_MAX_BYTES {
            return Err(ToolError::Failed(format!(
                "\"{}\" is {size} bytes, too large to load; look at parts of it with run, e.g. \
                 `sed -n 1,200p {}` or `grep -n`.",
                at.shown, at.shown
            )));
        }
        let bytes =
            beneath::read_up_to(&mut file, FILE_MAX_BYTES).map_err(|e| self.used(&at.shown, &e))?;
        if is_binary(&bytes) {
            return Err(ToolError::Failed(format!(
                "\"{}\" is a binary file ({} bytes); only text files can be read or edited.",
                at.shown,
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    /// The worktree's root for one operation's file access (see `beneath`).
    pub(super) fn beneath(&self) -> Result<Beneath, ToolError> {
        Beneath::open(&self.root)
            .map_err(|e| ToolError::Failed(format!("the worktree cannot be opened: {e}")))
    }

    /// Where a checked path is, relative to the root.
    pub(super) fn rel<'a>(&self, at: &'a Resolved) -> &'a Path {
        at.real.strip_prefix(&self.root).unwrap_or(Path::new(""))
    }

    /// An I/O error of a checked path as the model reads it: a path that changed into a
    /// symlink (or a way out) while in use is refused like one that was so all along.
    pub(super) fn used(&self, shown: &str, e: &std::io::Error) -> ToolError {
        if beneath::is_swap(e) {
            return ToolError::Refused(format!(
                "\"{shown}\" changed while it was being used (a symlink appeared on the way); \
                 only paths inside the worktree can be used."
            ));
        }
        super::io_failed(shown, e)
    }
}

/// Appends `lines` numbered from `first` as `cat -n` does (the number right-aligned in six
/// columns, then a tab): how every view of a file is shown to the model.
pub(super) fn numbered<'l>(out: &mut String, first: usize, lines: impl Iterator<Item = &'l str>) {
    for (i, line) in lines.enumerate() {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.push_str(&format!("{:>6}\t{line}\n", first + i));
    }
}

pub(super) fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0)
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    (0..=max.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// A directory's entries by name, without `.git`; symlinks are shown, never followed.
pub(super) fn sorted_children(fs: &Beneath, dir: &Path) -> Vec<(String, Entry)> {
    let Ok(mut children) = fs.list(dir) else { return Vec::new() };
    children.retain(|(name, _)| !touches_git(std::iter::once(name.as_str())));
    children.sort_by(|a, b| a.0.cmp(&b.0));
    children
}
