//! The only git configuration Loom's libgit2 calls read: Loom's own file,
//! `<data dir>/gitconfig`, never the user's, the system's or a repository's.
//!
//! An agent's commands run in worktrees of Loom's clones, so the clone's `config` is theirs
//! to write (`git config` in a worktree writes the clone's), and so may be a home directory's
//! `.gitconfig` or `/etc/gitconfig`. From those a planted `credential.helper` would run a
//! command of the agent's choosing with Loom's credentials at hand, and a `pushurl` or
//! `url.<x>.insteadOf` would send Loom's pushes (and the credentials in the project's URL)
//! somewhere else.
//!
//! libgit2's own switch for this, `git2::opts::set_search_path`, is an `unsafe fn` (it
//! changes process-wide state without synchronisation) and this crate forbids `unsafe`; so
//! does setting `HOME`/`GIT_CONFIG_NOSYSTEM` for the process (`std::env::set_var`). Instead
//! every repository Loom opens gets its configuration replaced, before anything else reads
//! it, by one built from Loom's file alone ([`OwnConfig::open`]). What libgit2 still reads
//! while opening (the repository's format version and extensions, `core.bare`,
//! `core.worktree`, `safe.directory`) decides only whether and how the repository opens; it
//! names no command and no URL. Nor does the checkout libgit2 makes when it adds a worktree
//! (it opens the new worktree itself, with the usual configuration): that reads line-ending
//! and file-mode settings only. Remotes are made from the project's URL
//! (`remote_anonymous`), never looked up by name, and `clippy.toml` keeps the rest of the
//! module from opening a repository any other way.

use std::path::{Path, PathBuf};

use git2::{Config, ConfigLevel, Repository, RepositoryInitOptions};

/// Where Loom's git configuration lives; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnConfig {
    file: PathBuf,
}

impl OwnConfig {
    /// The configuration of the data dir `data_dir`: `<data_dir>/gitconfig`, which need
    /// not exist (an operator writes one to give Loom a credential helper).
    pub(crate) fn in_data_dir(data_dir: &Path) -> OwnConfig {
        OwnConfig { file: data_dir.join("gitconfig") }
    }

    /// A configuration of Loom's file alone (empty when there is none).
    pub(crate) fn load(&self) -> Result<Config, git2::Error> {
        let mut config = Config::new()?;
        if self.file.is_file() {
            config.add_file(&self.file, ConfigLevel::Global, false)?;
        }
        Ok(config)
    }

    /// Opens the repository at `path` (no searching upwards) reading Loom's configuration
    /// only from here on.
    #[expect(clippy::disallowed_methods, reason = "the one place repositories are opened")]
    pub(crate) fn open(&self, path: &Path) -> Result<Repository, git2::Error> {
        let repo = Repository::open(path)?;
        repo.set_config(&self.load()?)?;
        Ok(repo)
    }

    /// A new empty bare repository at `path`, reading Loom's configuration only. No
    /// template directory is copied (a user's `init.templateDir` could bring hooks).
    #[expect(clippy::disallowed_methods, reason = "the one place repositories are created")]
    pub(crate) fn init_bare(&self, path: &Path, head: &str) -> Result<Repository, git2::Error> {
        let mut options = RepositoryInitOptions::new();
        options.bare(true).no_reinit(true).external_template(false).initial_head(head);
        let repo = Repository::init_opts(path, &options)?;
        repo.set_config(&self.load()?)?;
        Ok(repo)
    }
}
