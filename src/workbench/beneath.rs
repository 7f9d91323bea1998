//! File access beneath a worktree with no check-then-use race. `Workspace::resolve` decides
//! whether a path may be used (inside the worktree, not in `.git`, symlinks followed to where
//! they point); this module then uses the place it found through `openat2(2)` relative to
//! the worktree's own descriptor with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: a path that has
//! meanwhile become a symlink (an agent's command swapping one in mid-action), or that would
//! leave the worktree, fails instead of being followed. Files are replaced by writing a new
//! file and renaming it over the old one, so a hard link to a file elsewhere is cut, never
//! written through.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// The worktree's root, opened once per operation.
pub(super) struct Beneath {
    root: OwnedFd,
}

/// What a directory entry is, not following symlinks.
pub(super) enum Entry {
    Dir,
    File,
    Symlink(String),
    Other,
}

impl Beneath {
    pub(super) fn open(root: &Path) -> std::io::Result<Beneath> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let root = nix::fcntl::open(root, flags, Mode::empty())?;
        Ok(Beneath { root })
    }

    fn at(&self, rel: &Path, flags: OFlag, mode: Mode) -> std::io::Result<OwnedFd> {
        let how =
            OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).mode(mode).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        Ok(nix::fcntl::openat2(&self.root, dotted(rel).as_path(), how)?)
    }

    /// A regular file, open for reading, with what it is. Never blocks on a FIFO.
    pub(super) fn read(&self, rel: &Path) -> std::io::Result<(File, FileStat)> {
        let fd = self.at(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())?;
        let stat = nix::sys::stat::fstat(&fd)?;
        Ok((File::from(fd), stat))
    }

    /// What is at `rel`, not following a final symlink.
    pub(super) fn stat(&self, rel: &Path) -> std::io::Result<FileStat> {
        let fd = self.at(rel, OFlag::O_PATH, Mode::empty())?;
        Ok(nix::sys::stat::fstat(&fd)?)
    }

    /// The entries of the directory `rel`, by name.
    pub(super) fn list(&self, rel: &Path) -> std::io::Result<Vec<(String, Entry)>> {
        let fd = self.at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
        let again = fd.try_clone()?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut entries = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let flag = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
            let kind = match nix::sys::stat::fstatat(&again, name.as_str(), flag) {
                Ok(st) => match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                    SFlag::S_IFDIR => Entry::Dir,
                    SFlag::S_IFREG => Entry::File,
                    SFlag::S_IFLNK => Entry::Symlink(
                        nix::fcntl::readlinkat(&again, name.as_str())
                            .map(|t| t.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    ),
                    _ => Entry::Other,
                },
                Err(_) => continue,
            };
            entries.push((name, kind));
        }
        Ok(entries)
    }

    /// Creates the directories of `rel` that are missing (each one given to `owner`), and
    /// opens the last.
    pub(super) fn make_dirs(
        &self,
        rel: &Path,
        owner: Option<(u32, u32)>,
    ) -> std::io::Result<OwnedFd> {
        let mut at = PathBuf::new();
        for part in rel.components().filter(|c| matches!(c, Component::Normal(_))) {
            at.push(part);
            let parent =
                self.at(at.parent().unwrap_or(Path::new("")), dir_flags(), Mode::empty())?;
            let name = part.as_os_str();
            match nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) => {
                    if let Some((uid, gid)) = owner {
                        let flag = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
                        nix::unistd::fchownat(
                            &parent,
                            name,
                            Some(uid.into()),
                            Some(gid.into()),
                            flag,
                        )?;
                    }
                }
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.at(rel, dir_flags(), Mode::empty())
    }

    /// Writes `content` as the file `rel` (in a directory that exists): a new file, renamed
    /// over the old one if any, which keeps the old one's permissions. Returns whether there
    /// was one. A new file is given to `owner`.
    pub(super) fn replace(
        &self,
        rel: &Path,
        content: &[u8],
        owner: Option<(u32, u32)>,
    ) -> std::io::Result<bool> {
        let (parent, name) = split(rel)?;
        let dir = self.at(&parent, dir_flags(), Mode::empty())?;
        let old = match nix::sys::stat::fstatat(
            &dir,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Some(st),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(e.into()),
        };
        let mode = old.map_or(0o644, |st| st.st_mode & 0o7777);
        let mut temp_name = OsString::from(".loom-write-");
        temp_name.push(uuid::Uuid::new_v4().simple().to_string());
        let how = OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_CLOEXEC
                    | OFlag::O_NOFOLLOW,
            )
            .mode(Mode::from_bits_truncate(mode))
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let fd = nix::fcntl::openat2(&dir, temp_name.as_os_str(), how)?;
        let written = (|| -> std::io::Result<()> {
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))?;
            let (uid, gid) = match (old, owner) {
                (Some(st), _) => (Some(st.st_uid), Some(st.st_gid)),
                (None, Some((uid, gid))) => (Some(uid), Some(gid)),
                (None, None) => (None, None),
            };
            if uid.is_some() && nix::unistd::Uid::effective().is_root() {
                nix::unistd::fchown(&fd, uid.map(Into::into), gid.map(Into::into))?;
            }
            let mut file = File::from(fd);
            file.write_all(content)?;
            file.sync_data()
        })();
        let renamed = written.and_then(|()| {
            Ok(nix::fcntl::renameat(&dir, temp_name.as_os_str(), &dir, name.as_os_str())?)
        });
        if renamed.is_err() {
            let _ = nix::unistd::unlinkat(
                &dir,
                temp_name.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        renamed.map(|()| old.is_some())
    }

    /// Removes the file (or symlink) `rel` itself.
    pub(super) fn remove(&self, rel: &Path) -> std::io::Result<()> {
        let (parent, name) = split(rel)?;
        let dir = self.at(&parent, dir_flags(), Mode::empty())?;
        Ok(nix::unistd::unlinkat(&dir, name.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)?)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY
}

/// `.` for the root itself (openat2 wants a path).
fn dotted(rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel.to_path_buf() }
}

fn split(rel: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let name =
        rel.file_name().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parent, PathBuf::from(OsString::from_vec(name.to_os_string().into_vec()))))
}

/// Reads at most `max` bytes of `file`.
pub(super) fn read_up_to(file: &mut File, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether an error means the path changed under the action (a symlink swapped in, or a
/// way out of the worktree), rather than being missing or unreadable.
pub(super) fn is_swap(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == Errno::ELOOP as i32 || code == Errno::EXDEV as i32)
}

pub(super) fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

pub(super) fn is_file(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}
