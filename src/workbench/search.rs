//! `search` and `find_files`: the worktree walked as git sees it. Every directory's
//! `.gitignore` is honoured (read through `beneath`, like every file an action touches), so
//! `node_modules/`, `target/` or `.venv` do not drown the project's own files; a path given
//! explicitly is searched even when it is ignored. Matches are lines with a literal text or a
//! regex, narrowed by a path glob; when they are too many to list, the count per file says where
//! to look.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use regex::Regex;

use super::beneath::{self, Beneath, Entry};
use super::files::{is_binary, sorted_children};
use super::{ToolError, Workspace};

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]
mod tests;

/// Matching lines listed at most; past it, the count per file is shown instead.
pub(super) const SEARCH_MAX_MATCHES: usize = 100;
/// Files listed at most (find_files, and the counts per file).
pub(super) const FILES_MAX: usize = 200;
/// Files looked at, at most, in one walk: a bound on the time one action takes.
const WALK_MAX_FILES: usize = 50_000;
const SEARCH_MAX_FILE_BYTES: u64 = 1024 * 1024;
const SEARCH_MAX_LINE_CHARS: usize = 200;
const GITIGNORE_MAX_BYTES: u64 = 256 * 1024;
/// The ignored directories named in a note, at most.
const SKIPPED_NAMED: usize = 5;

/// What `search` looks for and where.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchQuery<'a> {
    pub query: &'a str,
    pub path: Option<&'a str>,
    /// `query` is a regular expression (Rust's `regex` syntax) rather than literal text.
    pub regex: bool,
    /// Only files whose path (relative to the worktree) matches; without a `/` the glob is
    /// matched against file names.
    pub glob: Option<&'a str>,
    /// List the matching files with their counts instead of the lines.
    pub files_only: bool,
}

enum Needle {
    Text(String),
    Regex(Regex),
}

impl Needle {
    fn is_in(&self, line: &str) -> bool {
        match self {
            Needle::Text(text) => line.contains(text.as_str()),
            Needle::Regex(re) => re.is_match(line),
        }
    }
}

impl Workspace {
    /// `file:line: text` for the lines under `path` that match, in path order; the counts per
    /// file when the matches are many or `files_only` asks for them.
    pub fn search(&self, q: SearchQuery<'_>) -> Result<String, ToolError> {
        if q.query.is_empty() {
            return Err(ToolError::Failed("search needs a non-empty query.".into()));
        }
        if q.query.contains('\n') {
            return Err(ToolError::Failed(
                "query must be one line: search matches within single lines.".into(),
            ));
        }
        let needle = if q.regex {
            let re = regex::RegexBuilder::new(q.query)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ToolError::Failed(format!("query is not a valid regex: {e}")))?;
            Needle::Regex(re)
        } else {
            Needle::Text(q.query.to_owned())
        };
        let glob = q.glob.map(path_glob).transpose()?;
        let (fs, start, shown) = self.walk_root(q.path)?;
        let mut walk = Walk::new(&fs, &shown);
        let mut found = Found::default();
        walk.files(&start, &shown, &mut |fs, rel, shown| {
            if glob.as_ref().is_some_and(|g| !g.is_match(shown)) {
                return;
            }
            found.file(fs, rel, shown, &needle);
        });
        Ok(found.report(q, &shown, &walk))
    }

    /// The files under `path` whose name (or, when `pattern` holds a `/`, whose path) matches
    /// the glob `pattern`; a pattern without wildcards matches names containing it, ignoring case.
    pub fn find_files(&self, pattern: &str, path: Option<&str>) -> Result<String, ToolError> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(ToolError::Failed("find_files needs a non-empty pattern.".into()));
        }
        let wild = pattern.contains(['*', '?', '[', '{']);
        let glob = if wild { Some(path_glob(pattern)?) } else { None };
        let lowered = pattern.to_lowercase();
        let (fs, start, shown) = self.walk_root(path)?;
        let mut walk = Walk::new(&fs, &shown);
        let (mut files, mut total) = (Vec::new(), 0usize);
        walk.files(&start, &shown, &mut |_, _, shown| {
            let name = shown.rsplit('/').next().unwrap_or(shown);
            let hit = match &glob {
                Some(g) => g.is_match(shown),
                None => name.to_lowercase().contains(&lowered),
            };
            if hit {
                total += 1;
                if files.len() < FILES_MAX {
                    files.push(shown.to_owned());
                }
            }
        });
        let mut out = if files.is_empty() {
            format!("No files matching {pattern:?} in \"{}\".", shown_or_root(&shown))
        } else {
            files.join("\n")
        };
        if total > files.len() {
            out.push_str(&format!(
                "\n[{total} files match; the first {} are shown: narrow the pattern or the path]",
                files.len()
            ));
        }
        walk.notes(&mut out, files.is_empty());
        Ok(out)
    }

    /// Where a walk starts: the worktree, the checked relative path and its shown form ("" for
    /// the root).
    fn walk_root(&self, path: Option<&str>) -> Result<(Beneath, PathBuf, String), ToolError> {
        let at = self.resolve(path.unwrap_or("."))?;
        let fs = self.beneath()?;
        fs.stat(self.rel(&at)).map_err(|e| self.used(&at.shown, &e))?;
        let shown = if at.parts.is_empty() { String::new() } else { at.shown.clone() };
        Ok((fs, self.rel(&at).to_path_buf(), shown))
    }
}

/// A glob over paths relative to the worktree; one without `/` matches at any depth.
fn path_glob(pattern: &str) -> Result<GlobMatcher, ToolError> {
    let full = if pattern.contains('/') { pattern.to_owned() } else { format!("**/{pattern}") };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| ToolError::Failed(format!("{pattern:?} is not a valid glob: {e}")))
}

fn shown_or_root(shown: &str) -> &str {
    if shown.is_empty() { "." } else { shown }
}

/// A walk over the regular files under one directory, in path order, skipping `.git`, what
/// the `.gitignore` files on the way exclude, and symlinks (never followed).
struct Walk<'f> {
    fs: &'f Beneath,
    /// `.gitignore` matchers from the root down to the directory being walked, each with the
    /// shown prefix (`src/`) of the directory it was read from.
    layers: Vec<(String, Gitignore)>,
    /// Ignored paths that were not entered, in walk order.
    skipped: Vec<String>,
    seen: usize,
    stopped: bool,
}

impl<'f> Walk<'f> {
    /// Loads the `.gitignore` of every directory above `start` (the root's included), so a
    /// rule of the root's applies inside a subdirectory searched on its own.
    fn new(fs: &'f Beneath, shown: &str) -> Walk<'f> {
        let mut walk =
            Walk { fs, layers: Vec::new(), skipped: Vec::new(), seen: 0, stopped: false };
        let (mut dir, mut prefix) = (PathBuf::new(), String::new());
        walk.enter(&dir, &prefix);
        let parts: Vec<&str> = shown.split('/').filter(|p| !p.is_empty()).collect();
        if let Some((_, above)) = parts.split_last() {
            for part in above {
                dir.push(part);
                prefix.push_str(part);
                prefix.push('/');
                walk.enter(&dir, &prefix);
            }
        }
        walk
    }

    /// Pushes the matcher of `dir`'s `.gitignore`, if it has one; whether one was pushed.
    fn enter(&mut self, dir: &Path, prefix: &str) -> bool {
        let Ok((mut file, meta)) = self.fs.read(&dir.join(".gitignore")) else { return false };
        if !beneath::is_file(&meta) {
            return false;
        }
        let Ok(bytes) = beneath::read_up_to(&mut file, GITIGNORE_MAX_BYTES) else { return false };
        let mut builder = GitignoreBuilder::new(".");
        for line in String::from_utf8_lossy(&bytes).lines() {
            // A malformed line is skipped, as git skips it.
            let _ = builder.add_line(None, line);
        }
        match builder.build() {
            Ok(gi) if !gi.is_empty() => {
                self.layers.push((prefix.to_owned(), gi));
                true
            }
            _ => false,
        }
    }

    /// Whether the innermost rule about `shown` excludes it.
    fn ignored(&self, shown: &str, is_dir: bool) -> bool {
        for (prefix, gi) in self.layers.iter().rev() {
            let Some(rel) = shown.strip_prefix(prefix.as_str()) else { continue };
            match gi.matched(rel, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }

    /// Calls `visit(fs, relative path, shown path)` for every file under `dir` (or for `dir`
    /// itself when it is a file).
    fn files(&mut self, dir: &Path, shown: &str, visit: &mut dyn FnMut(&Beneath, &Path, &str)) {
        match self.fs.stat(dir) {
            Ok(meta) if beneath::is_dir(&meta) => {
                let prefix = if shown.is_empty() { String::new() } else { format!("{shown}/") };
                let pushed = !shown.is_empty() && self.enter(dir, &prefix);
                self.dir(dir, &prefix, visit);
                if pushed {
                    self.layers.pop();
                }
            }
            Ok(meta) if beneath::is_file(&meta) => visit(self.fs, dir, shown),
            _ => {}
        }
    }

    fn dir(&mut self, dir: &Path, prefix: &str, visit: &mut dyn FnMut(&Beneath, &Path, &str)) {
        for (name, kind) in sorted_children(self.fs, dir) {
            if self.stopped {
                return;
            }
            let shown = format!("{prefix}{name}");
            match kind {
                Entry::Dir if self.ignored(&shown, true) => self.skipped.push(format!("{shown}/")),
                Entry::Dir => {
                    let (rel, inner) = (dir.join(&name), format!("{shown}/"));
                    let pushed = self.enter(&rel, &inner);
                    self.dir(&rel, &inner, visit);
                    if pushed {
                        self.layers.pop();
                    }
                }
                Entry::File if self.ignored(&shown, false) => self.skipped.push(shown),
                Entry::File => {
                    self.seen += 1;
                    if self.seen > WALK_MAX_FILES {
                        self.stopped = true;
                        return;
                    }
                    visit(self.fs, &dir.join(&name), &shown);
                }
                Entry::Symlink(_) | Entry::Other => {}
            }
        }
    }

    /// The notes a walk's result ends with: what was not looked at, and why (the ignored
    /// paths only when nothing was found, where they may be the answer).
    fn notes(&self, out: &mut String, found_nothing: bool) {
        if self.stopped {
            out.push_str(&format!(
                "\n[stopped after {WALK_MAX_FILES} files: give a narrower path or glob]"
            ));
        }
        if found_nothing && !self.skipped.is_empty() {
            let named: Vec<&str> =
                self.skipped.iter().take(SKIPPED_NAMED).map(String::as_str).collect();
            let more = self.skipped.len() - named.len();
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            out.push_str(&format!(
                "\n[not searched, as .gitignore says: {}{more}; give one as the path to look \
                 inside it]",
                named.join(", ")
            ));
        }
    }
}

/// The matches of one search: the lines (up to the cap) and the count per file.
#[derive(Default)]
struct Found {
    lines: Vec<String>,
    per_file: BTreeMap<String, usize>,
    total: usize,
    too_big: usize,
}

impl Found {
    fn file(&mut self, fs: &Beneath, rel: &Path, shown: &str, needle: &Needle) {
        let Ok((mut file, meta)) = fs.read(rel) else { return };
        if !beneath::is_file(&meta) {
            return;
        }
        if meta.st_size.max(0) as u64 > SEARCH_MAX_FILE_BYTES {
            self.too_big += 1;
            return;
        }
        let Ok(bytes) = beneath::read_up_to(&mut file, SEARCH_MAX_FILE_BYTES) else { return };
        if is_binary(&bytes) {
            return;
        }
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            if !needle.is_in(line) {
                continue;
            }
            self.total += 1;
            *self.per_file.entry(shown.to_owned()).or_default() += 1;
            if self.lines.len() < SEARCH_MAX_MATCHES {
                let line = if line.chars().count() > SEARCH_MAX_LINE_CHARS {
                    format!("{}…", line.chars().take(SEARCH_MAX_LINE_CHARS).collect::<String>())
                } else {
                    line.to_string()
                };
                self.lines.push(format!("{shown}:{}: {line}", i + 1));
            }
        }
    }

    fn report(self, q: SearchQuery<'_>, shown: &str, walk: &Walk<'_>) -> String {
        let files = self.per_file.len();
        let mut out = if self.total == 0 {
            let case = if q.regex { "" } else { " (literal and case-sensitive)" };
            format!("No matches for {:?}{case} in \"{}\".", q.query, shown_or_root(shown))
        } else if q.files_only || self.total > SEARCH_MAX_MATCHES {
            let head = if q.files_only {
                format!("{} matches in {files} files:", self.total)
            } else {
                format!(
                    "{} matches in {files} files, too many to list ({SEARCH_MAX_MATCHES} at \
                     most): the count per file follows. Narrow the query, the path or the glob, \
                     or search one file.",
                    self.total
                )
            };
            let listed: Vec<String> = self
                .per_file
                .iter()
                .take(FILES_MAX)
                .map(|(file, n)| format!("{file}: {n}"))
                .collect();
            let mut out = format!("{head}\n{}", listed.join("\n"));
            if files > FILES_MAX {
                out.push_str(&format!("\n[{} more files not listed]", files - FILES_MAX));
            }
            out
        } else {
            self.lines.join("\n")
        };
        if self.too_big > 0 {
            out.push_str(&format!(
                "\n[{} files over {SEARCH_MAX_FILE_BYTES} bytes were not searched]",
                self.too_big
            ));
        }
        walk.notes(&mut out, self.total == 0);
        out
    }
}
