//! The data tree on disk: files are written to a temporary name in their target
//! directory, verified, then renamed, so nobody ever sees a partial file under its
//! final name and two writers of the same file cannot corrupt it.

use crate::core::integrity::{self, Digest, Hasher, Method};
use crate::core::relpath;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Directories remembered as already checked (no symlink on the way); cleared when full.
pub const KNOWN_DIRS_CAPACITY: usize = 1024;
/// Prefix of temporary files: hidden, and recognisable for clean-up.
pub const TEMP_PREFIX: &str = ".meshnode.";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary file name: hidden, unique in this process and across processes,
/// recognisable for clean-up. The pid is read once (each `std::process::id()` is a
/// system call).
pub fn temp_name() -> String {
    let mut name = String::with_capacity(TEMP_PREFIX.len() + 32);
    push_temp_name(&mut name);
    name
}

/// Appends a fresh `temp_name` to `to`.
fn push_temp_name(to: &mut impl std::fmt::Write) {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let pid = PID.get_or_init(std::process::id);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let _ = write!(to, "{TEMP_PREFIX}{pid}.{n}.tmp");
}

/// A short string on the stack, for what is written for every stored file: its
/// temporary name (45 bytes at most), its checksum cache value (120).
struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

/// A temporary name's buffer.
type TempName = StackStr<64>;

impl<const N: usize> std::fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<const N: usize> StackStr<N> {
    fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // only whole `str`s are written
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// `dir/name` in one allocation (`Path::join` copies `dir`, then grows for `name`):
/// a stored file takes several of these.
fn joined(dir: &Path, name: &str) -> PathBuf {
    let mut p = PathBuf::with_capacity(dir.as_os_str().len() + 1 + name.len());
    p.push(dir);
    p.push(name);
    p
}

#[derive(serde::Deserialize)]
struct XattrIntegrity<'a> {
    method: &'a str,
    value: &'a str,
}

pub struct Store {
    root: PathBuf,
    xattr_name: &'static str,
    /// relPath directories checked (or made) since the last clear.
    known_dirs: HashSet<String>,
    buf: Vec<u8>,
    /// Where the paths of the two calls made for every file are built (`at`): no
    /// allocation each.
    scratch: PathBuf,
}

/// A file being written; removed on drop unless committed.
pub struct TempFile {
    file: File,
    path: PathBuf,
    hasher: Option<Hasher>,
    size: u64,
    limit: u64,
    committed: bool,
    /// The modification time to give it at commit (epoch seconds).
    modified: Option<f64>,
}

impl Write for TempFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.size + data.len() as u64 > self.limit {
            return Err(io::Error::other(format!(
                "file exceeds the size limit of {} bytes",
                self.limit
            )));
        }
        let n = self.file.write(data)?;
        if let Some(h) = &mut self.hasher {
            h.update(&data[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl TempFile {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Gives the file `epoch` as its modification time when committed (its pubtime:
    /// what WIS2's rule of the newer pubtime compares with, and what HTTP's
    /// Last-Modified then says). Set on the open file, not by path, as the checksum
    /// cache is: two path lookups per stored file fewer.
    pub fn set_modified(&mut self, epoch: Option<f64>) {
        self.modified = epoch.filter(|t| t.is_finite() && *t >= 0.0);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether `e` is trouble of the local disk (full, failing, read-only): not the
/// message's fault, so the message must wait for the disk rather than be given up.
pub fn is_local_trouble(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), StorageFull | ReadOnlyFilesystem | QuotaExceeded)
        // EIO has no kind of its own
        || e.raw_os_error() == Some(5)
}

/// The checksum cache's value: `{"method":..,"value":..}` (as sr3 writes it).
fn xattr_value(method: Method, digest: &Digest) -> StackStr<128> {
    use base64::Engine;
    use std::fmt::Write;
    // 64 digest bytes at most: 88 of base64, 120 in all with the rest
    let mut b64 = [0u8; 88];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest.as_bytes(), &mut b64)
        .expect("room for 64 bytes of digest");
    let value = std::str::from_utf8(&b64[..n]).unwrap_or_default();
    let mut v = StackStr::new();
    let _ = write!(
        v,
        "{{\"method\":\"{}\",\"value\":\"{value}\"}}",
        method.name()
    );
    v
}

/// A modification time of `epoch` seconds, the access time left as it is.
fn modified_at(epoch: f64) -> rustix::fs::Timestamps {
    use rustix::fs::{Timespec, Timestamps, UTIME_OMIT};
    let secs = epoch.floor();
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs as i64,
            tv_nsec: ((epoch - secs) * 1e9) as _,
        },
    }
}

impl Store {
    /// Opens (creating) the tree at `root`. `xattr_name` is where checksums are cached.
    pub fn open(root: &Path, xattr_name: &'static str) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        Ok(Store {
            root,
            xattr_name,
            known_dirs: HashSet::new(),
            // allocated when first needed: a store that only writes never needs it
            buf: Vec::new(),
            scratch: PathBuf::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a validated relPath.
    pub fn path(&self, rel: &str) -> PathBuf {
        joined(&self.root, rel)
    }

    /// Runs `f` with the path of `rel`, built in the store's own buffer.
    fn at<R>(&mut self, rel: &str, f: impl FnOnce(&mut Store, &Path) -> R) -> R {
        let mut p = std::mem::take(&mut self.scratch);
        p.as_mut_os_string().clear();
        p.push(&self.root);
        p.push(rel);
        let r = f(self, &p);
        self.scratch = p;
        r
    }

    /// Creates the directories of `rel` under the root, refusing to go through a symlink
    /// (which could lead outside the tree).
    fn ensure_dirs(&mut self, rel_dir: &str) -> io::Result<()> {
        // known by its relPath: checked without building its path
        if rel_dir.is_empty() || self.known_dirs.contains(rel_dir) {
            return Ok(());
        }
        let mut p = self.root.clone();
        for c in rel_dir.split('/') {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(io::Error::other(format!(
                        "{} is a symlink: refusing to write through it",
                        p.display()
                    )));
                }
                Ok(_) => {
                    return Err(io::Error::other(format!(
                        "{} exists and is not a directory",
                        p.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&p) {
                    Ok(()) => {}
                    // another writer made it in between; check what it is on the next pass
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !fs::symlink_metadata(&p)?.is_dir() {
                            return Err(io::Error::other(format!(
                                "{} is not a directory",
                                p.display()
                            )));
                        }
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        if self.known_dirs.len() >= KNOWN_DIRS_CAPACITY {
            self.known_dirs.clear();
        }
        self.known_dirs.insert(rel_dir.to_string());
        Ok(())
    }

    /// Forgets checked directories (after retention removed some).
    pub fn forget_dirs(&mut self) {
        self.known_dirs.clear();
    }

    /// Starts writing `rel`, hashing with `method` when it describes content.
    pub fn begin(&mut self, rel: &str, method: Method, limit: u64) -> io::Result<TempFile> {
        let rel_dir = relpath::dirname(rel);
        self.ensure_dirs(rel_dir)?;
        // root/rel_dir/name in one allocation: neither the directory's path nor the
        // name is needed alone
        let mut name = TempName::new();
        push_temp_name(&mut name);
        let name = name.as_str();
        let mut path =
            PathBuf::with_capacity(self.root.as_os_str().len() + rel_dir.len() + name.len() + 2);
        path.push(&self.root);
        path.push(rel_dir);
        path.push(name);
        let open = |p: &Path| OpenOptions::new().write(true).create_new(true).open(p);
        let file = match open(&path) {
            Ok(f) => f,
            // retention (meshnode clean, from cron) removed a directory we had checked
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.known_dirs.clear();
                self.ensure_dirs(rel_dir)?;
                open(&path)?
            }
            Err(e) => return Err(e),
        };
        Ok(TempFile {
            file,
            path,
            hasher: Hasher::new(method),
            size: 0,
            limit,
            committed: false,
            modified: None,
        })
    }

    /// Bytes free for this node in the tree's file system, if it says.
    pub fn free_space(&self) -> Option<u64> {
        let st = rustix::fs::statvfs(&self.root).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Verifies `tmp` against `expected` and renames it to `rel`. Returns the digest
    /// computed.
    pub fn commit(
        &mut self,
        mut tmp: TempFile,
        rel: &str,
        expected: Option<&Digest>,
    ) -> Result<(Method, Digest), CommitError> {
        let computed = match tmp.hasher.take() {
            Some(h) => (h.method(), h.finish()),
            None => {
                return Err(CommitError::Io(io::Error::other(
                    "no content checksum to verify",
                )))
            }
        };
        if let Some(want) = expected {
            if *want != computed.1 {
                return Err(CommitError::Mismatch {
                    announced: Box::new(want.clone()),
                    computed: Box::new(computed.1),
                });
            }
        }
        // on the open file: no path lookup (after the last write, which sets the time)
        let _ = xattr::FileExt::set_xattr(
            &tmp.file,
            self.xattr_name,
            xattr_value(computed.0, &computed.1).as_str().as_bytes(),
        );
        if let Some(epoch) = tmp.modified {
            if let Err(e) = rustix::fs::futimens(&tmp.file, &modified_at(epoch)) {
                log::debug!("{rel}: modification time not set: {e}");
            }
        }
        self.at(rel, |_, to| fs::rename(&tmp.path, to))
            .map_err(CommitError::Io)?;
        tmp.committed = true;
        Ok(computed)
    }

    fn set_xattr(&self, path: &Path, method: Method, digest: &Digest) {
        // a filesystem without user xattrs just means recomputing later
        let _ = xattr::set(
            path,
            self.xattr_name,
            xattr_value(method, digest).as_str().as_bytes(),
        );
    }

    /// The digest of the local copy of `rel` by `method`, from the xattr cache when it
    /// holds that method, else computed (and cached). `None` when there is no regular file.
    pub fn local_digest(&mut self, rel: &str, method: Method) -> io::Result<Option<Digest>> {
        self.at(rel, |s, path| s.digest_at(path, method))
    }

    fn digest_at(&mut self, path: &Path, method: Method) -> io::Result<Option<Digest>> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        if let Ok(Some(raw)) = xattr::get(path, self.xattr_name) {
            if let Ok(x) = serde_json::from_slice::<XattrIntegrity<'_>>(&raw) {
                if Method::from_name(x.method) == Some(method) {
                    if let Ok(d) = integrity::decode_value(method, x.value) {
                        return Ok(Some(d));
                    }
                }
            }
        }
        let Some(mut h) = Hasher::new(method) else {
            return Ok(None);
        };
        let mut f = File::open(path)?;
        if self.buf.is_empty() {
            self.buf.resize(64 * 1024, 0);
        }
        loop {
            let n = f.read(&mut self.buf)?;
            if n == 0 {
                break;
            }
            h.update(&self.buf[..n]);
        }
        let d = h.finish();
        self.set_xattr(path, method, &d);
        Ok(Some(d))
    }

    /// True when a regular file (or anything) exists at `rel`.
    pub fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }

    /// Removes the file at `rel`; `Ok(false)` when there was none.
    pub fn remove(&mut self, rel: &str) -> io::Result<bool> {
        match fs::remove_file(self.path(rel)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the directory `rel` (fileOp directory); `Ok(false)` when it existed.
    pub fn mkdir(&mut self, rel: &str) -> io::Result<bool> {
        let existed = self.path(rel).is_dir();
        self.ensure_dirs(rel)?;
        Ok(!existed)
    }

    /// Removes the empty directory `rel` (fileOp remove+directory).
    pub fn rmdir(&mut self, rel: &str) -> io::Result<bool> {
        self.known_dirs.clear();
        match fs::remove_dir(self.path(rel)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug)]
pub enum CommitError {
    Mismatch {
        announced: Box<Digest>,
        computed: Box<Digest>,
    },
    Io(io::Error),
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Mismatch {
                announced,
                computed,
            } => {
                write!(
                    f,
                    "checksum mismatch: announced {announced:?}, computed {computed:?}"
                )
            }
            CommitError::Io(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests;
