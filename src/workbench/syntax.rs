//! The syntax guard: an edit that leaves a file in a language Loom can parse with more syntax
//! errors than it had is not applied, and the model is shown where the errors are. Parsing is
//! tree-sitter's, which recovers from errors and marks them in the tree, so a file that was
//! already broken can still be edited as long as the edit does not make it worse.

use tree_sitter::{Language, Node, Parser};

/// Error lines reported at most.
const ERRORS_SHOWN: usize = 5;

/// The grammar for a path, by its extension: Rust, Python, JavaScript, TypeScript (and TSX),
/// Go, JSON, YAML and TOML.
fn language(path: &str) -> Option<Language> {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    Some(match ext.as_str() {
        "rs" => tree_sitter_rust::LANGUAGE.into(),
        "py" | "pyi" => tree_sitter_python::LANGUAGE.into(),
        "js" | "mjs" | "cjs" | "jsx" => tree_sitter_javascript::LANGUAGE.into(),
        "ts" | "mts" | "cts" => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
        "tsx" => tree_sitter_typescript::LANGUAGE_TSX.into(),
        "go" => tree_sitter_go::LANGUAGE.into(),
        "json" => tree_sitter_json::LANGUAGE.into(),
        "yaml" | "yml" => tree_sitter_yaml::LANGUAGE.into(),
        "toml" => tree_sitter_toml_ng::LANGUAGE.into(),
        _ => return None,
    })
}

/// The 1-based lines where `text` has syntax errors (at most one entry per line, in order),
/// or `None` when Loom has no grammar for `path` or could not parse it.
pub(super) fn error_lines(path: &str, text: &str) -> Option<Vec<usize>> {
    let mut parser = Parser::new();
    parser.set_language(&language(path)?).ok()?;
    let tree = parser.parse(text, None)?;
    let mut lines = Vec::new();
    if tree.root_node().has_error() {
        collect(tree.root_node(), &mut lines);
    }
    lines.dedup();
    Some(lines)
}

/// Error and missing nodes, outermost only, in document order.
fn collect(node: Node<'_>, lines: &mut Vec<usize>) {
    if node.is_error() || node.is_missing() {
        lines.push(node.start_position().row + 1);
        return;
    }
    if !node.has_error() {
        return;
    }
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        collect(child, lines);
    }
}

/// Why an edit is refused, when it leaves `path` worse than it found it: `None` when the
/// edit may be written.
pub(super) fn refusal(path: &str, before: &str, after: &str) -> Option<String> {
    let now = error_lines(path, after)?;
    if now.is_empty() {
        return None;
    }
    let was = error_lines(path, before).unwrap_or_default();
    if now.len() <= was.len() {
        return None;
    }
    let lines: Vec<&str> = after.lines().collect();
    let shown: Vec<String> = now
        .iter()
        .take(ERRORS_SHOWN)
        .map(|&n| {
            let line = lines.get(n - 1).copied().unwrap_or_default();
            format!("{n:>6}\t{}", line.chars().take(200).collect::<String>())
        })
        .collect();
    let more = now.len().saturating_sub(ERRORS_SHOWN);
    let more = if more > 0 { format!("\n(and {more} more)") } else { String::new() };
    Some(format!(
        "The edit was not applied: it would leave \"{path}\" with syntax errors ({} before, {} \
         after), first at these lines of the edited text:\n{}{more}\nFix the edit (a brace, \
         bracket, quote or indentation it breaks); to change several places that only parse \
         together, make them in one multi_edit.",
        was.len(),
        now.len(),
        shown.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grammar_tells_good_text_from_broken() {
        let cases = [
            ("a.rs", "fn main() {}\n", "fn main() {\n"),
            ("a.py", "def f():\n    return 1\n", "def f(:\n    return 1\n"),
            ("a.js", "function f() { return 1; }\n", "function f() { return 1;\n"),
            ("a.ts", "let x: number = 1;\n", "let x: number = ;\n"),
            ("a.tsx", "const a = <div>hi</div>;\n", "const a = <div>hi</;\n"),
            ("a.go", "package main\nfunc main() {}\n", "package main\nfunc main() {\n"),
            ("a.json", "{\"a\": [1, 2]}\n", "{\"a\": [1, 2}\n"),
            ("a.yaml", "a:\n  - 1\n", "a: [1, 2\n"),
            ("a.toml", "[a]\nb = 1\n", "[a\nb = 1\n"),
        ];
        for (path, good, bad) in cases {
            assert_eq!(error_lines(path, good), Some(vec![]), "{path}: {good}");
            let errors = error_lines(path, bad).unwrap_or_default();
            assert!(!errors.is_empty(), "{path} should find an error in {bad:?}");
        }
        assert_eq!(error_lines("notes.md", "# ((("), None);
        assert_eq!(error_lines("Makefile", "all:"), None);
    }

    #[test]
    fn an_edit_is_refused_only_when_it_adds_errors() {
        let good = "fn a() {\n    1\n}\n";
        let broken = "fn a() {\n    1\n\n";
        let said = refusal("src/a.rs", good, broken).unwrap_or_default();
        assert!(said.contains("(0 before, 1 after)"), "{said}");
        assert!(said.starts_with("The edit was not applied"), "{said}");
        // A file that was broken already may be edited, as long as it gets no worse.
        assert_eq!(refusal("src/a.rs", broken, "fn a() {\n    2\n\n"), None);
        assert_eq!(refusal("src/a.rs", broken, good), None);
        assert_eq!(refusal("notes.txt", good, broken), None);
    }
}
