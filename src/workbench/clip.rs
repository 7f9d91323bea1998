//! The one truncation policy for everything a model reads (DESIGN.md, actions): a text over
//! its budget keeps its head and its tail, cut at line breaks, with a marker saying how much
//! was left out between them; the trailing notes a tool ends its result with (`[exit code
//! 3]`-style lines in brackets: where to read on, why a search stopped) are always kept. The
//! tools size their own output to fit (`RESULT_MAX_CHARS`), so this cut is the exception.
//! (`run` keeps its output's head and tail as it streams, by bytes, with a marker of its own:
//! it cannot hold a command's whole output to cut it afterwards.)

/// The most characters of one result a model is shown, unless configured otherwise
/// (`Limits::max_result_chars`). `read_file` pages and `run` output are sized under it.
pub const RESULT_MAX_CHARS: usize = 12_000;
/// Of what a cut text keeps, the share that goes to its head; the tail, where test summaries
/// and the last compiler error are, gets the rest.
const HEAD_SHARE: f64 = 0.4;
/// Trailing note lines kept at most, and their length at most.
const NOTES_MAX: usize = 4;
const NOTE_MAX_CHARS: usize = 400;

/// An action's result as the model reads it: `error: ` before a failure's text, cut to
/// `max`.
pub fn result(ok: bool, text: &str, max: usize) -> String {
    match ok {
        true => clip(text, max),
        false => clip(&format!("error: {text}"), max),
    }
}

/// One of a reply's results as they go back together (text mode), numbered in the order the
/// reply asked for them: `[2] run → …`.
pub fn numbered(n: usize, action: &str, result: &str) -> String {
    format!("[{n}] {action} → {result}")
}

/// `text`, at most about `max` characters of it: whole when it fits, else head, marker, tail
/// and the trailing notes.
pub fn clip(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_owned();
    }
    let (body, notes) = split_notes(text);
    let notes_len = notes.chars().count();
    let budget = max.saturating_sub(notes_len + 80).max(max / 4);
    let body_chars = body.chars().count();
    let head_budget = (budget as f64 * HEAD_SHARE) as usize;
    let head = head_of(body, head_budget);
    let tail = tail_of(&body[head.len()..], budget - head.chars().count());
    let left = body_chars - head.chars().count() - tail.chars().count();
    let lines = body[head.len()..body.len() - tail.len()].matches('\n').count();
    let mut out = String::with_capacity(max + 100);
    out.push_str(head);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let lines = match lines {
        0 => String::new(),
        n => format!(" ({n} lines)"),
    };
    out.push_str(&format!("[… {left} characters{lines} left out here …]\n"));
    out.push_str(tail);
    if !notes.is_empty() {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(notes);
    }
    out
}

/// The text before its trailing notes, and the notes (the last lines, when each is a short
/// `[...]`).
fn split_notes(text: &str) -> (&str, &str) {
    let trimmed = text.trim_end_matches('\n');
    let mut start = trimmed.len();
    for _ in 0..NOTES_MAX {
        let line_start = trimmed[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = &trimmed[line_start..start];
        let is_note =
            line.starts_with('[') && line.ends_with(']') && line.chars().count() <= NOTE_MAX_CHARS;
        if !is_note || line_start == 0 {
            break;
        }
        start = line_start - 1;
    }
    if start == trimmed.len() {
        return (text, "");
    }
    (&text[..start + 1], &trimmed[start + 1..])
}

/// The longest run of whole lines from the start within `max` characters, or, when the first
/// line alone is longer, its first `max` characters.
fn head_of(text: &str, max: usize) -> &str {
    let cut = char_floor(text, max);
    match text[..cut].rfind('\n') {
        Some(i) => &text[..i + 1],
        None => &text[..cut],
    }
}

/// The longest run of whole lines at the end within `max` characters, or the last `max`
/// characters of the last line.
fn tail_of(text: &str, max: usize) -> &str {
    let total = text.chars().count();
    if total <= max {
        return text;
    }
    let from = text.char_indices().nth(total - max).map_or(text.len(), |(i, _)| i);
    match text[from..].find('\n') {
        Some(i) if from + i + 1 < text.len() => &text[from + i + 1..],
        _ => &text[from..],
    }
}

/// The byte index of the `n`th character (or the end).
fn char_floor(text: &str, n: usize) -> usize {
    text.char_indices().nth(n).map_or(text.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_text_is_kept_whole() {
        assert_eq!(clip("a\nb\n", 10), "a\nb\n");
    }

    #[test]
    fn a_long_command_output_keeps_its_head_its_tail_and_its_notes() {
        let mut text = String::from("[exit code 3]\n");
        for i in 1..=200_000 {
            text.push_str(&format!("{i}\n"));
        }
        text.push_str("END\n[stopped reading: something]");
        let out = clip(&text, 2_000);
        assert!(out.chars().count() <= 2_000, "{}", out.chars().count());
        assert!(out.starts_with("[exit code 3]\n1\n2\n"), "{out}");
        assert!(out.ends_with("199999\n200000\nEND\n[stopped reading: something]"), "{out}");
        let marker = out.lines().find(|l| l.starts_with("[… ")).unwrap_or_default();
        assert!(marker.ends_with("lines) left out here …]"), "{marker}");
        // Every line shown is whole.
        assert!(out.lines().all(|l| l.starts_with('[') || l == "END" || l.parse::<u32>().is_ok()));
    }

    #[test]
    fn one_huge_line_is_cut_inside_it_and_multibyte_text_is_never_split() {
        let text = "é".repeat(10_000);
        let out = clip(&text, 1_000);
        assert!(out.chars().count() <= 1_000 && out.contains("left out here"));
        assert!(out.starts_with("éé") && out.ends_with("éé"));
    }

    #[test]
    fn bracketed_lines_in_the_middle_are_not_taken_for_notes() {
        let text = format!("[a]\n{}\nlast line\n", "x\n".repeat(2_000));
        let out = clip(&text, 500);
        assert!(out.starts_with("[a]\nx\n") && out.ends_with("x\n\nlast line\n"), "{out}");
    }
}
