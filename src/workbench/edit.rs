//! edit_file: replacing one exact occurrence, and saying usefully why not when there are none
//! or several.

use super::{ToolError, Workspace};

/// The quoted closest line is cut to this many characters.
const QUOTE_MAX_CHARS: usize = 200;

impl Workspace {
    /// Replaces the single occurrence of `old`. Files with CRLF line endings match an `old`
    /// written with plain newlines.
    pub fn edit_file(&self, path: &str, old: &str, new: &str) -> Result<String, ToolError> {
        if old.is_empty() {
            return Err(ToolError::Failed(
                "old is empty: give the exact text to replace (write_file replaces a whole file)."
                    .into(),
            ));
        }
        if old == new {
            return Err(ToolError::Failed(
                "old and new are the same; nothing would change.".into(),
            ));
        }
        let at = self.resolve(path)?;
        let text = String::from_utf8(self.load_text(&at)?).map_err(|_| {
            ToolError::Failed(format!(
                "\"{}\" is not UTF-8 text, so edit_file cannot change it safely.",
                at.shown
            ))
        })?;
        let crlf = |s: &str| s.replace("\r\n", "\n").replace('\n', "\r\n");
        let (old, new) = if !text.contains(old) && text.contains("\r\n") {
            (crlf(old), crlf(new))
        } else {
            (old.to_string(), new.to_string())
        };
        let starts: Vec<usize> = text.match_indices(&old).map(|(i, _)| i).collect();
        let line_of = |i: usize| text[..i].matches('\n').count() + 1;
        match starts[..] {
            [] => Err(ToolError::Failed(not_found(&at.shown, &text, &old))),
            [i] => {
                let edited = format!("{}{new}{}", &text[..i], &text[i + old.len()..]);
                let fs = self.beneath()?;
                fs.replace(self.rel(&at), edited.as_bytes(), self.owner)
                    .map_err(|e| self.used(&at.shown, &e))?;
                Ok(format!("Edited \"{}\" at line {}.", at.shown, line_of(i)))
            }
            _ => {
                let lines: Vec<String> =
                    starts.iter().take(10).map(|&i| line_of(i).to_string()).collect();
                Err(ToolError::Failed(format!(
                    "old occurs {} times in \"{}\" (at lines {}); include more of the \
                     surrounding text so that it matches exactly once.",
                    starts.len(),
                    at.shown,
                    lines.join(", ")
                )))
            }
        }
    }
}

/// No occurrence: say so, and quote the line most like the first line of `old`, which is
/// usually the one the model misremembered.
fn not_found(shown: &str, text: &str, old: &str) -> String {
    let closest = match closest_line(text, old) {
        Some((number, line)) => {
            let line: String = line.chars().take(QUOTE_MAX_CHARS).collect();
            format!(" The closest line is {number}:\n{line}\n")
        }
        None => " ".to_string(),
    };
    format!(
        "old was not found in \"{shown}\".{closest}Copy old exactly from the file, whitespace \
         included; read_file shows the current text."
    )
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
