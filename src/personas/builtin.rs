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
}
