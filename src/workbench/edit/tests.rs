use std::fs;

use super::super::actions::Edit;
use super::super::tests::{failed, fixture};

fn edit(old: &str, new: &str) -> Edit {
    Edit { old: old.into(), new: new.into(), replace_all: None }
}

const PY: &str = "def area(w, h):\n    if w < 0:\n        raise ValueError(w)\n    return w * h\n";

#[test]
fn a_miss_names_the_first_line_of_old_that_differs_and_whether_only_whitespace_does() {
    let f = fixture();
    f.ws.write_file("geo.py", PY).unwrap();
    // Line 3 of old is indented with a tab where the file has spaces.
    let tabbed = "    if w < 0:\n        raise ValueError(w)\n\treturn w * h\n";
    let e = failed(f.ws.edit_file("geo.py", tabbed, "x"));
    assert!(e.contains("line 3 of old differs from line 4 of the file."), "{e}");
    assert!(e.contains("Only whitespace differs"), "{e}");
    assert!(e.contains("old has:  \"\\treturn w * h\""), "{e}");
    assert!(e.contains("file has: \"    return w * h\""), "{e}");
    // A real difference on line 3: the two lines before it are said to match.
    let typo = "    if w < 0:\n        raise ValueError(w)\n    return w * hh\n";
    let e = failed(f.ws.edit_file("geo.py", typo, "x"));
    assert!(e.contains("Lines 1-2 of old match lines 2-3 of the file"), "{e}");
    assert!(e.contains("line 3 of old differs from line 4 of the file."), "{e}");
    assert!(!e.contains("whitespace differs"), "{e}");
    assert_eq!(fs::read_to_string(f.ws.root().join("geo.py")).unwrap(), PY);
}

#[test]
fn replace_all_renames_every_occurrence_and_shows_the_result() {
    let f = fixture();
    f.ws.write_file("r.py", "total = 0\nfor x in xs:\n    total += x\nprint(total)\n").unwrap();
    let renamed = Edit { replace_all: Some(true), ..edit("total", "acc") };
    let out = f.ws.edit("r.py", &[renamed]).unwrap();
    assert!(
        out.starts_with("Edited \"r.py\" (3 occurrences replaced). Lines 1-4 changed"),
        "{out}"
    );
    assert!(out.contains("     3\t    acc += x\n     4\tprint(acc)"), "{out}");
    let text = fs::read_to_string(f.ws.root().join("r.py")).unwrap();
    assert_eq!(text, "acc = 0\nfor x in xs:\n    acc += x\nprint(acc)\n");
}

#[test]
fn multi_edit_applies_all_or_nothing_and_says_which_edit_missed() {
    let f = fixture();
    f.ws.write_file("geo.py", PY).unwrap();
    let both = [edit("def area(w, h):", "def area(w, h, d=1):"), edit("w * h", "w * h * d")];
    let out = f.ws.edit("geo.py", &both).unwrap();
    assert!(out.starts_with("Edited \"geo.py\" (2 edits). Lines 1-4 changed"), "{out}");
    let after = fs::read_to_string(f.ws.root().join("geo.py")).unwrap();
    assert!(after.starts_with("def area(w, h, d=1):") && after.contains("w * h * d"));
    let second_misses = [edit("d=1", "d=2"), edit("no such text", "x")];
    let e = failed(f.ws.edit("geo.py", &second_misses));
    assert!(e.starts_with("edit 2 of 2: old was not found"), "{e}");
    assert!(e.ends_with("Nothing was changed: the edits apply together."), "{e}");
    assert_eq!(fs::read_to_string(f.ws.root().join("geo.py")).unwrap(), after);
    assert!(failed(f.ws.edit("geo.py", &[])).contains("edits is empty"));
}

#[test]
fn insert_lines_puts_text_after_a_line_and_refuses_lines_past_the_end() {
    let f = fixture();
    f.ws.write_file("a.txt", "one\nthree").unwrap();
    let out = f.ws.insert_lines("a.txt", 1, "two").unwrap();
    assert!(out.starts_with("Inserted into \"a.txt\". Line 2 changed"), "{out}");
    f.ws.insert_lines("a.txt", 0, "zero\n").unwrap();
    f.ws.insert_lines("a.txt", 4, "four").unwrap();
    let text = fs::read_to_string(f.ws.root().join("a.txt")).unwrap();
    assert_eq!(text, "zero\none\ntwo\nthree\nfour\n");
    let e = failed(f.ws.insert_lines("a.txt", 9, "x"));
    assert!(e.contains("has 5 lines; after_line must be 0 to 5"), "{e}");
    assert!(failed(f.ws.insert_lines("a.txt", 1, "")).contains("nothing to insert"));
}

#[test]
fn an_edit_that_breaks_the_syntax_is_refused_and_the_file_left_as_it_was() {
    let f = fixture();
    let lib = fs::read_to_string(f.ws.root().join("src/lib.rs")).unwrap();
    // Dropping the closing brace unbalances the function.
    let e = failed(f.ws.edit_file("src/lib.rs", "    42\n}\n", "    42\n"));
    assert!(e.starts_with("The edit was not applied"), "{e}");
    assert!(e.contains("syntax errors (0 before, 1 after)"), "{e}");
    assert_eq!(fs::read_to_string(f.ws.root().join("src/lib.rs")).unwrap(), lib);
    // Several edits that only parse together go through as one.
    let together = [edit("-> u32 {", "-> u32 { {"), edit("    42\n}", "    42\n} }")];
    f.ws.edit("src/lib.rs", &together).unwrap();
    // Files Loom cannot parse are not guarded.
    f.ws.edit_file("README.md", "# Hello", "# Hello {").unwrap();
}
