//! Reading `PERSONA.md` files: front matter between `---` lines, then the instructions.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::beads::normalize_labels;

/// A persona as defined on disk, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaDef {
    pub name: String,
    pub display_name: String,
    pub role: String,
    pub description: String,
    pub labels: Vec<String>,
    pub instructions: String,
}

/// Why a file was skipped, with where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LoadError {
    pub path: String,
    /// 1-based line in the file, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    name: String,
    display_name: String,
    role: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    labels: Vec<String>,
}

/// Parses one file's text. `dir_name` is the directory it sits in, which must be its name.
pub fn parse(path: &str, dir_name: &str, text: &str) -> Result<PersonaDef, LoadError> {
    let fail =
        |line: Option<usize>, message: String| LoadError { path: path.to_owned(), line, message };
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Err(fail(
            Some(1),
            "a persona starts with a `---` line opening its front matter".into(),
        ));
    }
    let rest: Vec<&str> = lines.collect();
    let Some(close) = rest.iter().position(|l| l.trim_end() == "---") else {
        return Err(fail(None, "the front matter is never closed with a `---` line".into()));
    };
    let yaml = rest[..close].join("\n");
    let front: FrontMatter = serde_yaml_ng::from_str(&yaml).map_err(|e| {
        // +2: the opening `---` is line 1, and the YAML's lines are 1-based already.
        let line = e.location().map(|l| l.line() + 1);
        fail(line.or(Some(2)), format!("front matter: {e}"))
    })?;
    if front.name != dir_name {
        return Err(fail(
            Some(2),
            format!("name {:?} must match its directory {dir_name:?}", front.name),
        ));
    }
    crate::projects::check_slug(&front.name, "invalid_persona", "a persona name")
        .map_err(|e| fail(Some(2), e.to_string()))?;
    for (field, value) in [("display_name", &front.display_name), ("role", &front.role)] {
        if value.trim().is_empty() {
            return Err(fail(Some(2), format!("{field} must not be empty")));
        }
    }
    let labels = normalize_labels(front.labels).map_err(|e| fail(Some(2), e.to_string()))?;
    let instructions = rest[close + 1..].join("\n").trim().to_owned();
    if instructions.is_empty() {
        return Err(fail(
            Some(close + 3),
            "the instructions after the front matter are empty".into(),
        ));
    }
    Ok(PersonaDef {
        name: front.name,
        display_name: front.display_name.trim().to_owned(),
        role: front.role.trim().to_owned(),
        description: front.description.trim().to_owned(),
        labels,
        instructions,
    })
}

/// Every `<dir>/<name>/PERSONA.md`, sorted by name; what fails to parse goes to the errors.
pub fn read_dir(dir: &Path) -> (Vec<PersonaDef>, Vec<LoadError>) {
    let mut defs = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(LoadError {
                path: dir.display().to_string(),
                line: None,
                message: format!("cannot read the personas directory (LOOM_PERSONAS_DIR): {e}"),
            });
            return (defs, errors);
        }
    };
    let mut dirs: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for sub in dirs {
        let file = sub.join("PERSONA.md");
        let path = file.display().to_string();
        let dir_name = sub.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse(&path, dir_name, &text) {
                Ok(def) => defs.push(def),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(LoadError { path, line: None, message: e.to_string() }),
        }
    }
    (defs, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "---\nname: tester\ndisplay_name: Tester\nrole: qa\nlabels: [Tests, qa]\n---\nDo the thing.\n";

    #[test]
    fn a_well_formed_persona_parses_with_normalised_labels() {
        let def = parse("p/tester/PERSONA.md", "tester", GOOD).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(def.labels, ["tests", "qa"]);
        assert_eq!(def.instructions, "Do the thing.");
    }

    #[test]
    fn errors_name_the_line() {
        let bad_yaml = "---\nname: tester\ndisplay_name: [unclosed\nrole: qa\n---\nbody\n";
        let e = parse("f", "tester", bad_yaml).err().map(|e| e.line);
        assert!(matches!(e, Some(Some(3..=5))), "{e:?}");
        let no_open = parse("f", "tester", "name: x\n").err().and_then(|e| e.line);
        assert_eq!(no_open, Some(1));
        let unknown = parse(
            "f",
            "tester",
            "---\nname: tester\ndisplay_name: T\nrole: r\ncolour: red\n---\nb\n",
        );
        assert!(unknown.err().is_some_and(|e| e.message.contains("colour")));
        let wrong_dir = parse("f", "other", GOOD).err().map(|e| e.message);
        assert!(wrong_dir.is_some_and(|m| m.contains("directory")));
        let empty_body =
            parse("f", "tester", "---\nname: tester\ndisplay_name: T\nrole: r\n---\n\n");
        assert!(empty_body.err().is_some_and(|e| e.line == Some(6)));
    }
}
