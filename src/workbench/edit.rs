//! The edits: `edit_file` (one replacement, or every occurrence), `multi_edit` (several, applied
//! together or not at all) and `insert_lines`. Each one answers with the changed lines as they
//! now are, numbered, and says precisely why when `old` misses; none leaves a parseable file
//! with more syntax errors than it had (`syntax`).

use super::actions::Edit;
use super::files::numbered;
use super::{Resolved, ToolError, Workspace, syntax};

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]
mod tests;

/// The quoted lines of a miss are cut to this many characters.
const QUOTE_MAX_CHARS: usize = 200;
/// Lines of context around the changed ones in an edit's answer.
const CONTEXT_LINES: usize = 3;
/// The changed lines shown at most; a longer change shows its head and tail.
const SNIPPET_MAX_LINES: usize = 40;

impl Workspace {
    /// Replaces the single occurrence of `old` with `new`.
    pub fn edit_file(&self, path: &str, old: &str, new: &str) -> Result<String, ToolError> {
        let edit = Edit { old: old.into(), new: new.into(), replace_all: None };
        self.edit(path, std::slice::from_ref(&edit))
    }

    /// Applies `edits` in order, each to the text the ones before it left, and writes the
    /// result only when all of them apply and the syntax guard lets it through. Files with CRLF
    /// line endings match an `old` written with plain newlines.
    pub fn edit(&self, path: &str, edits: &[Edit]) -> Result<String, ToolError> {
        if edits.is_empty() {
            return Err(ToolError::Failed("edits is empty: give at least one {old, new}.".into()));
        }
        let at = self.resolve(path)?;
        let before = self.load_utf8(&at, "edit")?;
        let mut text = before.clone();
        let many = edits.len() > 1;
        let mut replaced = Vec::new();
        for (i, edit) in edits.iter().enumerate() {
            let at_edit =
                if many { format!("edit {} of {}: ", i + 1, edits.len()) } else { "".into() };
            let fail = |m: String| {
                let nothing =
                    if many { " Nothing was changed: the edits apply together." } else { "" };
                ToolError::Failed(format!("{at_edit}{m}{nothing}"))
            };
            let (next, count) = replace(&text, edit, &at.shown).map_err(fail)?;
            text = next;
            replaced.push(count);
        }
        self.save(&at, &before, &text)?;
        let what = match replaced[..] {
            [1] => String::new(),
            [n] => format!(" ({n} occurrences replaced)"),
            _ => format!(" ({} edits)", replaced.len()),
        };
        Ok(format!("Edited \"{}\"{what}. {}", at.shown, changed_lines(&before, &text)))
    }

    /// Puts `text` after line `after_line` (0: at the top; the last line's number: at the end).
    pub fn insert_lines(
        &self,
        path: &str,
        after_line: usize,
        text: &str,
    ) -> Result<String, ToolError> {
        if text.is_empty() {
            return Err(ToolError::Failed("text is empty: there is nothing to insert.".into()));
        }
        let at = self.resolve(path)?;
        let before = self.load_utf8(&at, "insert_lines")?;
        let lines: Vec<&str> = before.split_inclusive('\n').collect();
        if after_line > lines.len() {
            return Err(ToolError::Failed(format!(
                "\"{}\" has {} lines; after_line must be 0 to {}.",
                at.shown,
                lines.len(),
                lines.len()
            )));
        }
        let eol = if before.contains("\r\n") { "\r\n" } else { "\n" };
        let mut inserted = text.replace("\r\n", "\n").replace('\n', eol);
        if !inserted.ends_with(eol) {
            inserted.push_str(eol);
        }
        let mut after = String::with_capacity(before.len() + inserted.len() + 1);
        for line in &lines[..after_line] {
            after.push_str(line);
        }
        if !after.is_empty() && !after.ends_with('\n') {
            after.push_str(eol);
        }
        after.push_str(&inserted);
        for line in &lines[after_line..] {
            after.push_str(line);
        }
        self.save(&at, &before, &after)?;
        Ok(format!("Inserted into \"{}\". {}", at.shown, changed_lines(&before, &after)))
    }

    fn load_utf8(&self, at: &Resolved, action: &str) -> Result<String, ToolError> {
        String::from_utf8(self.load_text(at)?).map_err(|_| {
            ToolError::Failed(format!(
                "\"{}\" is not UTF-8 text, so {action} cannot change it safely.",
                at.shown
            ))
        })
    }

    /// Writes `after` over the file, unless the syntax guard refuses it.
    fn save(&self, at: &Resolved, before: &str, after: &str) -> Result<(), ToolError> {
        if let Some(refusal) = syntax::refusal(&at.shown, before, after) {
            return Err(ToolError::Failed(refusal));
        }
        let fs = self.beneath()?;
        fs.replace(self.rel(at), after.as_bytes(), self.owner)
            .map(|_| ())
            .map_err(|e| self.used(&at.shown, &e))
    }
}

/// `text` with `edit` applied, and how many occurrences it replaced; the message for the
/// model when it cannot be.
fn replace(text: &str, edit: &Edit, shown: &str) -> Result<(String, usize), String> {
    if edit.old.is_empty() {
        return Err(
            "old is empty: give the exact text to replace (insert_lines adds lines; write_file \
             replaces a whole file)."
                .into(),
        );
    }
    if edit.old == edit.new {
        return Err("old and new are the same; nothing would change.".into());
    }
    let crlf = |s: &str| s.replace("\r\n", "\n").replace('\n', "\r\n");
    let (old, new) = if !text.contains(&edit.old) && text.contains("\r\n") {
        (crlf(&edit.old), crlf(&edit.new))
    } else {
        (edit.old.clone(), edit.new.clone())
    };
    let starts: Vec<usize> = text.match_indices(&old).map(|(i, _)| i).collect();
    let line_of = |i: usize| text[..i].matches('\n').count() + 1;
    match (&starts[..], edit.replace_all.unwrap_or(false)) {
        ([], _) => Err(miss(shown, text, &edit.old)),
        ([i], _) => Ok((format!("{}{new}{}", &text[..*i], &text[i + old.len()..]), 1)),
        (_, true) => Ok((text.replace(&old, &new), starts.len())),
        (_, false) => {
            let lines: Vec<String> =
                starts.iter().take(10).map(|&i| line_of(i).to_string()).collect();
            Err(format!(
                "old occurs {} times in \"{shown}\" (at lines {}); include more of the \
                 surrounding text so that it matches exactly once, or set replace_all to \
                 change every one.",
                starts.len(),
                lines.join(", ")
            ))
        }
    }
}

/// The lines that differ between `before` and `after`, as they now are, numbered and with a
/// little context: what the model needs to see that the edit did what it meant.
fn changed_lines(before: &str, after: &str) -> String {
    let (old, new): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (first, last) = (prefix + 1, new.len() - suffix);
    let head = if last == first {
        format!("Line {first} changed; the file has {} lines.", new.len())
    } else if last > first {
        format!("Lines {first}-{last} changed; the file has {} lines.", new.len())
    } else {
        format!("Lines were removed after line {prefix}; the file has {} lines.", new.len())
    };
    if new.is_empty() {
        return format!("{head} It is empty now.");
    }
    let from = first.saturating_sub(CONTEXT_LINES).max(1);
    let to = (last.max(prefix) + CONTEXT_LINES).min(new.len());
    let mut out = format!("{head} Lines {from}-{to} now:\n");
    let shown = to + 1 - from;
    if shown <= SNIPPET_MAX_LINES {
        numbered(&mut out, from, new[from - 1..to].iter().copied());
    } else {
        let (top, bottom) = (SNIPPET_MAX_LINES / 2, SNIPPET_MAX_LINES / 4);
        numbered(&mut out, from, new[from - 1..from - 1 + top].iter().copied());
        out.push_str(&format!("[… {} lines not shown …]\n", shown - top - bottom));
        numbered(&mut out, to + 1 - bottom, new[to - bottom..to].iter().copied());
    }
    out.truncate(out.trim_end().len());
    out
}

/// Why `old` matches nowhere: the place it nearly matches and the first line of it that
/// differs (saying when only whitespace differs), or failing that the line most like its
/// first line.
fn miss(shown: &str, text: &str, old: &str) -> String {
    let advice = "Copy old exactly from the file, whitespace included; read_file shows the \
                  current text with line numbers.";
    let wanted: Vec<&str> = old.lines().collect();
    let have: Vec<&str> = text.lines().collect();
    if let Some(near) = nearest(&have, &wanted) {
        let (file_line, old_line) = (near.start + near.same + 1, near.same + 1);
        let theirs = have.get(near.start + near.same).copied().unwrap_or("(the end of the file)");
        let ours = wanted.get(near.same).copied().unwrap_or_default();
        let whitespace = if near.only_whitespace {
            " Only whitespace differs (indentation, tabs or trailing spaces)."
        } else {
            ""
        };
        let agreed = match near.same {
            0 => String::new(),
            n => format!(
                "Lines 1-{n} of old match lines {}-{} of the file; ",
                near.start + 1,
                near.start + n
            ),
        };
        return format!(
            "old was not found in \"{shown}\". {agreed}line {old_line} of old differs from \
             line {file_line} of the file.{whitespace}\nold has:  {}\nfile has: {}\n{advice}",
            quote(ours),
            quote(theirs),
        );
    }
    let closest = match closest_line(text, old) {
        Some((number, line)) => {
            format!(" The line most like its first line is {number}:\n{}\n", quote(line))
        }
        None => " ".to_string(),
    };
    format!("old was not found in \"{shown}\".{closest}{advice}")
}

fn quote(line: &str) -> String {
    let cut: String = line.chars().take(QUOTE_MAX_CHARS).collect();
    format!("{cut:?}")
}

/// Where `wanted` almost matches `have`.
struct Near {
    /// The file's line (0-based) the match starts at.
    start: usize,
    /// How many leading lines of `wanted` match exactly.
    same: usize,
    /// Whether every line matches once whitespace is ignored.
    only_whitespace: bool,
}

/// The place that matches all of `wanted` but for whitespace, else the one that matches the
/// most leading lines exactly (at least one, and not the whole).
fn nearest(have: &[&str], wanted: &[&str]) -> Option<Near> {
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let wanted_squashed: Vec<String> = wanted.iter().map(|l| squash(l)).collect();
    let mut best: Option<Near> = None;
    for start in 0..have.len() {
        let same = wanted.iter().zip(&have[start..]).take_while(|(w, h)| w == h).count();
        let only_whitespace = have.len() - start >= wanted.len()
            && wanted_squashed.iter().zip(&have[start..]).all(|(w, h)| *w == squash(h));
        if only_whitespace {
            return Some(Near { start, same, only_whitespace });
        }
        if same > 0 && same < wanted.len() && best.as_ref().is_none_or(|b| same > b.same) {
            best = Some(Near { start, same, only_whitespace });
        }
    }
    best
}

/// The line (1-based) most similar to the first non-blank line of `old`, by the Dice
/// coefficient of character bigrams, when it is similar enough to help.
fn closest_line<'t>(text: &'t str, old: &str) -> Option<(usize, &'t str)> {
    let wanted = bigrams(old.lines().map(str::trim).find(|l| !l.is_empty())?);
    if wanted.is_empty() {
        return None;
    }
    let (score, index, line) = text
        .lines()
        .enumerate()
        .map(|(i, line)| (dice(&wanted, &bigrams(line.trim())), i, line))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))?;
    (score >= 0.5).then_some((index + 1, line))
}

fn bigrams(s: &str) -> Vec<(char, char)> {
    let chars: Vec<char> = s.chars().collect();
    let mut pairs: Vec<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
    pairs.sort_unstable();
    pairs
}

/// 2·|a∩b| / (|a|+|b|) over sorted multisets.
fn dice(a: &[(char, char)], b: &[(char, char)]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    2.0 * common as f64 / (a.len() + b.len()) as f64
}
