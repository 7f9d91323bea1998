//! A run's conversation and how it is kept inside the model's window.
//!
//! When the conversation outgrows the window, the oldest results (and the arguments of old
//! replies) are replaced by stubs naming the actions they answered, with a change's
//! confirmation kept. When the stubs themselves take too much room, the oldest stubbed turns
//! are folded away whole (a reply with every result that answers it, so native calls still
//! match) into a summary of what they did, kept under the task. The newest message is never
//! elided, only cut to half the window. A chat reply keeps its conversation the same way,
//! without the summary: it has no task to keep it under, and a person reads along.

use crate::gateway::{Message, Role};
use crate::workbench::actions::Action;
use crate::workbench::clip::clip;

/// The conversation, each message with what it is remembered by.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    messages: Vec<Message>,
    /// Parallel to `messages`.
    meta: Vec<Meta>,
    /// The first messages, never elided: the system prompt (and a run's task).
    pinned: usize,
    /// A message never elided either: the person's message a chat reply answers.
    protected: Option<usize>,
    /// A run's task as first given; the summary of folded turns is kept under it.
    task: Option<String>,
    /// The actions of the folded turns, oldest first.
    folded: Vec<Answered>,
    /// The first and the last turn folded into the summary (a resumed run's first turn is
    /// not 1).
    folded_turns: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Default)]
struct Meta {
    /// The model's reply this message is (or answers); 0 for the system prompt and the task.
    turn: u32,
    /// The actions whose results this message holds.
    answered: Vec<Answered>,
    elided: bool,
}

/// One action a result message answered, remembered for its stub and the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answered {
    label: String,
    kind: Kind,
    ok: bool,
    /// The first line of a successful change's confirmation.
    kept: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Changed the file at the path (none: a commit).
    Change(Option<String>),
    Run,
    /// Filed a bead or commented: done outside the worktree, so said with its result (the
    /// new bead's id), lest it be done twice.
    Tracker,
    /// `update_plan`: the plan itself stays in view.
    Plan,
    Look,
}

impl Answered {
    /// `action` was performed; `ok` says whether it succeeded and `text` is what the model
    /// was told.
    pub(crate) fn new(action: &Action, ok: bool, text: &str) -> Answered {
        let kind = match action {
            Action::WriteFile { path, .. }
            | Action::EditFile { path, .. }
            | Action::MultiEdit { path, .. }
            | Action::InsertLines { path, .. }
            | Action::DeleteFile { path } => Kind::Change(Some(path.clone())),
            Action::Commit { .. } => Kind::Change(None),
            Action::Run { .. } => Kind::Run,
            Action::CreateBead { .. } | Action::Comment { .. } => Kind::Tracker,
            Action::UpdatePlan { .. } => Kind::Plan,
            _ => Kind::Look,
        };
        let kept = (ok && (action.changes_files() || kind == Kind::Tracker))
            .then(|| text.lines().next().unwrap_or_default().to_owned());
        Answered { label: action.label(), kind, ok, kept }
    }

    /// How a stub names it.
    fn stub(&self) -> String {
        match (&self.kept, self.ok) {
            (Some(kept), _) => format!("{}: {kept}", self.label),
            (None, true) => self.label.clone(),
            (None, false) => format!("{} (failed)", self.label),
        }
    }
}

/// Stubs behind the newest results may take this share of the window before the oldest
/// turns are folded into the summary…
const STUBS_SHARE: usize = 8;
/// …and folding goes on until they take at most this share: turns are folded in batches, so
/// the start of the conversation (a gateway's prompt cache) changes now and then, not at
/// every turn.
const STUBS_SHARE_AFTER: usize = 16;
/// The summary is cut to this share of the window (or this many characters in a tiny one).
const SUMMARY_SHARE: usize = 8;
const SUMMARY_MIN_CHARS: usize = 1_000;
/// The latest commands and looks the summary lists.
const SUMMARY_RUNS: usize = 12;
const SUMMARY_LOOKS: usize = 20;

impl History {
    /// A run's conversation: the system prompt and the task.
    pub(crate) fn start(system: String, task: String) -> History {
        History {
            messages: vec![Message::system(system), Message::user(task.clone())],
            meta: vec![Meta::default(), Meta::default()],
            pinned: 2,
            task: Some(task),
            ..History::default()
        }
    }

    /// A chat's conversation: the system prompt, then what was said before (each message its
    /// own turn, so the oldest go first), the last being the person's message the reply
    /// answers, which is kept whole.
    pub(crate) fn chat(messages: Vec<Message>) -> History {
        let meta = (0..messages.len()).map(|i| Meta { turn: i as u32, ..Meta::default() });
        let protected = messages.len().checked_sub(1).filter(|&last| last >= 1);
        History { meta: meta.collect(), messages, pinned: 1, protected, ..History::default() }
    }

    pub(crate) fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The turn the newest message belongs to.
    pub(crate) fn last_turn(&self) -> u32 {
        self.meta.last().map_or(0, |m| m.turn)
    }

    /// Adds a message of reply `turn`, holding the results of `answered`.
    pub(crate) fn push(&mut self, message: Message, turn: u32, answered: Vec<Answered>) {
        self.messages.push(message);
        self.meta.push(Meta { turn, answered, elided: false });
    }

    /// The newest message, unless it is the model's.
    pub(crate) fn last_result_mut(&mut self) -> Option<&mut String> {
        self.messages.last_mut().filter(|m| m.role != Role::Assistant)?.content.as_mut()
    }

    /// Characters the conversation puts into the context.
    pub(super) fn size(&self) -> usize {
        self.messages.iter().map(message_size).sum()
    }

    /// Brings the conversation under `max` characters (see the module's description).
    pub(crate) fn fit(&mut self, max: usize) {
        self.elide_oldest(max);
        if self.task.is_some() {
            self.fold_stubbed_turns(max);
        }
        let half = max / 2;
        let last = self.messages.len().saturating_sub(1);
        if let Some(newest) = self.messages.get_mut(last).filter(|_| last >= self.pinned)
            && let Some(text) = newest.content.as_mut().filter(|t| t.chars().count() > half)
        {
            *text = clip(text, half);
        }
    }

    /// Replaces the oldest messages (after the pinned ones, before the newest) by stubs
    /// until the conversation fits.
    fn elide_oldest(&mut self, max: usize) {
        let mut total = self.size();
        let last = self.messages.len().saturating_sub(1);
        for i in self.pinned..last {
            if total <= max {
                break;
            }
            let m = &mut self.messages[i];
            let before = message_size(m);
            if before < 200 || self.meta[i].elided || self.protected == Some(i) {
                continue;
            }
            elide(m, &self.meta[i].answered);
            self.meta[i].elided = true;
            total = total - before + message_size(m);
        }
    }

    /// Folds the oldest turns into the summary while the stubs take more than their share of
    /// the window (or the conversation still does not fit). Only whole turns that lie behind
    /// the newest elided message are folded, never the newest turn.
    fn fold_stubbed_turns(&mut self, max: usize) {
        let Some(frontier) = self.meta.iter().rposition(|m| m.elided) else { return };
        let newest_turn = self.meta.last().map_or(0, |m| m.turn);
        let stubs: usize = self.messages[2..=frontier].iter().map(message_size).sum();
        let size = self.size();
        if stubs <= max / STUBS_SHARE && size <= max {
            return;
        }
        let mut end = 2;
        let mut folded_size = 0;
        while end <= frontier {
            let turn = self.meta[end].turn;
            let turn_end = (end..self.meta.len()).find(|&i| self.meta[i].turn != turn);
            let Some(turn_end) = turn_end.filter(|&e| e <= frontier + 1) else { break };
            if turn == newest_turn {
                break;
            }
            folded_size += self.messages[end..turn_end].iter().map(message_size).sum::<usize>();
            end = turn_end;
            let left = stubs - folded_size;
            if left <= max / STUBS_SHARE_AFTER && size - folded_size <= max {
                break;
            }
        }
        if end == 2 {
            return;
        }
        for meta in self.meta.drain(2..end) {
            let (first, _) = self.folded_turns.unwrap_or((meta.turn, meta.turn));
            self.folded_turns = Some((first, meta.turn));
            self.folded.extend(meta.answered);
        }
        self.messages.drain(2..end);
        let summary = clip(&self.summary(), (max / SUMMARY_SHARE).max(SUMMARY_MIN_CHARS));
        let task = self.task.as_deref().unwrap_or_default();
        self.messages[1].content = Some(format!("{task}\n\n{summary}"));
    }

    /// What the folded turns did, as the model reads it under the task.
    fn summary(&self) -> String {
        let mut changed: Vec<(String, Vec<&Answered>)> = Vec::new();
        let mut commits = Vec::new();
        let mut runs = Vec::new();
        let mut tracked = Vec::new();
        let mut looks: Vec<String> = Vec::new();
        let mut failed = Vec::new();
        for a in &self.folded {
            match &a.kind {
                Kind::Change(Some(path)) if a.ok => {
                    match changed.iter_mut().find(|(p, _)| p == path) {
                        Some((_, all)) => all.push(a),
                        None => changed.push((path.clone(), vec![a])),
                    }
                }
                Kind::Change(None) if a.ok => commits.push(a.stub()),
                Kind::Run => runs.push(a.stub()),
                Kind::Tracker if a.ok => tracked.push(a.stub()),
                Kind::Plan if a.ok => {}
                Kind::Look if a.ok => {
                    looks.retain(|l| *l != a.label);
                    looks.push(a.label.clone());
                }
                _ => failed.push(a.stub()),
            }
        }
        let turns = match self.folded_turns.unwrap_or_default() {
            (first, last) if first == last => format!("Turn {first} was"),
            (first, last) => format!("Turns {first}–{last} were"),
        };
        let mut s = format!(
            "## Earlier in this run\n\n{turns} compacted to save space; repeat an action if \
             you need its result again. What they did:"
        );
        if !changed.is_empty() {
            s.push_str("\n- Changed:");
            for (path, all) in &changed {
                let last = all.last().and_then(|a| a.kept.as_deref()).unwrap_or_default();
                let times = match all.len() {
                    1 => String::new(),
                    n => format!(", {n} changes"),
                };
                s.push_str(&format!("\n  - {path}{times}; last: {last}"));
            }
        }
        list(&mut s, "Committed", &commits, usize::MAX);
        list(&mut s, "Filed or commented", &tracked, usize::MAX);
        list(&mut s, "Ran (latest last)", &runs, SUMMARY_RUNS);
        list(&mut s, "Looked at (latest last)", &looks, SUMMARY_LOOKS);
        list(&mut s, "Failed", &failed, SUMMARY_RUNS);
        let all = [
            commits.is_empty(),
            tracked.is_empty(),
            runs.is_empty(),
            looks.is_empty(),
            failed.is_empty(),
        ];
        if changed.is_empty() && all.iter().all(|e| *e) {
            s.push_str(" nothing that changed or showed anything.");
        }
        s
    }
}

/// Appends `title` and the last `most` items, a line each (repeats in a row counted on one),
/// saying how many were left out.
fn list(s: &mut String, title: &str, items: &[String], most: usize) {
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for item in items {
        match runs.last_mut() {
            Some((last, n)) if last == item => *n += 1,
            _ => runs.push((item, 1)),
        }
    }
    if runs.is_empty() {
        return;
    }
    s.push_str(&format!("\n- {title}:"));
    let skip = runs.len().saturating_sub(most);
    if skip > 0 {
        let earlier: usize = runs[..skip].iter().map(|(_, n)| n).sum();
        s.push_str(&format!("\n  - ({earlier} earlier left out)"));
    }
    for (item, n) in &runs[skip..] {
        match n {
            1 => s.push_str(&format!("\n  - {item}")),
            n => s.push_str(&format!("\n  - {item} (×{n})")),
        }
    }
}

/// Characters a message puts into the context: its text and its calls' arguments.
pub(crate) fn message_size(m: &Message) -> usize {
    let args: usize = m.tool_calls.iter().map(|c| c.function.arguments.len()).sum();
    m.content.as_ref().map_or(0, String::len) + args
}

/// Replaces an old message's bulk with a note. A reply keeps its shape (what it called, and
/// a short stand-in for the arguments, still valid JSON), so the calls it made still match
/// the results that answer them.
fn elide(m: &mut Message, answered: &[Answered]) {
    match m.role {
        Role::Assistant => {
            if let Some(text) = m.content.as_mut().filter(|t| t.len() >= 200) {
                *text = format!(
                    "[an earlier reply of {} characters, elided to save space]",
                    text.len()
                );
            }
            for c in &mut m.tool_calls {
                if c.function.arguments.len() >= 200 {
                    let n = c.function.arguments.len();
                    c.function.arguments =
                        format!("{{\"elided\": \"{n} characters of arguments\"}}");
                }
            }
        }
        _ => {
            let before = m.content.as_ref().map_or(0, String::len);
            let what: Vec<String> = answered.iter().map(Answered::stub).collect();
            m.content = Some(match what.is_empty() {
                true => {
                    format!("[an earlier message of {before} characters, elided to save space]")
                }
                false => format!(
                    "[elided to save space, {before} characters; repeat an action if you need \
                     its result again: {}]",
                    what.join("; ")
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_is_kept_inside_the_window_oldest_first_without_a_summary() {
        let said = vec![
            Message::system("You pair with Pat."),
            Message::user("a".repeat(5_000)),
            Message::assistant("b".repeat(5_000)),
            Message::user(format!("Now read the big file. {}", "q".repeat(300))),
        ];
        let mut h = History::chat(said);
        let turn = h.last_turn() + 1;
        let read = Action::ReadFile { path: "big.txt".into(), start_line: None, end_line: None };
        h.push(Message::assistant("Reading."), turn, Vec::new());
        let page = format!("big.txt L1-200 of 900\n{}", "c".repeat(8_000));
        h.push(Message::user(page.clone()), turn, vec![Answered::new(&read, true, &page)]);
        h.fit(12_000);

        assert!(h.size() <= 12_000, "{}", h.size());
        let texts: Vec<&str> =
            h.messages().iter().map(|m| m.content.as_deref().unwrap_or_default()).collect();
        assert_eq!(texts[0], "You pair with Pat.", "the system prompt stays");
        assert_eq!(texts[1], "[an earlier message of 5000 characters, elided to save space]");
        assert!(texts[3].starts_with("Now read the big file. qqq"), "the question stays whole");
        assert!(texts[5].starts_with("big.txt L1-200 of 900\n"), "the newest stays: {}", texts[5]);
        assert!(texts[5].contains("left out here"), "cut to half the window");
        assert!(!texts.iter().any(|t| t.contains("Earlier in this run")), "nothing folded");
        assert_eq!(h.messages().len(), 6);
    }
}
