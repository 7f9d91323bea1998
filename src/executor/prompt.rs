//! What the model is told at the start of a run: the system prompt (who it is, the project's
//! own rules, how to reply) and the task (the bead and everything known about it). Pure
//! text assembly from a `Brief` the runner fills from the database and the worktree.

use std::fmt::Write;

/// Everything a run's opening messages are made of.
#[derive(Debug, Clone, Default)]
pub struct Brief {
    pub agent_name: String,
    pub persona_name: String,
    pub persona_role: String,
    pub persona_instructions: String,
    pub project_id: String,
    pub project_name: String,
    pub branch: String,
    /// The worktree's `AGENTS.md`, if it has one.
    pub agents_md: Option<String>,
    pub bead_id: String,
    pub bead_type: String,
    pub priority: i16,
    pub title: String,
    pub description: String,
    pub labels: Vec<String>,
    /// (who, what) in order.
    pub comments: Vec<(String, String)>,
    /// Beads this one was discovered from: (id, title).
    pub discovered_from: Vec<(String, String)>,
    /// This is attempt number `attempt`; earlier ones ended with `last_error`.
    pub attempt: i32,
    pub last_error: Option<String>,
    /// Commits the bead's branch already holds that the project branch does not, newest
    /// first: `(short sha, subject)`, filled in once the worktree is open.
    pub on_branch: Vec<(String, String)>,
    /// The worktree holds uncommitted work from an interrupted run of this bead.
    pub resumed: bool,
    /// The conversation a person had on this bead before handing it back, if any.
    pub pairing: Option<Pairing>,
    /// What the project's `setup_command` did before this run's first turn.
    pub setup: Option<String>,
    /// The last run ended in a merge conflict with the project branch.
    pub merge_conflict: bool,
    /// Loom merged the project branch into the worktree before the run: the paths that
    /// conflict (empty: it merged cleanly).
    pub merged_base: Option<Vec<String>>,
    /// For a reviewer's bead (code or security): the beads it is linked to, whose work it
    /// reviews. None for every other persona.
    pub review: Option<Vec<Reviewed>>,
    /// For a review run: the finished work waiting in review that this run judges.
    pub reviewing: Option<UnderReview>,
}

/// The work a review run judges: what its author said and what its branch changes.
#[derive(Debug, Clone, Default)]
pub struct UnderReview {
    /// The agents whose runs did the work, by name.
    pub authors: Vec<String>,
    /// What the last of them said it did, when it finished.
    pub summary: Option<String>,
    /// The branch's diff against the project branch, as `git diff` prints it, maybe cut.
    pub patch: String,
    /// Files the branch changes.
    pub files: usize,
    /// Lines of the patch left out (0: it is whole).
    pub omitted_lines: usize,
}

/// A bead whose work a reviewer reviews.
#[derive(Debug, Clone, Default)]
pub struct Reviewed {
    pub id: String,
    pub title: String,
    /// The project-branch commits its runs were merged as, newest first.
    pub merged: Vec<String>,
}

/// The personas whose bead is about work already done: their task says where it is.
pub const REVIEWERS: [&str; 2] = ["code-reviewer", "security-reviewer"];

/// A pair-programming conversation on the bead, as the next run should read it.
#[derive(Debug, Clone, Default)]
pub struct Pairing {
    pub title: String,
    /// (who, what), oldest first, each already clipped.
    pub messages: Vec<(String, String)>,
    /// Older messages were left out.
    pub earlier: bool,
}

/// The system message.
pub fn system_prompt(brief: &Brief, vocabulary: &str) -> String {
    let mut s = String::new();
    let (agent, role, persona) = (&brief.agent_name, &brief.persona_role, &brief.persona_name);
    let (project, bead, branch) = (&brief.project_name, &brief.bead_id, &brief.branch);
    let _ = match brief.reviewing {
        None => writeln!(
            s,
            "You are {agent}, a {role} ({persona}) working on the project \"{project}\" as one of \
             a team of AI agents run by Loom. You work alone in a git worktree of the project on \
             branch `loom/{bead}`, cut from `{branch}`; when you call `done`, what you did is \
             committed and goes through review (when the project asks for one) and the \
             project's checks before it is merged into `{branch}` and the bead closes with your \
             summary. Work the way a careful senior engineer would."
        ),
        Some(_) => writeln!(
            s,
            "You are {agent}, a {role} ({persona}) reviewing work on the project \"{project}\" \
             for a team of AI agents run by Loom. Another agent finished the bead below; its \
             work is committed on branch `loom/{bead}`, which your worktree has checked out, and \
             would be merged into `{branch}`. Judge it the way a careful senior engineer reviews \
             a colleague's change: does it do what the bead asks, is it correct, tested and \
             clear? You read; you do not change the work. Finish with `approve` (it goes on to \
             the project's checks and lands) or `request_changes` (it goes back to its author \
             with what you write)."
        ),
    };
    let _ = write!(s, "\n# Your instructions\n\n{}\n", brief.persona_instructions.trim());
    if let Some(md) = brief.agents_md.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        // Cut where it is read (`Workspace::agents_md`), by the one truncation policy.
        let _ = write!(s, "\n# The project's rules (AGENTS.md)\n\n{md}\n");
    }
    let _ = write!(s, "\n# How to act\n\n{}\n", vocabulary.trim());
    s
}

/// The first user message: the bead to work on, or the work to review.
pub fn task(brief: &Brief) -> String {
    let mut s = bead_context(brief);
    match &brief.reviewing {
        None => {
            let _ = writeln!(s, "\nStart by looking at what is there; finish with `done`.");
        }
        Some(work) => {
            under_review(&mut s, work, &brief.branch);
            let _ = writeln!(
                s,
                "\nRead what you need to judge it, then finish with `approve` or \
                 `request_changes`."
            );
        }
    }
    s
}

/// The work a review run judges: who did it, what they said, and its diff.
fn under_review(s: &mut String, work: &UnderReview, branch: &str) {
    let by = match work.authors.is_empty() {
        true => "an agent".to_owned(),
        false => work.authors.join(", "),
    };
    let _ = writeln!(s, "\n## The work under review\n\nDone by {by}.");
    if let Some(summary) = work.summary.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let _ = writeln!(s, "\nWhat it says it did:\n\n{summary}");
    }
    let files = format!("{} file{}", work.files, if work.files == 1 { "" } else { "s" });
    if work.patch.trim().is_empty() {
        let _ = writeln!(s, "\nIts branch changes nothing against `{branch}`.");
        return;
    }
    let _ = writeln!(
        s,
        "\nWhat its branch changes against `{branch}` ({files}):\n\n```diff\n{}\n```",
        work.patch.trim_end()
    );
    if work.omitted_lines > 0 {
        let _ = writeln!(
            s,
            "\nThe diff is cut here: {} more lines are left out. Read the changed files for \
             the rest.",
            work.omitted_lines
        );
    }
}

/// Everything known about the bead: what it asks, where it came from, what people said on
/// it, how earlier attempts ended. A run's task, and a conversation's context.
pub fn bead_context(brief: &Brief) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {} {}: {}", brief.bead_type, brief.bead_id, brief.title);
    let labels = match brief.labels.is_empty() {
        true => String::new(),
        false => format!(", labels: {}", brief.labels.join(", ")),
    };
    let _ = writeln!(s, "\nPriority P{}{labels}.", brief.priority);
    let description = brief.description.trim();
    let _ = writeln!(
        s,
        "\n{}",
        if description.is_empty() {
            "(no description: the title says it all)"
        } else {
            description
        }
    );
    if !brief.discovered_from.is_empty() {
        let _ = writeln!(s, "\n## Discovered while working on");
        for (id, title) in &brief.discovered_from {
            let _ = writeln!(s, "- {id}: {title}");
        }
    }
    if !brief.comments.is_empty() {
        let _ = writeln!(s, "\n## Comments");
        for (who, body) in &brief.comments {
            let _ = writeln!(s, "\n**{who}:** {}", body.trim());
        }
    }
    // Also after a person reopened the bead (attempts start again): a merge conflict, say,
    // is for this run to resolve (Loom merged the project branch into the worktree: below).
    if brief.attempt > 1 || brief.last_error.is_some() {
        let why = brief.last_error.as_deref().unwrap_or("no reason was recorded");
        let _ = writeln!(
            s,
            "\n## Earlier attempts\n\nThis is attempt {}. The last run ended: {why}",
            brief.attempt
        );
    }
    if !brief.on_branch.is_empty() {
        let _ = writeln!(
            s,
            "\n## What this bead's branch already holds\n\nThe worktree is on this bead's \
             branch, which holds {} commit{} not on `{}` yet (earlier work on this bead, kept; \
             `run` `git log -p {}..HEAD` shows them with their changes):",
            brief.on_branch.len(),
            if brief.on_branch.len() == 1 { "" } else { "s" },
            brief.branch,
            brief.branch
        );
        for (sha, subject) in &brief.on_branch {
            let _ = writeln!(s, "- {sha} {subject}");
        }
    }
    if let Some(p) = &brief.pairing {
        pairing(&mut s, p, &brief.bead_id);
    }
    if let Some(reviewed) = &brief.review {
        review(&mut s, reviewed, &brief.branch);
    }
    if let Some(paths) = &brief.merged_base {
        let _ = match paths.is_empty() {
            true => writeln!(
                s,
                "\n## Merge\n\nLoom merged `{}` into this bead's branch in the worktree; it \
                 merged cleanly. Check that the work still holds; your next commit (or done) \
                 makes the merge commit.",
                brief.branch
            ),
            false => writeln!(
                s,
                "\n## Merge conflict\n\nLoom merged `{}` into this bead's branch in the \
                 worktree, and it conflicts in: {}. Those files hold conflict markers \
                 (`<<<<<<<`, `=======`, `>>>>>>>`): resolve them by editing the files, then \
                 commit (or done), which makes the merge commit. Git's metadata is read-only \
                 to your commands: do not run `git merge` or `git commit` yourself.",
                brief.branch,
                paths.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
            ),
        };
    }
    if let Some(setup) = &brief.setup {
        let _ = writeln!(
            s,
            "\n## Setup\n\nThe project's setup command ran in the worktree before you \
             started (with the network open):\n\n```\n{}\n```",
            tail(setup.trim_end(), SETUP_SHOWN_CHARS)
        );
    }
    if brief.resumed {
        let _ = writeln!(
            s,
            "\nA run of this bead was interrupted; its uncommitted changes are still in the \
             worktree. Look at them (git_diff) before you go on."
        );
    }
    s
}

/// The setup command's output shown in the task, at most: its end, where errors are.
const SETUP_SHOWN_CHARS: usize = 4_000;

fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().skip(count - max).collect();
    format!("[… {} earlier characters left out]\n{kept}", count - max)
}

/// Where the work under review is: committed on the project branch, not in the reviewer's
/// worktree. Every commit of a bead carries its `Bead:` trailer, so one `git log` finds them.
fn review(s: &mut String, reviewed: &[Reviewed], branch: &str) {
    let _ = writeln!(
        s,
        "\n## The work to review\n\nThe work under review is already committed on `{branch}`, \
         which your worktree was cut from: `git_diff` (your uncommitted changes) shows none of \
         it. Read it with `run` and the commands below."
    );
    if reviewed.is_empty() {
        let _ = writeln!(
            s,
            "\nThis bead is linked to no other bead: review what its description names. The \
             project branch's recent commits: `git log --stat -20 {branch}`; one of them with \
             its diff: `git show <sha>`."
        );
    }
    for r in reviewed {
        let grep = format!("--grep='^Bead: {}$'", r.id.replace('.', "\\."));
        let _ = match r.merged.first() {
            Some(newest) => writeln!(
                s,
                "\n- {}: {}, merged into `{branch}` as {}. Its commits with their diffs: \
                 `git log -p {grep} {newest}`",
                r.id,
                r.title,
                r.merged.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            ),
            None => writeln!(
                s,
                "\n- {}: {}, no merge of its work is recorded. Its commits on `{branch}`, if \
                 any: `git log -p {grep} {branch}`",
                r.id, r.title,
            ),
        };
    }
}

fn pairing(s: &mut String, p: &Pairing, bead_id: &str) {
    let _ = writeln!(
        s,
        "\n## A person paired on this bead\n\nBefore this run a person worked on this bead \
         with an agent in the conversation below (\"{}\"), in this same worktree, and then \
         handed the bead back to autonomous work. Changes made during it may already be \
         committed on `loom/{bead_id}` or still be uncommitted in the worktree: look at them \
         (git_diff, `git log`) before you change anything, and carry on from where they left \
         off rather than starting over.",
        p.title
    );
    if p.earlier {
        let _ = writeln!(s, "\n(Earlier messages of the conversation are left out.)");
    }
    for (who, body) in &p.messages {
        let _ = writeln!(s, "\n**{who}:** {}", body.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief() -> Brief {
        Brief {
            agent_name: "ada".into(),
            persona_name: "software-engineer".into(),
            persona_role: "engineer".into(),
            persona_instructions: "Write tests first.".into(),
            project_id: "web".into(),
            project_name: "Web".into(),
            branch: "main".into(),
            bead_id: "web-a1".into(),
            bead_type: "bug".into(),
            priority: 1,
            title: "Fix the login".into(),
            description: "It fails on empty passwords.".into(),
            attempt: 1,
            ..Brief::default()
        }
    }

    #[test]
    fn the_system_prompt_carries_persona_project_rules_and_vocabulary() {
        let mut b = brief();
        b.agents_md = Some("Run `make check` before done.".into());
        let s = system_prompt(&b, "Reply with JSON actions.");
        for part in [
            "You are ada",
            "loom/web-a1",
            "Write tests first.",
            "AGENTS.md",
            "make check",
            "Reply with JSON actions.",
        ] {
            assert!(s.contains(part), "{part} missing from:\n{s}");
        }
        assert!(!system_prompt(&brief(), "v").contains("AGENTS.md"));
    }

    #[test]
    fn a_review_is_told_whose_work_it_judges_with_its_diff_and_how_to_finish() {
        let work = UnderReview {
            authors: vec!["bob".into()],
            summary: Some("Added the login form.".into()),
            patch: "diff --git a/a.txt b/a.txt\n+hello\n".into(),
            files: 1,
            omitted_lines: 12,
        };
        let b = Brief { reviewing: Some(work), ..brief() };
        let system = system_prompt(&b, "v");
        assert!(system.contains("reviewing work") && system.contains("`request_changes`"));
        assert!(!system.contains("when you call `done`"), "{system}");
        let t = task(&b);
        for part in [
            "## The work under review",
            "Done by bob.",
            "Added the login form.",
            "(1 file)",
            "```diff\ndiff --git a/a.txt b/a.txt\n+hello\n```",
            "12 more lines are left out",
            "finish with `approve` or `request_changes`",
        ] {
            assert!(t.contains(part), "{part} missing from:\n{t}");
        }
        assert!(!t.contains("finish with `done`"), "{t}");
        let empty = UnderReview::default();
        let t = task(&Brief { reviewing: Some(empty), ..brief() });
        assert!(t.contains("Done by an agent.") && t.contains("changes nothing against"), "{t}");
    }

    #[test]
    fn the_task_carries_the_bead_comments_origin_and_earlier_attempts() {
        let mut b = brief();
        b.labels = vec!["auth".into()];
        b.comments = vec![("sam".into(), "Also on the API.".into())];
        b.discovered_from = vec![("web-9".into(), "Audit auth".into())];
        b.attempt = 2;
        b.last_error = Some("turn_limit: 40 turns".into());
        b.resumed = true;
        let t = task(&b);
        for part in [
            "bug web-a1: Fix the login",
            "P1, labels: auth",
            "empty passwords",
            "web-9: Audit auth",
            "**sam:** Also on the API.",
            "attempt 2",
            "turn_limit",
            "git_diff",
        ] {
            assert!(t.contains(part), "{part} missing from:\n{t}");
        }
        let reopened =
            task(&Brief { last_error: Some("merge conflict in config.toml".into()), ..brief() });
        assert!(reopened.contains("The last run ended: merge conflict in config.toml"));
        let plain = task(&Brief { description: String::new(), ..brief() });
        assert!(plain.contains("no description"));
        assert!(!plain.contains("Earlier attempts") && !plain.contains("Comments"));
        assert!(!plain.contains("paired"));
    }

    #[test]
    fn the_task_carries_the_conversation_a_person_handed_the_bead_back_from() {
        let pairing = Pairing {
            title: "Pair on the login".into(),
            messages: vec![
                ("sam".into(), "Empty passwords crash it.\n".into()),
                ("agent ada".into(), "I added a guard in login.rs.".into()),
            ],
            earlier: true,
        };
        let t = task(&Brief { pairing: Some(pairing), ..brief() });
        for part in [
            "## A person paired on this bead",
            "\"Pair on the login\"",
            "this same worktree",
            "committed on `loom/web-a1`",
            "uncommitted in the worktree",
            "Earlier messages of the conversation are left out",
            "**sam:** Empty passwords crash it.\n\n**agent ada:** I added a guard in login.rs.",
        ] {
            assert!(t.contains(part), "{part} missing from:\n{t}");
        }
        let whole = Pairing { earlier: false, ..Pairing::default() };
        assert!(!task(&Brief { pairing: Some(whole), ..brief() }).contains("left out"));
    }

    #[test]
    fn a_reviewers_task_names_the_commits_under_review_and_how_to_read_them() {
        let merged = Reviewed {
            id: "web-a1.2".into(),
            title: "Fix the login".into(),
            merged: vec!["abc123".into(), "def456".into()],
        };
        let pending = Reviewed { id: "web-b2".into(), title: "Audit".into(), merged: vec![] };
        let t = task(&Brief { review: Some(vec![merged, pending]), ..brief() });
        for part in [
            "## The work to review",
            "already committed on `main`",
            "web-a1.2: Fix the login, merged into `main` as `abc123`, `def456`",
            "`git log -p --grep='^Bead: web-a1\\.2$' abc123`",
            "web-b2: Audit, no merge of its work is recorded",
            "`git log -p --grep='^Bead: web-b2$' main`",
        ] {
            assert!(t.contains(part), "{part} missing from:\n{t}");
        }
        let alone = task(&Brief { review: Some(vec![]), ..brief() });
        assert!(
            alone.contains("linked to no other bead") && alone.contains("git log --stat -20 main")
        );
        assert!(!task(&brief()).contains("The work to review"));
    }

    #[test]
    fn a_retry_is_told_what_its_branch_holds_and_how_the_last_run_ended() {
        let b = Brief {
            attempt: 2,
            last_error: Some("turn_limit: 40 turns".into()),
            on_branch: vec![("abc123def456".into(), "Parse empty passwords".into())],
            ..brief()
        };
        let t = task(&b);
        assert!(t.contains("This is attempt 2. The last run ended: turn_limit: 40 turns"), "{t}");
        assert!(t.contains("## What this bead's branch already holds"), "{t}");
        assert!(t.contains("holds 1 commit not on `main` yet"), "{t}");
        assert!(
            t.contains("`git log -p main..HEAD`")
                && t.contains("- abc123def456 Parse empty passwords")
        );
        assert!(!task(&brief()).contains("already holds"), "nothing said when it holds nothing");
    }
}
