use std::fs;

use super::super::tests::{failed, fixture, q};
use super::{FILES_MAX, SEARCH_MAX_MATCHES, SearchQuery};

/// The fixture's worktree with what a JavaScript project carries: dependencies and build
/// output that its `.gitignore` excludes, and a nested `.gitignore` re-including one file.
fn project() -> super::super::tests::Fixture {
    let f = fixture();
    let root = f.ws.root().to_path_buf();
    fs::write(root.join(".gitignore"), "node_modules/\n/dist\n*.log\n").unwrap();
    for dir in ["node_modules/left-pad", "dist", "src/gen"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("node_modules/left-pad/index.js"), "function answer() {} // leftPad\n")
        .unwrap();
    fs::write(root.join("dist/app.js"), "function answer() {}\n").unwrap();
    fs::write(root.join("debug.log"), "answer\n").unwrap();
    fs::write(root.join("src/gen/.gitignore"), "*.js\n!keep.js\n").unwrap();
    fs::write(root.join("src/gen/out.js"), "function answer() {}\n").unwrap();
    fs::write(root.join("src/gen/keep.js"), "function answer() {}\n").unwrap();
    fs::write(root.join("src/app.ts"), "export function Answer() {}\n").unwrap();
    f
}

#[test]
fn search_skips_what_gitignore_excludes_says_so_and_looks_inside_when_asked() {
    let f = project();
    let out = f.ws.search(q("answer", None)).unwrap();
    assert_eq!(
        out,
        "src/gen/keep.js:1: function answer() {}\nsrc/lib.rs:1: pub fn answer() -> u32 {"
    );
    // Where nothing is found, the ignored paths are named: the answer may be there.
    let out = f.ws.search(q("function answer", Some("src/gen"))).unwrap();
    assert!(out.starts_with("src/gen/keep.js:1:") && !out.contains("out.js"), "{out}");
    let out = f.ws.search(q("leftPad", None)).unwrap();
    let note = out.lines().nth(1).unwrap_or_default();
    assert!(note.starts_with("[not searched, as .gitignore says: "), "{out}");
    for skipped in ["debug.log", "dist/", "node_modules/", "src/gen/out.js"] {
        assert!(note.contains(skipped), "{skipped} in {note}");
    }
    // A path given explicitly is searched although it is ignored.
    let inside = f.ws.search(q("answer", Some("node_modules"))).unwrap();
    assert_eq!(inside, "node_modules/left-pad/index.js:1: function answer() {} // leftPad");
    // The root's rules hold in a subdirectory searched on its own.
    let sub = f.ws.search(q("answer", Some("src"))).unwrap();
    assert!(!sub.contains("debug.log") && !sub.contains("out.js"), "{sub}");
}

#[test]
fn regex_and_glob_narrow_a_search_and_bad_ones_are_named() {
    let f = project();
    let regex = |query, glob| SearchQuery { query, regex: true, glob, ..SearchQuery::default() };
    assert_eq!(
        f.ws.search(regex(r"(?i)function\s+answer\(", Some("*.ts"))).unwrap(),
        "src/app.ts:1: export function Answer() {}"
    );
    let rust = f.ws.search(regex(r"fn \w+\(\)", Some("src/**/*.rs"))).unwrap();
    assert_eq!(rust, "src/lib.rs:1: pub fn answer() -> u32 {");
    // Literal by default: regex syntax is plain text.
    let literal = f.ws.search(q(r"fn \w+", None)).unwrap();
    assert!(literal.starts_with("No matches for \"fn \\\\w+\" (literal and case-sensitive)"));
    assert!(failed(f.ws.search(regex("fn (", None))).contains("not a valid regex"));
    assert!(failed(f.ws.search(regex("x", Some("src/[a")))).contains("not a valid glob"));
}

#[test]
fn many_matches_become_counts_per_file_so_every_file_is_seen() {
    let f = fixture();
    // Sorted first, and enough to fill the cap on its own.
    fs::create_dir_all(f.ws.root().join("aaa")).unwrap();
    fs::write(f.ws.root().join("aaa/vendor.txt"), "hit\n".repeat(SEARCH_MAX_MATCHES + 5)).unwrap();
    fs::write(f.ws.root().join("src/main.rs"), "// hit\n").unwrap();
    let out = f.ws.search(q("hit", None)).unwrap();
    let total = SEARCH_MAX_MATCHES + 6;
    assert!(out.starts_with(&format!("{total} matches in 2 files, too many to list")), "{out}");
    assert!(out.ends_with(&format!("aaa/vendor.txt: {}\nsrc/main.rs: 1", total - 1)), "{out}");
    let listed = SearchQuery { query: "answer", files_only: true, ..SearchQuery::default() };
    assert_eq!(f.ws.search(listed).unwrap(), "1 matches in 1 files:\nsrc/lib.rs: 1");
}

#[test]
fn find_files_takes_globs_or_names_and_honours_gitignore() {
    let f = project();
    assert_eq!(f.ws.find_files("*.js", None).unwrap().lines().next(), Some("src/gen/keep.js"));
    assert_eq!(f.ws.find_files("LIB", None).unwrap(), "src/lib.rs");
    assert_eq!(f.ws.find_files("src/**/*.ts", None).unwrap(), "src/app.ts");
    assert_eq!(
        f.ws.find_files("index", Some("node_modules")).unwrap(),
        "node_modules/left-pad/index.js"
    );
    assert!(f.ws.find_files("nothing-like-it", None).unwrap().starts_with("No files matching"));
    assert!(failed(f.ws.find_files("  ", None)).contains("non-empty"));
    for i in 0..FILES_MAX + 3 {
        fs::write(f.ws.root().join(format!("src/m{i:03}.rs")), "").unwrap();
    }
    let out = f.ws.find_files("m*.rs", None).unwrap();
    assert_eq!(out.lines().filter(|l| l.starts_with("src/m")).count(), FILES_MAX);
    assert!(out.contains(&format!("[{} files match; the first {FILES_MAX}", FILES_MAX + 3)));
}
