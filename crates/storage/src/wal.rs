//! The write-ahead log: a segmented, checksummed, group-committed log of opaque records.
//!
//! Every change is appended here before it touches a segment, so that a crash loses nothing
//! that [`Wal::sync`] acknowledged. Records get contiguous sequence numbers starting at 1;
//! they never go backwards, not even after [`Wal::truncate_through`] dropped old segments.
//!
//! ```
//! use storage::wal::{Wal, WalOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
//! let first = wal.append(b"upsert 1").unwrap();
//! let second = wal.append(b"upsert 2").unwrap();
//! wal.sync(second).unwrap(); // both records are durable now
//! assert_eq!((first, second), (1, 2));
//! drop(wal);
//!
//! let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
//! let mut seen = Vec::new();
//! wal.replay(1, |seq, body| {
//!     seen.push((seq, body.to_vec()));
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(seen, vec![(2, b"upsert 2".to_vec())]);
//! assert_eq!(wal.append(b"upsert 3").unwrap(), 3);
//! ```
//!
//! # Files
//!
//! The log lives in one directory as segment files `wal-<first seq, 20 digits>.log`, plus a
//! `LOCK` file that keeps a second handle from writing the same log. Only the last segment (the
//! *active* one) is written; when a record would push it past [`WalOptions::segment_bytes`] it
//! is fsynced and sealed, and a new segment starts with the next sequence number.
//!
//! A segment opens with a 24-byte header (integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"VRWAL\0\0\0"` |
//! | 8 | 4 | format version (`u32`, currently [`FORMAT_VERSION`]) |
//! | 12 | 8 | sequence number of the segment's first record (`u64`, equal to the file name's) |
//! | 20 | 4 | CRC-32 (IEEE) of bytes `0 .. 20` |
//!
//! then records back to back, each:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | body length `n` (`u32`, at most [`MAX_RECORD_BODY`]) |
//! | 4 | 4 | CRC-32 (IEEE) of the sequence number's 8 bytes followed by the body |
//! | 8 | 8 | sequence number (`u64`) |
//! | 16 | n | body |
//!
//! A segment is created under a temporary name, its header fsynced, then renamed into place and
//! the directory fsynced, so a segment file with a proper name always has a whole header.
//!
//! # Recovery
//!
//! [`Wal::open`] reads and verifies every record. A crash in the middle of an append can only
//! damage the end of the last segment (a segment is fsynced before the next one is created), so
//! a bad record there — too short, failing its checksum, or zeros to the end of the file — is a
//! torn write: the file is truncated where it starts. Anywhere else a bad record means the disk
//! lost data the log had acknowledged, and opening fails with [`StorageError::Corrupt`] naming
//! the file and the offset. "Anywhere else" includes a bad record in the last segment that is
//! followed by a valid one: to tell the two apart, recovery searches the rest of the file, byte
//! by byte, for a record that passes its checksum and carries a plausible sequence number.
//!
//! # Group commit
//!
//! [`Wal::append`] hands the record to the operating system and returns; [`Wal::sync`] makes it
//! durable. One caller at a time runs `fsync`, covering everything appended before it started;
//! callers that arrive meanwhile wait, and those whose records the running `fsync` covered return
//! without one of their own, so many writers share each disk flush.

use crate::{Result, StorageError};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The magic bytes that open every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"VRWAL\0\0\0";
/// The segment format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The largest record body [`Wal::append`] accepts (256 MiB); recovery treats a larger length
/// as damage, so a corrupt length field cannot make it read or allocate gigabytes.
pub const MAX_RECORD_BODY: usize = 256 << 20;
/// The smallest [`WalOptions::segment_bytes`] accepted.
pub const MIN_SEGMENT_BYTES: u64 = 1024;

const SEGMENT_HEADER_LEN: u64 = 24;
const RECORD_HEADER_LEN: u64 = 16;
const LOCK_FILE_NAME: &str = "LOCK";
/// Read buffer for recovery and replay: large enough that a scan is bound by the disk.
const READ_BUFFER: usize = 1 << 20;
/// The append buffer is kept between calls to avoid an allocation per record, but not when a
/// huge record grew it: a 256 MiB body must not pin 256 MiB for the life of the log.
const KEPT_APPEND_BUFFER: usize = 1 << 20;

/// How the log is laid out on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalOptions {
    /// Size in bytes past which the active segment is sealed and a new one started (default
    /// 32 MiB, at least [`MIN_SEGMENT_BYTES`]). A record larger than this gets a segment of its
    /// own. Smaller segments let [`Wal::truncate_through`] free space sooner.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 32 << 20,
        }
    }
}

impl WalOptions {
    /// Checks the options, before anything touches the disk.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(StorageError::InvalidInput(format!(
                "WAL segment_bytes is {}, the minimum is {MIN_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        Ok(())
    }
}

/// A segmented, checksummed, group-committed write-ahead log (see the [module docs](self)).
///
/// All methods take `&self`; the log is `Send + Sync` and meant to be shared (in an `Arc`) by
/// every writer of a shard.
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// Segments, sequence numbers and the write position. Held while a record is written, never
    /// while a record is fsynced, so appends go on during a flush.
    inner: Mutex<Inner>,
    /// Group-commit state; taken after `inner` or alone, never the other way round.
    durability: Mutex<Durability>,
    /// Signalled whenever `durability` changes.
    durability_changed: Condvar,
    fsyncs: AtomicU64,
    /// Holds the advisory lock on `LOCK` for as long as the log is open.
    _lock: File,
}

struct Inner {
    /// Sealed segments, oldest first; each holds at least one record.
    sealed: VecDeque<SealedSegment>,
    active: ActiveSegment,
    /// The sequence number the next append gets.
    next_seq: u64,
    /// Bytes in all segment files.
    total_bytes: u64,
    /// Set when a write could not be undone or an fsync failed: the kernel may have dropped the
    /// dirty pages, so the log can no longer promise anything and refuses further work.
    failure: Option<String>,
    append_buffer: Vec<u8>,
}

struct SealedSegment {
    path: PathBuf,
    first_seq: u64,
    last_seq: u64,
    len: u64,
}

struct ActiveSegment {
    path: PathBuf,
    /// Shared with a `sync` that fsyncs outside the `inner` lock.
    file: Arc<File>,
    first_seq: u64,
    len: u64,
}

#[derive(Default)]
struct Durability {
    /// Every record with a sequence number up to this one is on stable storage.
    durable_seq: u64,
    /// Someone is running an fsync; others wait for its outcome instead of starting their own.
    flushing: bool,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`.
    ///
    /// Recovery reads every segment in order and verifies each record. A torn or corrupt record
    /// at the tail of the last segment (a crash mid-write: a short record, a bad checksum, or
    /// zeros to the end) is cut off: the file is truncated there and fsynced. A bad record
    /// anywhere else (an earlier segment, or followed by a valid record later in the last
    /// segment), a bad segment header, or a gap in the sequence numbers fails with
    /// [`StorageError::Corrupt`] naming the file and the offset.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal> {
        options.validate()?;
        persist::create_dir_durable(dir).map_err(|e| StorageError::io(dir, e))?;
        let lock = lock_directory(dir)?;
        let fsyncs = AtomicU64::new(0);

        let mut segment_files = Vec::new();
        let mut removed_leftovers = false;
        for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first_seq) = parse_segment_file_name(name) {
                segment_files.push((first_seq, entry.path()));
            } else if name.starts_with("wal-") && name.ends_with(".log.tmp") {
                // A crash while a segment was being created; it never held a record.
                fs::remove_file(entry.path()).map_err(|e| StorageError::io(entry.path(), e))?;
                removed_leftovers = true;
            }
        }
        if removed_leftovers {
            sync_directory(dir, &fsyncs)?;
        }
        segment_files.sort();

        let mut sealed = VecDeque::new();
        let mut total_bytes = 0;
        let mut active = None;
        let mut expected_first_seq = None;
        let segment_count = segment_files.len();
        for (index, (name_first_seq, path)) in segment_files.into_iter().enumerate() {
            let is_last = index + 1 == segment_count;
            let file = OpenOptions::new()
                .read(true)
                .write(is_last)
                .open(&path)
                .map_err(|e| StorageError::io(&path, e))?;
            let scan = scan_segment(&path, &file, name_first_seq)?;
            if let Some(expected) = expected_first_seq {
                if scan.first_seq != expected {
                    return Err(StorageError::corrupt(
                        &path,
                        format!(
                            "segment starts at seq {} but the previous one ends at seq {}: \
                             records are missing",
                            scan.first_seq,
                            expected - 1
                        ),
                    ));
                }
            }
            let mut len = scan.file_len;
            if let Some(damage) = scan.damage {
                if !is_last {
                    return Err(StorageError::corrupt(
                        &path,
                        format!("offset {}: {}", damage.offset, damage.reason),
                    ));
                }
                if let Some(valid_at) =
                    find_valid_record(&path, &file, damage.offset + 1, len, scan.next_seq)?
                {
                    return Err(StorageError::corrupt(
                        &path,
                        format!(
                            "offset {}: {}, yet a valid record follows at offset {valid_at}",
                            damage.offset, damage.reason
                        ),
                    ));
                }
                tracing::warn!(
                    path = %path.display(),
                    offset = damage.offset,
                    reason = %damage.reason,
                    lost_bytes = len - damage.offset,
                    "cutting a torn record off the end of the write-ahead log"
                );
                file.set_len(damage.offset)
                    .map_err(|e| StorageError::io(&path, e))?;
                persist::sync_file(&file).map_err(|e| StorageError::io(&path, e))?;
                fsyncs.fetch_add(1, Ordering::Relaxed);
                len = damage.offset;
            }
            total_bytes += len;
            expected_first_seq = Some(scan.next_seq);
            if is_last {
                let mut file = file;
                file.seek(SeekFrom::Start(len))
                    .map_err(|e| StorageError::io(&path, e))?;
                active = Some((
                    ActiveSegment {
                        path,
                        file: Arc::new(file),
                        first_seq: scan.first_seq,
                        len,
                    },
                    scan.next_seq,
                ));
            } else {
                sealed.push_back(SealedSegment {
                    path,
                    first_seq: scan.first_seq,
                    last_seq: scan.next_seq - 1,
                    len,
                });
            }
        }

        let (active, next_seq) = match active {
            Some(found) => found,
            None => {
                let active = create_segment(dir, 1, &fsyncs)?;
                total_bytes += active.len;
                (active, 1)
            }
        };
        // Everything recovery kept was on disk before this process started; without an fsync
        // of its own it may still sit in the page cache of a previous process, so durability
        // starts at zero and the first `sync` flushes it.
        Ok(Wal {
            dir: dir.to_path_buf(),
            options,
            inner: Mutex::new(Inner {
                sealed,
                active,
                next_seq,
                total_bytes,
                failure: None,
                append_buffer: Vec::new(),
            }),
            durability: Mutex::new(Durability::default()),
            durability_changed: Condvar::new(),
            fsyncs,
            _lock: lock,
        })
    }

    /// Calls `f(seq, body)` for every record with `seq > after`, in order, stopping at the first
    /// error `f` returns. Records are verified again as they are read (checksums and contiguous
    /// sequence numbers), so damage since [`Wal::open`] is reported as
    /// [`StorageError::Corrupt`]. Records appended while the replay runs are not included.
    pub fn replay(&self, after: u64, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        // Open the files under the lock and read them without it: appends go on, and a
        // concurrent `truncate_through` unlinking a file does not take it away from an open
        // handle.
        let segments = {
            let inner = self.inner.lock();
            let mut segments = Vec::new();
            let sealed = inner
                .sealed
                .iter()
                .filter(|s| s.last_seq > after)
                .map(|s| (s.path.clone(), s.first_seq, s.len));
            let active = &inner.active;
            let active_has_wanted = inner.next_seq > active.first_seq && inner.next_seq - 1 > after;
            let active =
                active_has_wanted.then(|| (active.path.clone(), active.first_seq, active.len));
            for (path, first_seq, len) in sealed.chain(active) {
                let file = File::open(&path).map_err(|e| StorageError::io(&path, e))?;
                segments.push((path, file, first_seq, len));
            }
            segments
        };

        let mut body = Vec::new();
        let mut expected_seq = None;
        for (path, file, first_seq, len) in segments {
            if let Some(expected) = expected_seq {
                if first_seq != expected {
                    return Err(StorageError::corrupt(
                        &path,
                        format!("segment starts at seq {first_seq}, expected {expected}"),
                    ));
                }
            }
            let mut reader = BufReader::with_capacity(READ_BUFFER, &file);
            let header_first_seq = read_segment_header(&path, &mut reader, len)?;
            if header_first_seq != first_seq {
                return Err(StorageError::corrupt(
                    &path,
                    format!("header names seq {header_first_seq} as first, expected {first_seq}"),
                ));
            }
            let mut offset = SEGMENT_HEADER_LEN;
            let mut next_seq = first_seq;
            while offset < len {
                let left = len - offset;
                let corrupt = |reason: String| {
                    StorageError::corrupt(&path, format!("offset {offset}: {reason}"))
                };
                if left < RECORD_HEADER_LEN {
                    return Err(corrupt(format!("{left} bytes, too short for a record")));
                }
                let mut header_bytes = [0u8; RECORD_HEADER_LEN as usize];
                reader
                    .read_exact(&mut header_bytes)
                    .map_err(|e| StorageError::io(&path, e))?;
                let header = RecordHeader::parse(&header_bytes);
                if let Err(reason) = header.check_length(left) {
                    return Err(corrupt(reason));
                }
                body.resize(header.body_len as usize, 0);
                reader
                    .read_exact(&mut body)
                    .map_err(|e| StorageError::io(&path, e))?;
                if record_crc(header.seq, &body) != header.crc {
                    return Err(corrupt("record checksum mismatch".to_string()));
                }
                if header.seq != next_seq {
                    return Err(corrupt(format!(
                        "record has seq {} where {next_seq} was expected",
                        header.seq
                    )));
                }
                if header.seq > after {
                    f(header.seq, &body)?;
                }
                next_seq += 1;
                offset += header.record_len();
            }
            expected_seq = Some(next_seq);
        }
        Ok(())
    }

    /// Appends a record and returns its sequence number (the first is 1; numbering continues
    /// after the last record on disk and never goes backwards, even after
    /// [`Wal::truncate_through`]). The record is written to the operating system but not
    /// fsynced: call [`Wal::sync`] before acknowledging it.
    ///
    /// A body over [`MAX_RECORD_BODY`] bytes is [`StorageError::InvalidInput`].
    pub fn append(&self, body: &[u8]) -> Result<u64> {
        if body.len() > MAX_RECORD_BODY {
            return Err(StorageError::InvalidInput(format!(
                "a WAL record of {} bytes is over the limit of {MAX_RECORD_BODY}",
                body.len()
            )));
        }
        let record_len = RECORD_HEADER_LEN + body.len() as u64;
        let mut inner = self.inner.lock();
        inner.check_healthy()?;
        let active_has_records = inner.active.len > SEGMENT_HEADER_LEN;
        if active_has_records && inner.active.len + record_len > self.options.segment_bytes {
            self.rotate(&mut inner)?;
        }

        let seq = inner.next_seq;
        let mut buffer = std::mem::take(&mut inner.append_buffer);
        buffer.clear();
        buffer.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buffer.extend_from_slice(&record_crc(seq, body).to_le_bytes());
        buffer.extend_from_slice(&seq.to_le_bytes());
        buffer.extend_from_slice(body);
        let written = (&*inner.active.file).write_all(&buffer);
        buffer.clear();
        buffer.shrink_to(KEPT_APPEND_BUFFER);
        inner.append_buffer = buffer;

        if let Err(error) = written {
            // Part of the record may be in the file; cut it so the next append does not land
            // after garbage (which recovery would rightly call corruption).
            let active = &inner.active;
            let rolled_back = active
                .file
                .set_len(active.len)
                .and_then(|()| (&*active.file).seek(SeekFrom::Start(active.len)).map(drop));
            if let Err(rollback_error) = rolled_back {
                inner.failure = Some(format!(
                    "a failed append could not be undone ({rollback_error}) after: {error}"
                ));
            }
            return Err(StorageError::io(&inner.active.path, error));
        }
        inner.active.len += record_len;
        inner.total_bytes += record_len;
        inner.next_seq += 1;
        Ok(seq)
    }

    /// Returns once every record up to `seq` is durable.
    ///
    /// Group commit: one caller at a time runs the fsync, which covers every record appended
    /// before it started; a caller whose record was covered by someone else's fsync returns
    /// without one of its own. `seq` beyond [`Wal::last_seq`] is [`StorageError::InvalidInput`].
    /// After a failed fsync the log refuses every further `append` and `sync`: the kernel may
    /// have dropped the pages it could not write, so retrying could falsely report success.
    pub fn sync(&self, seq: u64) -> Result<()> {
        let last_seq = self.last_seq();
        if seq > last_seq {
            return Err(StorageError::InvalidInput(format!(
                "cannot sync WAL record {seq}: the last record is {last_seq}"
            )));
        }
        {
            let mut durability = self.durability.lock();
            loop {
                if durability.durable_seq >= seq {
                    return Ok(());
                }
                if !durability.flushing {
                    break;
                }
                self.durability_changed.wait(&mut durability);
            }
            durability.flushing = true;
        }

        let flushed = self.flush_active();
        let mut durability = self.durability.lock();
        durability.flushing = false;
        if let Ok(flushed_through) = flushed {
            durability.durable_seq = durability.durable_seq.max(flushed_through);
        }
        self.durability_changed.notify_all();
        // `flushed_through` >= `seq`: it is at least the last seq, read after `seq` was checked.
        flushed.map(drop)
    }

    /// Fsyncs the active segment; returns the sequence number it made durable.
    fn flush_active(&self) -> Result<u64> {
        let (through, file, path) = {
            let inner = self.inner.lock();
            inner.check_healthy()?;
            // Records before the active segment were fsynced when their segment was sealed.
            (
                inner.next_seq - 1,
                Arc::clone(&inner.active.file),
                inner.active.path.clone(),
            )
        };
        match persist::sync_file_data(&file) {
            Ok(()) => {
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
                Ok(through)
            }
            Err(error) => {
                self.inner.lock().failure =
                    Some(format!("fsync of {} failed: {error}", path.display()));
                Err(StorageError::io(path, error))
            }
        }
    }

    /// Seals the active segment and starts the next one.
    fn rotate(&self, inner: &mut Inner) -> Result<()> {
        // The sealed segment must be durable before its successor exists: recovery forgives a
        // torn record only at the end of the last segment.
        if let Err(error) = persist::sync_file_data(&inner.active.file) {
            let path = inner.active.path.clone();
            inner.failure = Some(format!("fsync of {} failed: {error}", path.display()));
            return Err(StorageError::io(path, error));
        }
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let sealed_through = inner.next_seq - 1;
        {
            let mut durability = self.durability.lock();
            durability.durable_seq = durability.durable_seq.max(sealed_through);
            self.durability_changed.notify_all();
        }

        let next = create_segment(&self.dir, inner.next_seq, &self.fsyncs)?;
        inner.total_bytes += next.len;
        let sealed = std::mem::replace(&mut inner.active, next);
        inner.sealed.push_back(SealedSegment {
            path: sealed.path,
            first_seq: sealed.first_seq,
            last_seq: sealed_through,
            len: sealed.len,
        });
        Ok(())
    }

    /// Deletes the segment files whose records all have `seq <=` the given one, oldest first.
    /// The active segment is kept even when it is fully covered, so numbering continues.
    pub fn truncate_through(&self, seq: u64) -> Result<()> {
        let mut inner = self.inner.lock();
        // Oldest first, each removal made durable before the next: a power cut keeps any
        // subset of the unsynced removals of a directory, and only a suffix of the log is a
        // log without a gap.
        while let Some(oldest) = inner.sealed.front() {
            if oldest.last_seq > seq {
                break;
            }
            fs::remove_file(&oldest.path).map_err(|e| StorageError::io(&oldest.path, e))?;
            inner.total_bytes -= oldest.len;
            inner.sealed.pop_front();
            sync_directory(&self.dir, &self.fsyncs)?;
        }
        Ok(())
    }

    /// The sequence number of the last record appended (0 when none ever was).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().next_seq - 1
    }

    /// Every record up to this one is known to be on stable storage (this handle fsynced
    /// it; 0 right after opening, before the first [`Wal::sync`]).
    pub fn durable_seq(&self) -> u64 {
        self.durability.lock().durable_seq
    }

    /// Drops every record and numbers the next one `seq + 1`: for a log found behind the
    /// state it feeds (every record through `seq` is already applied elsewhere, but the disk
    /// lost the log's copy of the last ones), so that new records never reuse a number that
    /// was applied. `seq` below [`Wal::last_seq`] is [`StorageError::InvalidInput`].
    ///
    /// The old segments are removed newest first, each removal made durable before the next,
    /// and only then is the new one made: a crash part-way leaves a shorter log without a gap
    /// (or an empty one), which the caller's check at open finds behind again.
    pub fn restart_after(&self, seq: u64) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.check_healthy()?;
        if seq < inner.next_seq - 1 {
            return Err(StorageError::InvalidInput(format!(
                "cannot restart the log after record {seq}: it holds records up to {}",
                inner.next_seq - 1
            )));
        }
        let old: Vec<PathBuf> = std::iter::once(inner.active.path.clone())
            .chain(inner.sealed.iter().rev().map(|s| s.path.clone()))
            .collect();
        // Past the first removal the handle no longer matches the files: refuse further work
        // if anything fails from here on.
        let restarted = (|| {
            for path in &old {
                fs::remove_file(path).map_err(|e| StorageError::io(path, e))?;
                sync_directory(&self.dir, &self.fsyncs)?;
            }
            create_segment(&self.dir, seq + 1, &self.fsyncs)
        })();
        let active = match restarted {
            Ok(active) => active,
            Err(e) => {
                inner.failure = Some(format!("restarting the log failed: {e}"));
                return Err(e);
            }
        };
        inner.sealed.clear();
        inner.total_bytes = active.len;
        inner.active = active;
        inner.next_seq = seq + 1;
        let mut durability = self.durability.lock();
        durability.durable_seq = durability.durable_seq.max(seq);
        self.durability_changed.notify_all();
        Ok(())
    }

    /// The smallest sequence number still on disk, `None` when the log holds no record.
    pub fn first_seq(&self) -> Option<u64> {
        let inner = self.inner.lock();
        match inner.sealed.front() {
            Some(oldest) => Some(oldest.first_seq),
            None => (inner.next_seq > inner.active.first_seq).then_some(inner.active.first_seq),
        }
    }

    /// Bytes in all segment files, headers included.
    pub fn size_bytes(&self) -> u64 {
        self.inner.lock().total_bytes
    }

    /// How many fsyncs of segment files and of the directory this handle has run (recovery
    /// included): with [`Wal::sync`] calls counted beside it, this shows how well group commit
    /// batches.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &(inner.sealed.len() + 1))
            .field("last_seq", &(inner.next_seq - 1))
            .field("size_bytes", &inner.total_bytes)
            .field("failure", &inner.failure)
            .finish()
    }
}

impl Inner {
    fn check_healthy(&self) -> Result<()> {
        match &self.failure {
            None => Ok(()),
            Some(reason) => Err(StorageError::io(
                &self.active.path,
                io::Error::other(format!(
                    "the write-ahead log stopped after an error: {reason}"
                )),
            )),
        }
    }
}

/// The fixed part of a record.
struct RecordHeader {
    body_len: u32,
    crc: u32,
    seq: u64,
}

impl RecordHeader {
    fn parse(bytes: &[u8; RECORD_HEADER_LEN as usize]) -> RecordHeader {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        RecordHeader {
            body_len: u32_at(0),
            crc: u32_at(4),
            seq: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        }
    }

    fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN + u64::from(self.body_len)
    }

    /// Whether the record fits in the `left` bytes from its start to the end of the file.
    fn check_length(&self, left: u64) -> std::result::Result<(), String> {
        if self.body_len as usize > MAX_RECORD_BODY {
            return Err(format!(
                "record length {} is over the limit of {MAX_RECORD_BODY}",
                self.body_len
            ));
        }
        if self.record_len() > left {
            return Err(format!(
                "a record of {} bytes runs past the end of the file ({left} bytes left)",
                self.record_len()
            ));
        }
        Ok(())
    }
}

fn record_crc(seq: u64, body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(body);
    crc.finalize()
}

fn segment_file_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Reads and checks a segment header from the start of `reader`; returns its first seq.
fn read_segment_header(path: &Path, reader: &mut impl Read, file_len: u64) -> Result<u64> {
    if file_len < SEGMENT_HEADER_LEN {
        return Err(StorageError::corrupt(
            path,
            format!("{file_len} bytes, shorter than a segment header ({SEGMENT_HEADER_LEN})"),
        ));
    }
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    reader
        .read_exact(&mut header)
        .map_err(|e| StorageError::io(path, e))?;
    if header[0..8] != SEGMENT_MAGIC {
        return Err(StorageError::corrupt(
            path,
            "offset 0: not a WAL segment (bad magic)",
        ));
    }
    let stored_crc = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    if crc32fast::hash(&header[0..20]) != stored_crc {
        return Err(StorageError::corrupt(
            path,
            "offset 0: segment header checksum mismatch",
        ));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(StorageError::corrupt(
            path,
            format!("segment format version {version}, this build reads {FORMAT_VERSION}"),
        ));
    }
    let first_seq = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if first_seq == 0 {
        return Err(StorageError::corrupt(
            path,
            "segment header names seq 0 (seqs start at 1)",
        ));
    }
    Ok(first_seq)
}

/// A bad record found while scanning a segment.
struct Damage {
    offset: u64,
    reason: String,
}

struct SegmentScan {
    first_seq: u64,
    /// One past the last valid record's seq.
    next_seq: u64,
    file_len: u64,
    /// The first bad record, if any; everything before it is valid.
    damage: Option<Damage>,
}

/// Verifies a segment's header and records, streaming (a record body is never held whole).
/// A valid record with the wrong sequence number is an error right away: no torn write makes
/// one. Any other bad record stops the scan and is reported as damage, which only the caller
/// can judge (a torn tail or corruption).
fn scan_segment(path: &Path, file: &File, name_first_seq: u64) -> Result<SegmentScan> {
    let file_len = file
        .metadata()
        .map_err(|e| StorageError::io(path, e))?
        .len();
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let first_seq = read_segment_header(path, &mut reader, file_len)?;
    if first_seq != name_first_seq {
        return Err(StorageError::corrupt(
            path,
            format!("header names seq {first_seq} as first, the file name {name_first_seq}"),
        ));
    }

    let mut offset = SEGMENT_HEADER_LEN;
    let mut next_seq = first_seq;
    let mut chunk = vec![0u8; 64 << 10];
    let damage = loop {
        let left = file_len - offset;
        if left == 0 {
            break None;
        }
        if left < RECORD_HEADER_LEN {
            break Some(Damage {
                offset,
                reason: format!("{left} bytes, too short for a record"),
            });
        }
        let mut header_bytes = [0u8; RECORD_HEADER_LEN as usize];
        reader
            .read_exact(&mut header_bytes)
            .map_err(|e| StorageError::io(path, e))?;
        let header = RecordHeader::parse(&header_bytes);
        if let Err(reason) = header.check_length(left) {
            break Some(Damage { offset, reason });
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header.seq.to_le_bytes());
        let mut body_left = u64::from(header.body_len);
        while body_left > 0 {
            let take = body_left.min(chunk.len() as u64) as usize;
            reader
                .read_exact(&mut chunk[..take])
                .map_err(|e| StorageError::io(path, e))?;
            crc.update(&chunk[..take]);
            body_left -= take as u64;
        }
        if crc.finalize() != header.crc {
            break Some(Damage {
                offset,
                reason: "record checksum mismatch".to_string(),
            });
        }
        if header.seq != next_seq {
            return Err(StorageError::corrupt(
                path,
                format!(
                    "offset {offset}: record has seq {} where {next_seq} was expected",
                    header.seq
                ),
            ));
        }
        next_seq += 1;
        offset += header.record_len();
    };
    Ok(SegmentScan {
        first_seq,
        next_seq,
        file_len,
        damage,
    })
}

/// Looks for a valid record starting anywhere in `from .. end` whose sequence number could
/// follow `min_seq - 1`; returns its offset. Telling a torn tail (nothing valid after the
/// damage) from lost data (a valid record after it) needs this search. Candidates must first
/// pass cheap tests (the length fits, the seq is in the range the remaining bytes allow), so
/// garbage and zeros cost one pass over the bytes and a checksum is rarely computed.
fn find_valid_record(
    path: &Path,
    file: &File,
    from: u64,
    end: u64,
    min_seq: u64,
) -> Result<Option<u64>> {
    let header_len = RECORD_HEADER_LEN as usize;
    let max_seq = min_seq.saturating_add(end.saturating_sub(from) / RECORD_HEADER_LEN);
    let mut window = vec![0u8; READ_BUFFER + header_len];
    let mut window_start = from;
    while window_start + RECORD_HEADER_LEN <= end {
        let filled = (end - window_start).min(window.len() as u64) as usize;
        read_exact_at(file, window_start, &mut window[..filled])
            .map_err(|e| StorageError::io(path, e))?;
        let candidates = filled - header_len + 1;
        for index in 0..candidates {
            let header_bytes = window[index..index + header_len]
                .try_into()
                .expect("16 bytes");
            let header = RecordHeader::parse(header_bytes);
            let offset = window_start + index as u64;
            if header.seq < min_seq || header.seq > max_seq {
                continue;
            }
            if header.check_length(end - offset).is_err() {
                continue;
            }
            if record_checks_out(file, offset, &header).map_err(|e| StorageError::io(path, e))? {
                return Ok(Some(offset));
            }
        }
        window_start += candidates as u64;
    }
    Ok(None)
}

/// Whether the body at `offset` matches the header's checksum.
fn record_checks_out(mut file: &File, offset: u64, header: &RecordHeader) -> io::Result<bool> {
    file.seek(SeekFrom::Start(offset + RECORD_HEADER_LEN))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header.seq.to_le_bytes());
    let mut chunk = vec![0u8; (header.body_len as usize).min(64 << 10)];
    let mut left = header.body_len as usize;
    while left > 0 {
        let take = left.min(chunk.len());
        file.read_exact(&mut chunk[..take])?;
        crc.update(&chunk[..take]);
        left -= take;
    }
    Ok(crc.finalize() == header.crc)
}

fn read_exact_at(mut file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Creates the segment whose first record will be `first_seq`: header written and fsynced
/// under a temporary name, renamed into place, directory fsynced.
fn create_segment(dir: &Path, first_seq: u64, fsyncs: &AtomicU64) -> Result<ActiveSegment> {
    let name = segment_file_name(first_seq);
    let path = dir.join(&name);
    if path.exists() {
        // Never clobber: a file here means the log's own bookkeeping is wrong.
        return Err(StorageError::corrupt(
            &path,
            format!("a segment starting at seq {first_seq} exists already"),
        ));
    }
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(|e| StorageError::io(&temporary, e))?;
    file.write_all(&encode_segment_header(first_seq))
        .and_then(|()| persist::sync_file(&file))
        .map_err(|e| StorageError::io(&temporary, e))?;
    fsyncs.fetch_add(1, Ordering::Relaxed);
    fs::rename(&temporary, &path).map_err(|e| StorageError::io(&path, e))?;
    if let Err(error) = sync_directory(dir, fsyncs) {
        // Undo the rename so a retried rotation does not find the name taken; best effort,
        // the fsync error is the one to report.
        let _ = fs::remove_file(&path);
        return Err(error);
    }
    Ok(ActiveSegment {
        path,
        file: Arc::new(file),
        first_seq,
        len: SEGMENT_HEADER_LEN,
    })
}

/// Makes file creations, renames and deletions in `dir` durable.
fn sync_directory(dir: &Path, fsyncs: &AtomicU64) -> Result<()> {
    persist::sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    if cfg!(unix) {
        fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Takes an exclusive advisory lock on `dir/LOCK`, released when the returned file closes
/// (or the process dies): two handles appending to one log would interleave sequence numbers.
fn lock_directory(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StorageError::io(
            &path,
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the write-ahead log is already open (by this or another process)",
            ),
        )),
        Err(fs::TryLockError::Error(error)) if error.kind() == io::ErrorKind::Unsupported => {
            tracing::warn!(path = %path.display(), "file locks unsupported here; WAL not locked");
            Ok(file)
        }
        Err(fs::TryLockError::Error(error)) => Err(StorageError::io(&path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_reject_lookalikes() {
        assert_eq!(segment_file_name(42), "wal-00000000000000000042.log");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "wal-42.log",
            "wal-0000000000000000004x.log",
            "wal-00000000000000000042.log.tmp",
            "wal-99999999999999999999.log",
            "LOCK",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_header_detects_every_flipped_byte() {
        let header = encode_segment_header(7);
        assert_eq!(
            read_segment_header(Path::new("x"), &mut &header[..], 24).unwrap(),
            7
        );
        for at in 0..header.len() {
            let mut bad = header;
            bad[at] ^= 0x01;
            let error = read_segment_header(Path::new("x"), &mut &bad[..], 24).unwrap_err();
            assert!(
                matches!(error, StorageError::Corrupt { .. }),
                "byte {at}: {error}"
            );
        }
    }

    #[test]
    fn options_below_the_minimum_are_rejected() {
        let options = WalOptions {
            segment_bytes: MIN_SEGMENT_BYTES - 1,
        };
        assert!(matches!(
            options.validate(),
            Err(StorageError::InvalidInput(_))
        ));
        assert!(WalOptions::default().validate().is_ok());
        let parsed: WalOptions = serde_json::from_str(r#"{"segment_bytes": 4096}"#).unwrap();
        assert_eq!(parsed.segment_bytes, 4096);
        assert!(serde_json::from_str::<WalOptions>(r#"{"segment_size": 4096}"#).is_err());
    }
}
