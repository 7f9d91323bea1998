//! Who an agent is to git and what its commands' environment holds besides the basics: the
//! agent's git identity, and where this machine's toolchains live.

/// The address an agent commits under (no mail reaches it).
pub fn agent_email(name: &str) -> String {
    format!("{name}@agents.loom.invalid")
}

/// The variables that make `git` itself commit as the agent `name`, with Loom as committer.
pub fn git_identity(name: &str) -> [(String, String); 4] {
    [
        ("GIT_AUTHOR_NAME".to_owned(), name.to_owned()),
        ("GIT_AUTHOR_EMAIL".to_owned(), agent_email(name)),
        ("GIT_COMMITTER_NAME".to_owned(), "Loom".to_owned()),
        ("GIT_COMMITTER_EMAIL".to_owned(), "loom@localhost".to_owned()),
    ]
}

/// What commands need to find this machine's toolchains once `HOME` is not Loom's:
/// rustup's home (named outright when only implied by `HOME`), pyenv's root when Loom's
/// `PATH` goes through it, and the variables the operator lists in `pass`, taken from Loom's
/// own environment (`LOOM_*` never). Cargo's home is the project's cache in the sandbox
/// (its registry is written to); its binaries stay on `PATH`.
pub fn toolchain_env(pass: &[String]) -> Vec<(String, String)> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let mut vars = Vec::new();
    for (name, dir) in
        [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo"), ("PYENV_ROOT", ".pyenv")]
    {
        let value = std::env::var(name).ok().or_else(|| {
            let implied = home.as_ref()?.join(dir);
            implied.is_dir().then(|| implied.to_string_lossy().into_owned())
        });
        if let Some(v) = value {
            vars.push((name.to_owned(), v));
        }
    }
    for name in pass.iter().filter(|n| !n.is_empty() && !n.starts_with("LOOM_")) {
        if let Ok(v) = std::env::var(name) {
            vars.retain(|(k, _)| k != name);
            vars.push((name.clone(), v));
        }
    }
    vars
}
