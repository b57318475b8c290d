//! A simulated power cut, for tests (cargo feature `power-loss`, Linux only).
//!
//! `kill -9` keeps the page cache, so a crash test passes even when an fsync is missing. A
//! power cut (or a kernel crash) loses every byte the kernel had not yet written back, and
//! which of those bytes did reach the disk is luck. This module keeps, beside the real files,
//! the image of what the disk is *guaranteed* to hold, the way POSIX promises it and not the
//! more generous way ext4 behaves:
//!
//! - a file's bytes are durable as they were when an fsync of it **began**, once that fsync
//!   returns (bytes written while it runs may or may not be covered: counted as not);
//! - a name in a directory (a file created, renamed over, removed; a subdirectory made) is
//!   durable once an fsync of that directory returns; until then the directory holds what it
//!   held at its last fsync;
//! - everything else may be lost. An append that was not fsynced may survive in part: the
//!   image keeps none, a random prefix, or all of it, and sometimes ends the kept part with
//!   zeros (a sector allocated but never written).
//!
//! Every fsync of the workspace goes through [`crate::sync_file`], [`crate::sync_file_data`]
//! or [`crate::sync_dir`]; with this feature on, each one that touches a file under the
//! armed directory updates the image. A test arms a [`Recorder`] on a directory (what is
//! there counts as durable), runs its writers, cuts the power ([`Recorder::cut`], or at the
//! n-th fsync with [`Recorder::arm`]'s `cut_after`), and writes the disk as the machine would
//! find it after a reboot ([`Recorder::write_image`]) to open it there. Work that goes on
//! after the cut happens in the real directory only, as if on a machine already dark.
//!
//! A writer decides after its call returns whether the call finished before the cut: if
//! [`is_cut`] is still false then, every fsync the call waited for was recorded.
//!
//! ```
//! use persist::power_loss::Recorder;
//! use std::io::Write;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let recorder = Recorder::arm(dir.path(), None).unwrap();
//! let mut synced = std::fs::File::create(dir.path().join("synced")).unwrap();
//! synced.write_all(b"kept").unwrap();
//! persist::sync_file(&synced).unwrap();
//! persist::sync_dir(dir.path()).unwrap();
//! synced.write_all(b" and maybe this").unwrap();
//! std::fs::write(dir.path().join("never synced"), b"lost").unwrap();
//! recorder.cut();
//!
//! let after = tempfile::tempdir().unwrap();
//! recorder.write_image(after.path(), 7).unwrap();
//! let kept = std::fs::read(after.path().join("synced")).unwrap();
//! assert!(kept.starts_with(b"kept") && kept.len() <= b"kept and maybe this".len());
//! assert!(!after.path().join("never synced").exists());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::SyncTarget;

/// A directory entry in the durable image: a file or a directory, by inode number.
#[derive(Debug, Clone, Copy)]
enum Node {
    File(u64),
    Dir(u64),
}

/// The durable image of everything under `root`.
struct Model {
    root: PathBuf,
    root_ino: u64,
    /// Durable bytes of each file, by inode.
    files: HashMap<u64, Vec<u8>>,
    /// Durable entries of each directory, by inode.
    dirs: HashMap<u64, BTreeMap<OsString, Node>>,
    /// Fsyncs recorded so far.
    syncs: u64,
    /// Cut the power when `syncs` reaches this.
    cut_after: Option<u64>,
}

static MODEL: Mutex<Option<Model>> = Mutex::new(None);
static CUT: AtomicBool = AtomicBool::new(false);
/// One recorder at a time in a process: tests running in parallel wait for each other.
static ARMED: Mutex<()> = Mutex::new(());

fn model() -> MutexGuard<'static, Option<Model>> {
    MODEL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the power is cut (always false when no recorder is armed).
pub fn is_cut() -> bool {
    CUT.load(Ordering::Acquire)
}

/// What the image lost against the page cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageStats {
    /// Files in the image.
    pub files: usize,
    /// Files whose unsynced append survived in part or whole.
    pub torn_tails: usize,
    /// Bytes the page cache held that the image does not.
    pub dropped_bytes: u64,
}

/// Records the durable image of one directory tree while it lives (see the module docs).
pub struct Recorder {
    _one: MutexGuard<'static, ()>,
}

impl Recorder {
    /// Starts recording under `root`; what is there now counts as durable. With `cut_after`
    /// set, the power goes out when that many fsyncs under `root` have returned.
    pub fn arm(root: &Path, cut_after: Option<u64>) -> io::Result<Recorder> {
        let one = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        let root = fs::canonicalize(root)?;
        let root_ino = fs::metadata(&root)?.ino();
        let mut m = Model {
            root: root.clone(),
            root_ino,
            files: HashMap::new(),
            dirs: HashMap::new(),
            syncs: 0,
            cut_after,
        };
        scan_durable(&root, root_ino, &mut m)?;
        *model() = Some(m);
        CUT.store(false, Ordering::Release);
        Ok(Recorder { _one: one })
    }

    /// Cuts the power now: no later fsync counts.
    pub fn cut(&self) {
        let _m = model();
        CUT.store(true, Ordering::Release);
    }

    /// Fsyncs recorded so far.
    pub fn syncs(&self) -> u64 {
        model().as_ref().map_or(0, |m| m.syncs)
    }

    /// Writes into `dest` (which must not exist or be empty) the tree as a reboot after the
    /// cut would find it, deciding torn tails with `seed`. Cuts the power first if it is on.
    pub fn write_image(&self, dest: &Path, seed: u64) -> io::Result<ImageStats> {
        self.cut();
        let guard = model();
        let m = guard.as_ref().expect("armed while the recorder lives");
        // The page cache's view of each file still linked, to tear unsynced appends from.
        let mut now = HashMap::new();
        current_files(&m.root, &mut now)?;
        let mut stats = ImageStats::default();
        let mut rng = SplitMix(seed);
        write_dir(m, m.root_ino, dest, &now, &mut rng, &mut stats)?;
        Ok(stats)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        *model() = None;
        CUT.store(false, Ordering::Release);
    }
}

/// Records everything under `dir` as durable (at arming).
fn scan_durable(dir: &Path, ino: u64, m: &mut Model) -> io::Result<()> {
    let listing = list(dir)?;
    for (name, node) in &listing {
        match *node {
            Node::Dir(d) => scan_durable(&dir.join(name), d, m)?,
            Node::File(f) => {
                m.files.insert(f, fs::read(dir.join(name))?);
            }
        }
    }
    m.dirs.insert(ino, listing);
    Ok(())
}

fn list(dir: &Path) -> io::Result<BTreeMap<OsString, Node>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // An entry removed between the listing and the stat is not there.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let node = if meta.is_dir() {
            Node::Dir(meta.ino())
        } else {
            Node::File(meta.ino())
        };
        out.insert(entry.file_name(), node);
    }
    Ok(out)
}

fn current_files(dir: &Path, out: &mut HashMap<u64, PathBuf>) -> io::Result<()> {
    for (name, node) in list(dir)? {
        match node {
            Node::Dir(_) => current_files(&dir.join(&name), out)?,
            Node::File(ino) => {
                out.insert(ino, dir.join(&name));
            }
        }
    }
    Ok(())
}

fn write_dir(
    m: &Model,
    ino: u64,
    dest: &Path,
    now: &HashMap<u64, PathBuf>,
    rng: &mut SplitMix,
    stats: &mut ImageStats,
) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    let Some(listing) = m.dirs.get(&ino) else {
        return Ok(()); // made, never fsynced itself: empty after the cut
    };
    for (name, node) in listing {
        let path = dest.join(name);
        match *node {
            Node::Dir(d) => write_dir(m, d, &path, now, rng, stats)?,
            Node::File(f) => {
                let durable: &[u8] = m.files.get(&f).map_or(&[], Vec::as_slice);
                let mut bytes = durable.to_vec();
                let cached = now.get(&f).and_then(|p| fs::read(p).ok());
                if let Some(cached) = cached {
                    if cached.len() > durable.len() && cached.starts_with(durable) {
                        // An append not yet fsynced: none, some or all of it reached the disk.
                        let extra = cached.len() - durable.len();
                        let keep = match rng.below(4) {
                            0 | 1 => 0,
                            2 => rng.below(extra as u64 + 1) as usize,
                            _ => extra,
                        };
                        bytes.extend_from_slice(&cached[durable.len()..durable.len() + keep]);
                        if keep > 0 {
                            stats.torn_tails += 1;
                            if rng.below(4) == 0 {
                                let from = bytes.len() - keep.min(512);
                                bytes[from..].iter_mut().for_each(|b| *b = 0);
                            }
                        }
                        stats.dropped_bytes += (extra - keep) as u64;
                    } else if cached != durable {
                        stats.dropped_bytes += cached.len() as u64;
                    }
                }
                fs::write(&path, &bytes)?;
                stats.files += 1;
            }
        }
    }
    Ok(())
}

/// What an fsync is about to make durable, captured before it starts.
enum Captured {
    File(u64, Vec<u8>),
    Dir(u64, BTreeMap<OsString, Node>),
}

/// Runs `fsync` on `target`, recording in the image what it made durable.
pub(crate) fn observe(
    target: SyncTarget<'_>,
    fsync: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let captured = capture(&target)?;
    fsync()?;
    if let Some(c) = captured {
        let mut guard = model();
        if let (Some(m), false) = (guard.as_mut(), is_cut()) {
            match c {
                Captured::File(ino, bytes) => {
                    m.files.insert(ino, bytes);
                }
                Captured::Dir(ino, listing) => {
                    m.dirs.insert(ino, listing);
                }
            }
            m.syncs += 1;
            if m.cut_after.is_some_and(|n| m.syncs >= n) {
                CUT.store(true, Ordering::Release);
            }
        }
    }
    Ok(())
}

fn capture(target: &SyncTarget<'_>) -> io::Result<Option<Captured>> {
    let guard = model();
    let Some(m) = guard.as_ref() else {
        return Ok(None);
    };
    if is_cut() {
        return Ok(None);
    }
    match target {
        SyncTarget::File(file) => {
            // The file as the kernel holds it, through its descriptor (it may be unlinked or
            // opened write-only).
            let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            let Ok(path) = fs::read_link(&fd_path) else {
                return Ok(None);
            };
            if !path.starts_with(&m.root) {
                return Ok(None);
            }
            let ino = file.metadata()?.ino();
            Ok(Some(Captured::File(ino, fs::read(&fd_path)?)))
        }
        SyncTarget::Dir(dir) => {
            let dir = fs::canonicalize(dir)?;
            if !dir.starts_with(&m.root) {
                return Ok(None);
            }
            let ino = fs::metadata(&dir)?.ino();
            Ok(Some(Captured::Dir(ino, list(&dir)?)))
        }
    }
}

/// SplitMix64: enough randomness to choose torn tails, and no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn a_rename_needs_the_directory_fsync_and_a_file_its_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"before").unwrap();
        let recorder = Recorder::arm(dir.path(), None).unwrap();
        // Replaced with data fsynced but the rename not made durable: the old file stays.
        let mut tmp = File::create(dir.path().join("old.tmp")).unwrap();
        tmp.write_all(b"after").unwrap();
        crate::sync_file(&tmp).unwrap();
        std::fs::rename(dir.path().join("old.tmp"), dir.path().join("old")).unwrap();
        let img = tempfile::tempdir().unwrap();
        recorder.write_image(&img.path().join("a"), 1).unwrap();
        assert_eq!(std::fs::read(img.path().join("a/old")).unwrap(), b"before");
        assert!(!img.path().join("a/old.tmp").exists());
        drop(recorder);

        // With the directory fsynced, the new bytes under the old name.
        let recorder = Recorder::arm(dir.path(), None).unwrap();
        let mut tmp = File::create(dir.path().join("x.tmp")).unwrap();
        tmp.write_all(b"new").unwrap();
        crate::sync_file(&tmp).unwrap();
        std::fs::rename(dir.path().join("x.tmp"), dir.path().join("old")).unwrap();
        crate::sync_dir(dir.path()).unwrap();
        recorder.write_image(&img.path().join("b"), 1).unwrap();
        assert_eq!(std::fs::read(img.path().join("b/old")).unwrap(), b"new");
    }

    #[test]
    fn the_cut_after_n_fsyncs_ignores_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::arm(dir.path(), Some(2)).unwrap();
        let mut f = File::create(dir.path().join("log")).unwrap();
        crate::sync_dir(dir.path()).unwrap(); // 1: the name
        f.write_all(b"one").unwrap();
        crate::sync_file_data(&f).unwrap(); // 2: "one", then dark
        assert!(is_cut());
        f.write_all(b"two").unwrap();
        crate::sync_file_data(&f).unwrap();
        assert_eq!(recorder.syncs(), 2);
        // Over seeds, the unsynced "two" is dropped, torn or kept; "one" always stays.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let img = tempfile::tempdir().unwrap();
            recorder.write_image(img.path(), seed).unwrap();
            let bytes = std::fs::read(img.path().join("log")).unwrap();
            assert!(bytes.starts_with(b"one"), "{bytes:?}");
            assert!(bytes.len() <= 6);
            seen.insert(bytes.len());
        }
        assert!(seen.contains(&3) && seen.contains(&6), "{seen:?}");
    }

    #[test]
    fn files_outside_the_armed_directory_are_not_recorded() {
        let armed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let recorder = Recorder::arm(armed.path(), None).unwrap();
        let f = File::create(other.path().join("f")).unwrap();
        crate::sync_file(&f).unwrap();
        crate::sync_dir(other.path()).unwrap();
        assert_eq!(recorder.syncs(), 0);
    }
}
