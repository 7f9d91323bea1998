//! The default team, compiled into the binary so that Loom has it wherever it runs from.
//! `LOOM_PERSONAS_DIR` adds personas to it or overrides them by name.

use super::{LoadError, PersonaDef, parse};

macro_rules! team {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../personas/", $name, "/PERSONA.md")))),*]
    };
}

/// `(name, PERSONA.md)` of every persona the repository's `personas/` directory ships.
const TEAM: &[(&str, &str)] = team![
    "code-reviewer",
    "devops-engineer",
    "engineering-manager",
    "product-manager",
    "qa-engineer",
    "security-reviewer",
    "software-engineer",
    "technical-writer",
];

/// The built-in definitions, parsed. They are checked by the tests below, so a failure here is
/// a build that should never have shipped: it is reported like a malformed file, not a panic.
pub fn team() -> (Vec<PersonaDef>, Vec<LoadError>) {
    let mut defs = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in TEAM {
        match parse(&format!("(built in)/{name}/PERSONA.md"), name, text) {
            Ok(def) => defs.push(def),
            Err(e) => errors.push(e),
        }
    }
    (defs, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_persona_is_built_in_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("personas");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("the personas directory of the crate")
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = TEAM.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, built_in, "personas/ and the built-in team differ");
        let (defs, errors) = team();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(defs.len(), TEAM.len());
    }

    /// Words a persona may put in backticks as if they were something an agent can use: the
    /// actions, their arguments, the bead types `create_bead` takes, and the labels of the
    /// default team (what `labels` is filled with).
    fn vocabulary(defs: &[PersonaDef]) -> std::collections::BTreeSet<String> {
        let mut words = std::collections::BTreeSet::new();
        use crate::workbench::actions::{Toolset, tool_specs};
        let specs = [tool_specs(Toolset::Work), tool_specs(Toolset::Review)];
        let tools = specs.iter().flat_map(|s| s.as_array().expect("tool specs are a list"));
        for tool in tools {
            let f = &tool["function"];
            words.insert(f["name"].as_str().expect("an action has a name").to_owned());
            let properties = f["parameters"]["properties"].as_object().expect("its arguments");
            for (arg, schema) in properties {
                words.insert(arg.clone());
                for value in schema["enum"].as_array().into_iter().flatten() {
                    words.insert(value.as_str().expect("an enum of strings").to_owned());
                }
            }
        }
        words.extend(defs.iter().flat_map(|d| d.labels.iter().cloned()));
        words
    }

    /// What no agent can do: there is no action to search, edit, convert or reassign beads
    /// other than filing a new one, nor to change its own bead's description.
    const NO_SUCH_ACTION: &[&str] = &[
        "existing beads",
        "search the beads",
        "search beads",
        "convert",
        "refine the bead",
        "refine the description",
        "edit the bead",
        "update the bead",
        "change the bead",
        "reassign",
        "reopen",
        "anything it was discovered from",
    ];

    #[test]
    fn every_action_a_default_persona_names_exists() {
        let (defs, errors) = team();
        assert!(errors.is_empty(), "{errors:?}");
        let words = vocabulary(&defs);
        for def in &defs {
            let text = &def.instructions;
            // Between backticks: every lowercase word is an action, an argument or a value.
            for quoted in text.split('`').skip(1).step_by(2) {
                let word_like = quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                assert!(
                    !word_like || words.contains(quoted),
                    "{}: `{quoted}` is not an action, an argument or a known value",
                    def.name
                );
            }
            // Outside them: a snake_case word reads as an action name, so it must be one.
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.contains('_') && word.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    assert!(words.contains(word), "{}: {word} is no action", def.name);
                }
            }
            let lower = text.to_lowercase();
            for phrase in NO_SUCH_ACTION {
                assert!(!lower.contains(phrase), "{}: asks to {phrase:?}", def.name);
            }
        }
    }

    #[test]
    fn reviewers_are_not_sent_to_an_empty_worktree_for_the_change() {
        // `git_diff` shows the uncommitted changes of the reviewer's own fresh worktree: the
        // work under review is committed on the project branch, and the task names it.
        let (defs, _) = team();
        for name in ["code-reviewer", "security-reviewer"] {
            let def = defs.iter().find(|d| d.name == name).expect("a default reviewer");
            assert!(
                !def.instructions.contains("git_diff"),
                "{name} reads the change with git_diff"
            );
            assert!(
                def.instructions.contains("The work to review"),
                "{name}: {}",
                def.instructions
            );
        }
    }
}
