//! The Raft log and vote on disk.
//!
//! # Files (in the log's directory)
//!
//! - `log-<index of the first entry, 20 digits>.seg`: segments of entries, the last one
//!   written; a new one starts when the active one passes [`SEGMENT_BYTES`].
//! - `vote`: the vote (term, candidate, committed), a frame (`frame.rs`, magic `VRRAFTVO`).
//! - `purged`: the id of the last entry purged (dropped after a snapshot), a frame (magic
//!   `VRRAFTPU`).
//! - `vote-gate`: the log index a replica that lost its disk must hold before it votes again
//!   (`null` once it has), a frame (magic `VRRAFTVG`); absent on a replica that never lost
//!   its disk.
//!
//! A segment opens with a 24-byte header (integers little-endian): magic `b"VRRAFTLG"`,
//! format version (`u32`, [`FORMAT_VERSION`]), the index of its first entry (`u64`), and the
//! CRC-32 of those 20 bytes. Then records back to back:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | body length `n` (`u32`, at most [`MAX_RECORD_BYTES`]) |
//! | 4 | 4 | CRC-32 (IEEE) of the body |
//! | 8 | n | body: the entry as JSON (`openraft::Entry`, commands as base64) |
//!
//! An append is acknowledged to Raft only once its bytes are fsynced, so a vote or an
//! acknowledgement a replica gave survives its crash. At open every record is read and
//! checked; a damaged or cut record can only be the tail of the last segment (a crash in the
//! middle of an append, never acknowledged), and the log is cut back to before it. Damage
//! anywhere else is an error: the replica must not serve with a hole in its log.
//! Entries follow each other by index; a truncation (a new leader's log replacing entries
//! this replica had not committed) cuts the segment holding the first entry dropped and
//! removes the later segments; a purge removes whole segments below the purge point.

use crate::{blocking, frame, io_error, NodeId, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError, Vote,
};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The segment files' format version.
pub const FORMAT_VERSION: u32 = 1;
/// A segment past this size is sealed and the next entry starts a new one.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// The largest entry a record may hold (a write command is bounded by the request size
/// limit well below this).
pub const MAX_RECORD_BYTES: u32 = 1 << 30;

const MAGIC: [u8; 8] = *b"VRRAFTLG";
const HEADER_BYTES: u64 = 24;
const VOTE_MAGIC: [u8; 8] = *b"VRRAFTVO";
const VOTE_GATE_MAGIC: [u8; 8] = *b"VRRAFTVG";
const PURGED_MAGIC: [u8; 8] = *b"VRRAFTPU";

/// Where an entry's record is.
#[derive(Clone, Copy)]
struct Loc {
    log_id: LogId<NodeId>,
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: File,
    len: u64,
    /// The index its next entry would have.
    next: u64,
}

struct Inner {
    dir: PathBuf,
    /// Entries below this are covered by a published snapshot (`StateMachine::purge_limit`).
    purge_limit: Arc<AtomicU64>,
    /// A purge Raft asked for past `purge_limit`: done in memory, recorded on disk (and its
    /// segments removed) once the snapshot covering it is published.
    purge_deferred: bool,
    /// By the index of their first entry.
    segments: BTreeMap<u64, Segment>,
    entries: BTreeMap<u64, Loc>,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

/// The Raft log and vote of one replica (cheap to clone: clones share the files).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("log-{first:020}.seg"))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, checking every record. `purge_limit` is how far
    /// entries are covered by a published snapshot (the state machine's
    /// [`crate::StateMachine::purge_limit`]): Raft may ask to purge further while a snapshot
    /// it received is still being installed, and a crash then must not find the log purged
    /// past the snapshot the state machine restores.
    pub fn open(dir: &Path, purge_limit: Arc<AtomicU64>) -> io::Result<LogStore> {
        persist::create_dir_durable(dir)?;
        let vote = frame::read(&dir.join("vote"), &VOTE_MAGIC)?;
        let purged: Option<LogId<NodeId>> = frame::read(&dir.join("purged"), &PURGED_MAGIC)?;
        let mut firsts = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("log-")
                .and_then(|n| n.strip_suffix(".seg"))
            {
                let first = n
                    .parse::<u64>()
                    .map_err(|_| invalid(format!("a log segment with a bad name: {name}")))?;
                firsts.push(first);
            } else if name.ends_with(".seg.tmp") {
                std::fs::remove_file(dir.join(&*name))?;
            }
        }
        firsts.sort_unstable();
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            purge_limit,
            purge_deferred: false,
            segments: BTreeMap::new(),
            entries: BTreeMap::new(),
            purged,
            vote,
        };
        let count = firsts.len();
        for (k, first) in firsts.into_iter().enumerate() {
            let last = k + 1 == count;
            inner.load_segment(first, last)?;
        }
        // Entries at or below the purge point are gone for Raft even where their segment
        // still holds them (the purge removes whole segments only, and a snapshot installed
        // past the end of the log leaves a gap below the purge point).
        if let Some(p) = inner.purged {
            inner.entries = inner.entries.split_off(&(p.index + 1));
        }
        let mut expected = inner.purged.map(|p| p.index + 1);
        for &index in inner.entries.keys() {
            if expected.is_some_and(|e| e != index) {
                return Err(invalid(format!(
                    "raft log in {}: entry {index} where {} was expected (a hole in the log)",
                    dir.display(),
                    expected.unwrap_or(0)
                )));
            }
            expected = Some(index + 1);
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Reads segment `first`'s records into the index; a bad tail of the `last` segment is
    /// cut off.
    fn load_segment(&mut self, first: u64, last: bool) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let header = persist::check_frame(
            bytes.get(..HEADER_BYTES as usize).unwrap_or(&[]),
            &MAGIC,
            FORMAT_VERSION,
        )
        .map_err(|e| invalid(format!("{}: header: {e}", path.display())))?;
        let stored_first = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        if stored_first != first {
            return Err(invalid(format!(
                "{}: the header says its first entry is {stored_first}",
                path.display()
            )));
        }
        let mut pos = HEADER_BYTES as usize;
        let mut expected = first;
        let good_end = loop {
            if pos == bytes.len() {
                break pos;
            }
            let record = (|| {
                let len = u32::from_le_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?);
                if len == 0 || len > MAX_RECORD_BYTES {
                    return None;
                }
                let crc = u32::from_le_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?);
                let body = bytes.get(pos + 8..pos + 8 + len as usize)?;
                (persist::crc32(body) == crc).then_some((len, body))
            })();
            let Some((len, body)) = record else {
                // A torn append leaves a record running past the end of the file (or blocks
                // the file system allocated and never wrote, zeros); a bad record with whole
                // records after it is damage.
                let claimed = bytes.get(pos..pos + 4).map_or(0, |b| {
                    u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
                });
                let torn = pos + 8 + claimed >= bytes.len() || bytes[pos..].iter().all(|&b| b == 0);
                if last && torn {
                    tracing::warn!(segment = %path.display(), offset = pos, "raft log: a torn record at the end (an append cut by a crash, never acknowledged): cut off");
                    break pos;
                }
                return Err(invalid(format!(
                    "{}: a damaged record at offset {pos} (not the log's end)",
                    path.display()
                )));
            };
            let entry: Entry<TypeConfig> = serde_json::from_slice(body)
                .map_err(|e| invalid(format!("{}: offset {pos}: {e}", path.display())))?;
            if entry.log_id.index != expected {
                return Err(invalid(format!(
                    "{}: entry {} where {expected} was expected",
                    path.display(),
                    entry.log_id.index
                )));
            }
            self.entries.insert(
                expected,
                Loc {
                    log_id: entry.log_id,
                    segment: first,
                    offset: pos as u64,
                    len,
                },
            );
            expected += 1;
            pos += 8 + len as usize;
        };
        if good_end < bytes.len() {
            file.set_len(good_end as u64)?;
            persist::sync_file(&file)?;
        }
        self.segments.insert(
            first,
            Segment {
                file,
                len: good_end as u64,
                next: expected,
            },
        );
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries
            .values()
            .next_back()
            .map(|l| l.log_id)
            .or(self.purged)
    }

    /// A new empty segment whose first entry will be `first`, made durable before use.
    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        let tmp = path.with_extension("seg.tmp");
        let mut header = persist::ChecksumWriter::new(Vec::with_capacity(HEADER_BYTES as usize));
        header.write_all(&MAGIC)?;
        header.u32(FORMAT_VERSION)?;
        header.u64(first)?;
        let header = header.finish()?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&header)?;
            persist::sync_file(&f)?;
        }
        std::fs::rename(&tmp, &path)?;
        persist::sync_dir(&self.dir)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        self.segments.insert(
            first,
            Segment {
                file,
                len: HEADER_BYTES,
                next: first,
            },
        );
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        if self.waits_for_snapshot() {
            return Err(io::Error::other(
                "raft log: an append before the snapshot it follows is published",
            ));
        }
        self.finish_deferred_purge()?;
        let mut next = self.last_log_id().map_or(0, |l| l.index + 1);
        let mut pending: Vec<u8> = Vec::new();
        let mut pending_locs: Vec<Loc> = Vec::new();
        for entry in entries {
            if entry.log_id.index != next && !(self.entries.is_empty() && self.purged.is_none()) {
                return Err(invalid(format!(
                    "raft log: append of entry {} after {}",
                    entry.log_id.index,
                    next.saturating_sub(1)
                )));
            }
            next = entry.log_id.index + 1;
            let body = serde_json::to_vec(&entry).map_err(io::Error::other)?;
            if body.len() as u64 > MAX_RECORD_BYTES as u64 {
                return Err(invalid(format!(
                    "raft log: entry {} is {} bytes",
                    entry.log_id.index,
                    body.len()
                )));
            }
            // A new segment when the active one is full, or when this entry does not follow
            // its last one (a snapshot installed past the end of the log): a segment's
            // entries always follow each other.
            let pending_next = pending_locs.last().map(|l| l.log_id.index + 1);
            let rolls = match self.segments.iter().next_back() {
                None => true,
                Some((_, s)) => {
                    s.len + pending.len() as u64 >= SEGMENT_BYTES
                        || pending_next.unwrap_or(s.next) != entry.log_id.index
                }
            };
            if rolls {
                self.flush_pending(&mut pending, &mut pending_locs)?;
                self.new_segment(entry.log_id.index)?;
            }
            let (&seg_first, seg) = self.segments.iter().next_back().expect("a segment");
            pending_locs.push(Loc {
                log_id: entry.log_id,
                segment: seg_first,
                offset: seg.len + pending.len() as u64,
                len: body.len() as u32,
            });
            pending.extend_from_slice(&(body.len() as u32).to_le_bytes());
            pending.extend_from_slice(&persist::crc32(&body).to_le_bytes());
            pending.extend_from_slice(&body);
        }
        self.flush_pending(&mut pending, &mut pending_locs)
    }

    /// Whether an append must wait: a purge is deferred until its snapshot is published, and
    /// entries written after it before then would leave a hole in the log on disk.
    fn waits_for_snapshot(&self) -> bool {
        self.purge_deferred
            && self
                .purged
                .is_some_and(|p| p.index >= self.purge_limit.load(Ordering::Acquire))
    }

    /// Records a purge that waited for its snapshot, once the snapshot is published.
    fn finish_deferred_purge(&mut self) -> io::Result<()> {
        match self.purged {
            Some(p)
                if self.purge_deferred && p.index < self.purge_limit.load(Ordering::Acquire) =>
            {
                self.purge(p)
            }
            _ => Ok(()),
        }
    }

    /// Writes `pending` at the end of the active segment, fsyncs it, then indexes `locs`.
    fn flush_pending(&mut self, pending: &mut Vec<u8>, locs: &mut Vec<Loc>) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let (_, seg) = self.segments.iter_mut().next_back().expect("a segment");
        seg.file.write_all_at(pending, seg.len)?;
        persist::sync_file_data(&seg.file)?;
        seg.len += pending.len() as u64;
        if let Some(l) = locs.last() {
            seg.next = l.log_id.index + 1;
        }
        for l in locs.drain(..) {
            self.entries.insert(l.log_id.index, l);
        }
        pending.clear();
        Ok(())
    }

    /// Drops entries from `index` on.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(loc) = self.entries.get(&index).copied() else {
            return Ok(());
        };
        // Later segments go first, newest first, each removal durable: a crash part-way
        // leaves a shorter log without a gap.
        let later: Vec<u64> = self
            .segments
            .range((Bound::Excluded(loc.segment), Bound::Unbounded))
            .map(|(&f, _)| f)
            .collect();
        for first in later.into_iter().rev() {
            self.segments.remove(&first);
            std::fs::remove_file(segment_path(&self.dir, first))?;
            persist::sync_dir(&self.dir)?;
        }
        let seg = self
            .segments
            .get_mut(&loc.segment)
            .expect("the entry's segment");
        seg.file.set_len(loc.offset)?;
        persist::sync_file(&seg.file)?;
        seg.len = loc.offset;
        seg.next = index;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Records the purge point, then removes the segments wholly below it; past the
    /// published snapshot, only in memory until it is published.
    fn purge(&mut self, log_id: LogId<NodeId>) -> io::Result<()> {
        self.purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        if log_id.index >= self.purge_limit.load(Ordering::Acquire) {
            self.purge_deferred = true;
            return Ok(());
        }
        self.purge_deferred = false;
        frame::write(&self.dir.join("purged"), &PURGED_MAGIC, &log_id)?;
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for w in firsts.windows(2) {
            // Every entry of segment w[0] is below w[1]'s first.
            if w[1] <= log_id.index + 1 {
                self.segments.remove(&w[0]);
                std::fs::remove_file(segment_path(&self.dir, w[0]))?;
            }
        }
        persist::sync_dir(&self.dir)
    }

    fn read(&self, range: impl RangeBounds<u64>) -> io::Result<Vec<Entry<TypeConfig>>> {
        let mut out = Vec::new();
        for loc in self.entries.range(range).map(|(_, l)| *l) {
            let seg = self.segments.get(&loc.segment).ok_or_else(|| {
                invalid(format!(
                    "raft log: entry {} lost its segment",
                    loc.log_id.index
                ))
            })?;
            let mut buf = vec![0u8; loc.len as usize + 8];
            seg.file.read_exact_at(&mut buf, loc.offset)?;
            let body = &buf[8..];
            let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
            if persist::crc32(body) != crc {
                return Err(invalid(format!(
                    "raft log: entry {} fails its checksum",
                    loc.log_id.index
                )));
            }
            out.push(serde_json::from_slice(body).map_err(io::Error::other)?);
        }
        Ok(out)
    }
}

impl LogStore {
    /// The log index this replica must hold before it votes again, after it lost its disk
    /// and rejoined its set (`None`: it votes freely). Kept on disk beside the vote, so that
    /// a restart before it has caught up keeps the gate.
    pub fn vote_gate(&self) -> io::Result<Option<u64>> {
        let path = self.lock().dir.join("vote-gate");
        Ok(frame::read::<Option<u64>>(&path, &VOTE_GATE_MAGIC)?.flatten())
    }

    /// Records (`Some`) or lifts (`None`) the vote gate, durably.
    pub fn set_vote_gate(&self, gate: Option<u64>) -> io::Result<()> {
        let path = self.lock().dir.join("vote-gate");
        blocking(|| frame::write(&path, &VOTE_GATE_MAGIC, &gate))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        blocking(|| self.lock().read(range))
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: inner.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let path = inner.dir.join("vote");
        blocking(|| frame::write(&path, &VOTE_MAGIC, vote))
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        // After a snapshot received from the leader, Raft appends the entries that follow it
        // while the state machine may still be installing it: they wait for it.
        while self.lock().waits_for_snapshot() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let r = blocking(|| self.lock().append(entries));
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(e));
                Err(io_error(ErrorSubject::Logs, ErrorVerb::Write, msg))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        blocking(|| self.lock().truncate(log_id.index))
            .map_err(|e| io_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        blocking(|| self.lock().purge(log_id))
            .map_err(|e| io_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Blob;
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::path::Path;

    fn entry(term: u64, index: u64, data: &[u8]) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Blob(data.to_vec())),
        }
    }

    fn open(dir: &Path) -> io::Result<LogStore> {
        LogStore::open(dir, Arc::new(AtomicU64::new(u64::MAX)))
    }

    fn raw_append(store: &LogStore, entries: Vec<Entry<TypeConfig>>) {
        store.lock().append(entries).unwrap();
    }

    fn indexes(store: &LogStore) -> Vec<(u64, u64, Vec<u8>)> {
        store
            .lock()
            .read(..)
            .unwrap()
            .into_iter()
            .map(|e| match e.payload {
                EntryPayload::Normal(b) => (e.log_id.leader_id.term, e.log_id.index, b.0),
                _ => (e.log_id.leader_id.term, e.log_id.index, Vec::new()),
            })
            .collect()
    }

    #[test]
    fn entries_survive_reopen_truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        raw_append(&store, (0..5).map(|i| entry(1, i, &[i as u8; 3])).collect());
        raw_append(&store, vec![entry(1, 5, b"five")]);
        drop(store);
        let store = open(dir.path()).unwrap();
        assert_eq!(indexes(&store).len(), 6);
        assert_eq!(indexes(&store)[5], (1, 5, b"five".to_vec()));
        // A new leader's entries replace 3.. .
        store.lock().truncate(3).unwrap();
        raw_append(&store, vec![entry(2, 3, b"new3")]);
        drop(store);
        let store = open(dir.path()).unwrap();
        let got = indexes(&store);
        assert_eq!(
            got.iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(got[3], (2, 3, b"new3".to_vec()));
        store
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 1))
            .unwrap();
        drop(store);
        let store = open(dir.path()).unwrap();
        assert_eq!(
            indexes(&store).iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(store.lock().purged.unwrap().index, 1);
        // Appending goes on after the last entry, and a gap is refused.
        raw_append(&store, vec![entry(2, 4, b"4")]);
        assert!(store.lock().append(vec![entry(2, 9, b"9")]).is_err());
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_elsewhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        raw_append(&store, (0..3).map(|i| entry(1, i, b"abc")).collect());
        drop(store);
        let seg = segment_path(dir.path(), 0);
        let len = std::fs::metadata(&seg).unwrap().len();
        // An append cut by a crash: half a record at the end.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 5).unwrap();
        drop(f);
        let store = open(dir.path()).unwrap();
        assert_eq!(indexes(&store).len(), 2);
        raw_append(&store, vec![entry(1, 2, b"again")]);
        assert_eq!(indexes(&store)[2].2, b"again".to_vec());
        drop(store);
        // A flipped byte in the first record, with records after it: refused.
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[HEADER_BYTES as usize + 12] ^= 0x20;
        std::fs::write(&seg, &bytes).unwrap();
        assert!(open(dir.path()).is_err());
    }

    #[test]
    fn segments_roll_and_purge_removes_whole_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).unwrap();
        let big = vec![7u8; 3 << 20];
        // base64 makes each entry about 4 MiB: a segment holds about 16.
        for i in 0..40 {
            raw_append(&store, vec![entry(1, i, &big)]);
        }
        let segments = store.lock().segments.len();
        assert!(segments >= 2, "{segments} segments");
        store
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 35))
            .unwrap();
        assert!(store.lock().segments.len() < segments);
        drop(store);
        let store = open(dir.path()).unwrap();
        assert_eq!(
            indexes(&store).iter().map(|e| e.1).collect::<Vec<_>>(),
            (36..40).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_purge_past_the_published_snapshot_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let limit = Arc::new(AtomicU64::new(3));
        let store = LogStore::open(dir.path(), limit.clone()).unwrap();
        raw_append(&store, (0..5).map(|i| entry(1, i, b"x")).collect());
        // A snapshot of entries 0..=9 is being installed: Raft purges up to 9 at once.
        store
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 9))
            .unwrap();
        // The entries after the snapshot wait for it: written now, they would follow a hole.
        assert!(store.lock().waits_for_snapshot());
        assert!(store.lock().append(vec![entry(1, 10, b"ten")]).is_err());
        drop(store);
        // A crash before it is published: the log on disk still starts at 0, whole.
        let store = LogStore::open(dir.path(), limit.clone()).unwrap();
        assert_eq!(store.lock().purged, None);
        assert_eq!(
            indexes(&store).iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        store
            .lock()
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 9))
            .unwrap();
        // Published: the append records the purge first.
        limit.store(10, Ordering::Release);
        raw_append(&store, vec![entry(1, 10, b"ten"), entry(1, 11, b"eleven")]);
        drop(store);
        let store = LogStore::open(dir.path(), limit).unwrap();
        assert_eq!(store.lock().purged.unwrap().index, 9);
        assert_eq!(
            indexes(&store).iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![10, 11]
        );
    }

    #[test]
    fn the_vote_gate_is_kept_and_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let reopened = || open(dir.path()).unwrap();
        assert_eq!(reopened().vote_gate().unwrap(), None);
        reopened().set_vote_gate(Some(42)).unwrap();
        assert_eq!(reopened().vote_gate().unwrap(), Some(42));
        reopened().set_vote_gate(None).unwrap();
        assert_eq!(reopened().vote_gate().unwrap(), None);
    }

    #[test]
    fn the_vote_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut store = open(dir.path()).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), None);
            let v = Vote::new(3, 2);
            store.save_vote(&v).await.unwrap();
            drop(store);
            let mut store = open(dir.path()).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), Some(v));
        });
    }
}
