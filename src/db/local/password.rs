//! The private cluster's password and the `pg_hba.conf` that asks for it. Before it, initdb's
//! `--auth=trust` let any local process that reached the socket in as the superuser, an
//! agent's command included.
//!
//! The password is random (256 bits), made once and kept in `<data dir>/postgres-password`:
//! a regular file of Loom's user, 0600. As root that is root's file, which the server's own
//! user (`postgres`) cannot read either; the server needs only the SCRAM verifier it stores.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;

use crate::config::Secret;

/// The password file's name in the data dir.
pub const FILE: &str = "postgres-password";

/// The `pg_hba.conf` of a cluster Loom runs: every connection gives the password.
pub(super) const HBA: &str = "\
# Written by Loom: every connection authenticates with the password kept in
# <data dir>/postgres-password (readable by Loom's user only).
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 scram-sha-256
host    all          all   127.0.0.1/32  scram-sha-256
host    all          all   ::1/128       scram-sha-256
local   replication  all                 scram-sha-256
host    replication  all   127.0.0.1/32  scram-sha-256
host    replication  all   ::1/128       scram-sha-256
";

/// The password kept in `file`; a new random one, written 0600, when there is none.
pub(super) fn load_or_create(file: &Path) -> anyhow::Result<Secret> {
    match load(file) {
        Err(e) if is_not_found(&e) => create(file),
        loaded => loaded,
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// The password kept in `file`, which must be there. A file someone made group- or
/// world-readable is made 0600 again.
pub(super) fn load(file: &Path) -> anyhow::Result<Secret> {
    match std::fs::symlink_metadata(file) {
        Ok(meta) if !meta.file_type().is_file() => {
            bail!("{} is not a regular file; refusing it as the database password", file.display())
        }
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                crate::data_dir::set_mode(file, 0o600)?;
            }
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the database password {}", file.display()))?;
            match text.trim() {
                "" => bail!("the database password file {} is empty", file.display()),
                password => Ok(Secret::new(password)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!(
                "the private cluster asks for the password kept in {}, and that file is lost: \
                 restore it from a backup of the data dir, or set LOOM_DATABASE_URL",
                file.display()
            )))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Writes a new random password to `file`, whole or not at all (a sibling renamed into place).
fn create(file: &Path) -> anyhow::Result<Secret> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let staging = file.with_extension("partial");
    write_private(&staging, &password)?;
    std::fs::rename(&staging, file)
        .with_context(|| format!("moving the database password to {}", file.display()))?;
    Ok(Secret::new(password))
}

/// `text` in a new file at `path` that only its owner can read (a leftover is replaced).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(out, "{text}")?;
    out.sync_all()?;
    Ok(())
}

/// The password in a file initdb reads (`--pwfile`) for as long as this lives: 0600, given
/// to the server's user when initdb runs as one; removed when dropped.
pub(super) struct PwFile(PathBuf);

impl PwFile {
    pub(super) fn write(
        dir: &Path,
        password: &Secret,
        owner: Option<&str>,
    ) -> anyhow::Result<Self> {
        let path = dir.join(".initdb-password");
        write_private(&path, password.expose())?;
        let file = PwFile(path);
        if let Some(user) = owner {
            let user =
                nix::unistd::User::from_name(user)?.with_context(|| format!("no user {user}"))?;
            nix::unistd::chown(&file.0, Some(user.uid), Some(user.gid))
                .with_context(|| format!("giving {} to {}", file.0.display(), user.name))?;
        }
        Ok(file)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PwFile {
    fn drop(&mut self) {
        // Best effort: a leftover is in the server's own 0700 directory, and replaced next time.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a `pg_hba.conf` lets some connection in without a password (`trust`): what
/// clusters made by Loom before it set a password have.
pub(super) fn trusts(hba: &str) -> bool {
    hba.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .any(|line| line.split_whitespace().any(|field| field.eq_ignore_ascii_case("trust")))
}

/// The password as it goes into a URL's userinfo (percent-encoded where it must be).
pub(super) fn for_url(password: &Secret) -> String {
    let mut out = String::new();
    for b in password.expose().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_made_once_0600_and_read_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join(FILE);

        let made = load_or_create(&file).expect("made");
        let again = load_or_create(&file).expect("read");

        assert_eq!(made.expose().len(), 43);
        assert_eq!(made, again);
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!file.with_extension("partial").exists());
    }

    #[test]
    fn a_readable_password_file_is_made_0600_and_an_empty_one_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join(FILE);
        std::fs::write(&file, "s3cret\n").expect("write");
        crate::data_dir::set_mode(&file, 0o644).expect("chmod");

        assert_eq!(load_or_create(&file).expect("read").expose(), "s3cret");
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&file, "\n").expect("write");
        assert!(load_or_create(&file).is_err());
    }

    #[test]
    fn trust_lines_are_found_and_loom_s_own_file_has_none() {
        let old =
            "# comment mentioning trust\nlocal all all trust\nhost all all 127.0.0.1/32 trust\n";
        assert!(trusts(old));
        assert!(!trusts(HBA));
        assert!(!trusts("local all all peer # not trust\n"));
    }

    #[test]
    fn a_password_goes_into_a_url_percent_encoded() {
        assert_eq!(for_url(&Secret::new("aZ9-_")), "aZ9-_");
        assert_eq!(for_url(&Secret::new("a@b:c/d")), "a%40b%3Ac%2Fd");
    }
}
