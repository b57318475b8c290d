//! A simulated power cut, for tests (cargo feature `power-loss`, Linux only).
//!
//! `kill -9` keeps the page cache, so a crash test passes even when an fsync is missing. A
//! power cut (or a kernel crash) loses every byte the kernel had not yet written back, and
//! which of those bytes did reach the disk is luck. This module keeps, beside the real files,
//! the image of what the disk is *guaranteed* to hold, the way POSIX promises it and not the
//! more generous way ext4 behaves:
//!
//! - a file's bytes are durable as they were when an fsync of it **began**, once that fsync
//!   returns (bytes written while it runs may or may not be covered: counted as not; of two
//!   overlapping fsyncs of a file, the one that began later wins);
//! - a name in a directory (a file created, renamed over, removed; a subdirectory made) is
//!   durable once an fsync of that directory returns;
//! - everything else may or may not have reached the disk. Each name changed since its
//!   directory's last fsync keeps its old state or takes its new one, independently of the
//!   others (a rename is one name changing: atomic). A file's append not yet fsynced survives
//!   not at all, as a random prefix, or whole, and the kept part sometimes ends in zeros (a
//!   sector allocated but never written).
//!
//! Not modelled: unsynced pages reaching the disk out of order (a hole of zeros followed by
//! written data), and damage to bytes that were fsynced.
//!
//! Every fsync of the workspace goes through [`crate::sync_file`], [`crate::sync_file_data`]
//! or [`crate::sync_dir`]; with this feature on, each one that touches a file under the
//! armed directory updates the image. A test arms a [`Recorder`] on a directory (what is
//! there counts as durable), runs its writers, cuts the power ([`Recorder::cut`], or at the
//! n-th fsync with [`Recorder::arm`]'s `cut_after`), and writes the disk as the machine would
//! find it after a reboot ([`Recorder::write_image`]) to open it there. The cut freezes the
//! page cache's view of the tree: what threads write after it never reaches the image, as if
//! the machine were already dark.
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
//! recorder.cut();
//! synced.write_all(b" but never this").unwrap();
//!
//! let after = tempfile::tempdir().unwrap();
//! recorder.write_image(after.path(), 7).unwrap();
//! let kept = std::fs::read(after.path().join("synced")).unwrap();
//! assert!(kept.starts_with(b"kept") && kept.len() <= b"kept and maybe this".len());
//! ```

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::UNIX_EPOCH;

use crate::SyncTarget;

/// A file or directory: its inode number and birth time (inode numbers are reused soon after
/// a file is deleted; the pair is not).
type Key = (u64, u128);

fn key_of(meta: &fs::Metadata) -> Key {
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (meta.ino(), born)
}

/// A directory entry: a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(Key),
    Dir(Key),
}

type Listing = BTreeMap<OsString, Node>;

/// The tree as the page cache holds it, frozen at the cut.
#[derive(Default)]
struct Frozen {
    files: HashMap<Key, Vec<u8>>,
    dirs: HashMap<Key, Listing>,
}

/// The durable image of everything under `root`.
struct Model {
    root: PathBuf,
    root_key: Key,
    /// Durable bytes of each file, with the number of the capture they come from.
    files: HashMap<Key, (u64, Vec<u8>)>,
    /// Durable entries of each directory, with the number of their capture.
    dirs: HashMap<Key, (u64, Listing)>,
    /// Numbers captures in the order they began.
    captures: u64,
    /// Fsyncs recorded so far.
    syncs: u64,
    /// Cut the power when `syncs` reaches this.
    cut_after: Option<u64>,
    /// The page cache at the cut.
    frozen: Option<Frozen>,
}

impl Model {
    fn cut(&mut self) {
        if self.frozen.is_none() {
            let mut frozen = Frozen::default();
            // Best effort on files that vanish meanwhile: they are not in the tree then.
            let _ = freeze(&self.root, self.root_key, &mut frozen);
            self.frozen = Some(frozen);
        }
        CUT.store(true, Ordering::Release);
    }
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

/// What the image lost against the page cache at the cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageStats {
    /// Files in the image.
    pub files: usize,
    /// Files whose unsynced append survived in part or whole.
    pub torn_tails: usize,
    /// Bytes the page cache held that the image does not.
    pub dropped_bytes: u64,
    /// Directory entries changed since their directory's last fsync, and of those, kept in
    /// their new state.
    pub unsynced_names: usize,
    /// See `unsynced_names`.
    pub new_names_kept: usize,
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
        let root_key = key_of(&fs::metadata(&root)?);
        let mut now = Frozen::default();
        freeze(&root, root_key, &mut now)?;
        let m = Model {
            root,
            root_key,
            files: now.files.into_iter().map(|(k, b)| (k, (0, b))).collect(),
            dirs: now.dirs.into_iter().map(|(k, l)| (k, (0, l))).collect(),
            captures: 0,
            syncs: 0,
            cut_after,
            frozen: None,
        };
        *model() = Some(m);
        CUT.store(false, Ordering::Release);
        Ok(Recorder { _one: one })
    }

    /// Cuts the power now: no later fsync counts, no later write reaches the image.
    pub fn cut(&self) {
        if let Some(m) = model().as_mut() {
            m.cut();
        }
    }

    /// Fsyncs recorded so far.
    pub fn syncs(&self) -> u64 {
        model().as_ref().map_or(0, |m| m.syncs)
    }

    /// Writes into `dest` (which must not exist or be empty) the tree as a reboot after the
    /// cut would find it, deciding what unsynced changes reached the disk with `seed`. Cuts
    /// the power first if it is on.
    pub fn write_image(&self, dest: &Path, seed: u64) -> io::Result<ImageStats> {
        self.cut();
        let guard = model();
        let m = guard.as_ref().expect("armed while the recorder lives");
        let frozen = m.frozen.as_ref().expect("frozen at the cut");
        let mut stats = ImageStats::default();
        let mut rng = SmallRng::seed_from_u64(seed);
        write_dir(m, frozen, m.root_key, dest, &mut rng, &mut stats)?;
        Ok(stats)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        *model() = None;
        CUT.store(false, Ordering::Release);
    }
}

/// Reads the tree under `dir` as the page cache holds it.
fn freeze(dir: &Path, key: Key, out: &mut Frozen) -> io::Result<()> {
    let listing = list(dir)?;
    for (name, node) in &listing {
        match *node {
            Node::Dir(d) => freeze(&dir.join(name), d, out)?,
            Node::File(f) => {
                if let Ok(bytes) = fs::read(dir.join(name)) {
                    out.files.insert(f, bytes);
                }
            }
        }
    }
    out.dirs.insert(key, listing);
    Ok(())
}

fn list(dir: &Path) -> io::Result<Listing> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // An entry removed between the listing and the stat is not there.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let node = if meta.is_dir() {
            Node::Dir(key_of(&meta))
        } else {
            Node::File(key_of(&meta))
        };
        out.insert(entry.file_name(), node);
    }
    Ok(out)
}

fn write_dir(
    m: &Model,
    frozen: &Frozen,
    key: Key,
    dest: &Path,
    rng: &mut SmallRng,
    stats: &mut ImageStats,
) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    let empty = Listing::new();
    let durable = m.dirs.get(&key).map_or(&empty, |(_, l)| l);
    let cached = frozen.dirs.get(&key).unwrap_or(&empty);
    let names: BTreeSet<&OsString> = durable.keys().chain(cached.keys()).collect();
    for name in names {
        let (old, new) = (durable.get(name), cached.get(name));
        // A name changed since the directory's last fsync: old or new state, by luck.
        let node = if old == new {
            old
        } else {
            stats.unsynced_names += 1;
            if rng.random_bool(0.5) {
                old
            } else {
                stats.new_names_kept += 1;
                new
            }
        };
        let path = dest.join(name);
        match node {
            None => {}
            Some(&Node::Dir(d)) => write_dir(m, frozen, d, &path, rng, stats)?,
            Some(&Node::File(f)) => {
                let synced: &[u8] = m.files.get(&f).map_or(&[], |(_, b)| b.as_slice());
                let mut bytes = synced.to_vec();
                if let Some(cached) = frozen.files.get(&f) {
                    if cached.len() > synced.len() && cached.starts_with(synced) {
                        // An append not yet fsynced: none, some or all of it reached the disk.
                        let extra = cached.len() - synced.len();
                        let keep = match rng.random_range(0..4) {
                            0 | 1 => 0,
                            2 => rng.random_range(0..=extra),
                            _ => extra,
                        };
                        bytes.extend_from_slice(&cached[synced.len()..synced.len() + keep]);
                        if keep > 0 {
                            stats.torn_tails += 1;
                            if rng.random_bool(0.25) {
                                let from = bytes.len() - keep.min(512);
                                bytes[from..].iter_mut().for_each(|b| *b = 0);
                            }
                        }
                        stats.dropped_bytes += (extra - keep) as u64;
                    } else if cached.as_slice() != synced {
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

/// What an fsync is about to make durable, captured (and numbered) before it starts.
enum Captured {
    File(u64, Key, Vec<u8>),
    Dir(u64, Key, Listing),
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
            // Of two overlapping fsyncs of one file, the one that began later holds more.
            match c {
                Captured::File(n, key, bytes) => {
                    if m.files.get(&key).is_none_or(|(seen, _)| *seen < n) {
                        m.files.insert(key, (n, bytes));
                    }
                }
                Captured::Dir(n, key, listing) => {
                    if m.dirs.get(&key).is_none_or(|(seen, _)| *seen < n) {
                        m.dirs.insert(key, (n, listing));
                    }
                }
            }
            m.syncs += 1;
            if m.cut_after.is_some_and(|n| m.syncs >= n) {
                m.cut();
            }
        }
    }
    Ok(())
}

fn capture(target: &SyncTarget<'_>) -> io::Result<Option<Captured>> {
    let mut guard = model();
    let Some(m) = guard.as_mut() else {
        return Ok(None);
    };
    if is_cut() {
        return Ok(None);
    }
    let captured = match target {
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
            let key = key_of(&file.metadata()?);
            Captured::File(m.captures + 1, key, fs::read(&fd_path)?)
        }
        SyncTarget::Dir(dir) => {
            let dir = fs::canonicalize(dir)?;
            if !dir.starts_with(&m.root) {
                return Ok(None);
            }
            let key = key_of(&fs::metadata(&dir)?);
            Captured::Dir(m.captures + 1, key, list(&dir)?)
        }
    };
    m.captures += 1;
    Ok(Some(captured))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    fn images(recorder: &Recorder, seeds: u64) -> Vec<tempfile::TempDir> {
        (0..seeds)
            .map(|seed| {
                let img = tempfile::tempdir().unwrap();
                recorder.write_image(img.path(), seed).unwrap();
                img
            })
            .collect()
    }

    #[test]
    fn an_unsynced_rename_keeps_the_old_or_the_new_file_never_a_mix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"before").unwrap();
        let recorder = Recorder::arm(dir.path(), None).unwrap();
        let mut tmp = File::create(dir.path().join("old.tmp")).unwrap();
        tmp.write_all(b"after").unwrap();
        crate::sync_file(&tmp).unwrap();
        std::fs::rename(dir.path().join("old.tmp"), dir.path().join("old")).unwrap();
        let mut seen = BTreeSet::new();
        for img in images(&recorder, 32) {
            seen.insert(std::fs::read(img.path().join("old")).unwrap());
            assert!(!img.path().join("old.tmp").exists());
        }
        assert_eq!(
            seen,
            BTreeSet::from([b"before".to_vec(), b"after".to_vec()])
        );
        drop(recorder);

        // With the directory fsynced, always the new bytes under the old name.
        let recorder = Recorder::arm(dir.path(), None).unwrap();
        let mut tmp = File::create(dir.path().join("x.tmp")).unwrap();
        tmp.write_all(b"new").unwrap();
        crate::sync_file(&tmp).unwrap();
        std::fs::rename(dir.path().join("x.tmp"), dir.path().join("old")).unwrap();
        crate::sync_dir(dir.path()).unwrap();
        for img in images(&recorder, 8) {
            assert_eq!(std::fs::read(img.path().join("old")).unwrap(), b"new");
        }
    }

    #[test]
    fn unsynced_removals_survive_each_by_luck() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let recorder = Recorder::arm(dir.path(), None).unwrap();
        for name in ["a", "b", "c"] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
        let mut seen = BTreeSet::new();
        for img in images(&recorder, 64) {
            let left: Vec<_> = ["a", "b", "c"]
                .into_iter()
                .filter(|n| img.path().join(n).exists())
                .collect();
            seen.insert(left);
        }
        // Not only "all" and "none": a subset, e.g. the middle one gone alone.
        assert!(seen.contains(&vec!["a", "c"]), "{seen:?}");
        assert_eq!(seen.len(), 8, "{seen:?}");
    }

    #[test]
    fn the_cut_after_n_fsyncs_ignores_later_writes_and_fsyncs() {
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
        for img in images(&recorder, 16) {
            assert_eq!(std::fs::read(img.path().join("log")).unwrap(), b"one");
        }
    }

    #[test]
    fn an_unsynced_append_is_dropped_torn_or_kept() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::arm(dir.path(), None).unwrap();
        let mut f = File::create(dir.path().join("log")).unwrap();
        crate::sync_dir(dir.path()).unwrap();
        f.write_all(b"one").unwrap();
        crate::sync_file_data(&f).unwrap();
        f.write_all(b"two").unwrap();
        recorder.cut();
        let mut lengths = BTreeSet::new();
        for img in images(&recorder, 64) {
            let bytes = std::fs::read(img.path().join("log")).unwrap();
            assert!(bytes.starts_with(b"one") && bytes.len() <= 6, "{bytes:?}");
            lengths.insert(bytes.len());
        }
        assert!(lengths.contains(&3) && lengths.contains(&6), "{lengths:?}");
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
