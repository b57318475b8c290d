//! The state machine: the node's storage, written only by applying committed entries.
//!
//! # Files (in the state machine's directory)
//!
//! - `applied`: what the storage holds, a frame (`frame.rs`, magic `VRRAFTAP`) rewritten in
//!   place: the last entry applied, the membership as of it, and, while a batch of entries
//!   is being applied, the last entry of that batch (`applying`).
//! - `snapshot-<id>.data` and `snapshot.meta`: the latest snapshot (the applier's archive of
//!   the whole storage) and its description (last entry, membership, id), a frame (magic
//!   `VRRAFTSN`) replaced atomically after the archive is durable.
//!
//! # Why `applying`
//!
//! The storage's own log and `applied` are two files: a crash between applying an entry and
//! recording it would make the next start apply it a second time, and a write whose effect
//! depends on the state (a payload change by filter, a conditional upsert) is not always the
//! same applied twice. So `applied` is marked with the batch's end before the batch touches
//! the storage, and cleared once the storage has made the batch durable. A start that finds
//! the mark (or a damaged `applied`) does not know which entries of the batch the storage
//! holds: it restores the latest snapshot (or an empty storage when there is none) and
//! applies the log again from there. The log always holds every entry after the latest
//! snapshot (openraft purges only what a snapshot covers).

use crate::{blocking, frame, io_error, Blob, Node, NodeId, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const APPLIED_MAGIC: [u8; 8] = *b"VRRAFTAP";
const SNAPSHOT_MAGIC: [u8; 8] = *b"VRRAFTSN";

/// What the state machine applies commands to: the binary's storage.
pub trait Applier: Send + Sync + 'static {
    /// Applies the command of entry `index`; its answer. A command that fails for what it
    /// asks (a missing collection, a bad vector) answers its error: it fails the same way on
    /// every replica. A failure of this replica's own (a disk error) is `Err`: the entry is
    /// not applied here, and the replica stops applying (its next start restores the latest
    /// snapshot and applies the log again) rather than go on without it.
    fn apply(&self, index: u64, command: &[u8]) -> io::Result<Vec<u8>>;
    /// Makes every command applied so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Writes an archive of the whole state to `path` (the state does not change meanwhile:
    /// no command is applied while it runs).
    fn snapshot(&self, path: &Path) -> io::Result<()>;
    /// Replaces the whole state with the archive at `path`, or with an empty state.
    fn restore(&self, path: Option<&Path>) -> io::Result<()>;
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct AppliedState {
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    /// The last entry of the batch being applied, while one is.
    applying: Option<u64>,
}

struct Inner<A> {
    applier: Arc<A>,
    dir: PathBuf,
    /// Held while a batch is applied, while a snapshot is built, installed or opened: a
    /// snapshot is the state as of exactly its last entry, and one snapshot's files are
    /// never replaced while another is being published or read.
    state: Mutex<AppliedState>,
    /// The last entry the published snapshot covers, plus one (0: none): the log may drop
    /// entries only up to it (`LogStore::purge`), so that a start after a crash always finds
    /// the entries after the snapshot it restores.
    published: Arc<AtomicU64>,
    /// Numbers the files snapshots are received into.
    incoming: AtomicU64,
}

/// The state machine of one replica (cheap to clone: clones share the state).
pub struct StateMachine<A> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for StateMachine<A> {
    fn clone(&self) -> Self {
        StateMachine {
            inner: self.inner.clone(),
        }
    }
}

fn sm_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    io_error(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}

fn snapshot_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
}

impl<A: Applier> StateMachine<A> {
    /// Opens the state machine in `dir` over `applier`'s state. `fresh` says the state is
    /// empty: a state machine with no record of what it applied refuses a state that is not
    /// (it cannot know which entries it holds).
    pub fn open(dir: &Path, applier: Arc<A>, fresh: bool) -> io::Result<StateMachine<A>> {
        persist::create_dir_durable(dir)?;
        let applied_path = dir.join("applied");
        let found: io::Result<Option<AppliedState>> = frame::read(&applied_path, &APPLIED_MAGIC);
        let sm = StateMachine {
            inner: Arc::new(Inner {
                applier,
                dir: dir.to_path_buf(),
                state: Mutex::new(AppliedState::default()),
                published: Arc::new(AtomicU64::new(0)),
                incoming: AtomicU64::new(0),
            }),
        };
        if let Some((meta, _)) = sm.current_snapshot()? {
            sm.inner.published.store(
                meta.last_log_id.map_or(0, |l| l.index + 1),
                Ordering::Release,
            );
        }
        let state = match found {
            Ok(Some(s)) if s.applying.is_none() => s,
            // A fresh state with snapshots of its own (its record removed by hand): the
            // latest is restored, since the log may be purged behind it.
            Ok(None) if fresh => sm.restore_latest()?,
            Ok(None) => {
                return Err(io::Error::other(format!(
                    "the storage holds collections but {} has no record of what was applied to \
                     it: a replica starts on an empty storage (or on its own replication \
                     directory)",
                    dir.display()
                )))
            }
            Ok(Some(s)) => {
                tracing::warn!(applied = ?s.applied, applying = ?s.applying, "a batch of raft entries was being applied when the node stopped: restoring the latest snapshot and applying the log again");
                sm.restore_latest()?
            }
            Err(e) => {
                tracing::warn!(error = %e, "the record of applied raft entries is damaged: restoring the latest snapshot and applying the log again");
                sm.restore_latest()?
            }
        };
        frame::write(&applied_path, &APPLIED_MAGIC, &state)?;
        *sm.lock() = state;
        Ok(sm)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AppliedState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state as of the latest snapshot, restored into the applier (or an empty one).
    fn restore_latest(&self) -> io::Result<AppliedState> {
        match self.current_snapshot()? {
            Some((meta, path)) => {
                self.inner.applier.restore(Some(&path))?;
                Ok(AppliedState {
                    applied: meta.last_log_id,
                    membership: meta.last_membership,
                    applying: None,
                })
            }
            None => {
                self.inner.applier.restore(None)?;
                Ok(AppliedState::default())
            }
        }
    }

    fn current_snapshot(&self) -> io::Result<Option<(SnapshotMeta<NodeId, Node>, PathBuf)>> {
        let meta: Option<SnapshotMeta<NodeId, Node>> =
            frame::read(&self.inner.dir.join("snapshot.meta"), &SNAPSHOT_MAGIC)?;
        Ok(meta.map(|m| {
            let path = self.data_path(&m.snapshot_id);
            (m, path)
        }))
    }

    /// The received file with this inode; other received files (streams given up on) go.
    fn incoming_file(&self, inode: u64) -> io::Result<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let mut found = None;
        for e in std::fs::read_dir(&self.inner.dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("snapshot-incoming-") && name.ends_with(".part") {
                if e.metadata()?.ino() == inode {
                    found = Some(e.path());
                } else {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        found.ok_or_else(|| io::Error::other("the received snapshot's file is gone"))
    }

    fn data_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("snapshot-{id}.data"))
    }

    /// The handle `LogStore::open` takes: how far the log may be purged.
    pub fn purge_limit(&self) -> Arc<AtomicU64> {
        self.inner.published.clone()
    }

    /// Makes `meta` (whose archive is at `data_path(meta.snapshot_id)`, durable) the current
    /// snapshot, and removes older archives. Called with the state lock held.
    fn publish(&self, meta: &SnapshotMeta<NodeId, Node>) -> io::Result<()> {
        frame::write(&self.inner.dir.join("snapshot.meta"), &SNAPSHOT_MAGIC, meta)?;
        self.inner.published.store(
            meta.last_log_id.map_or(0, |l| l.index + 1),
            Ordering::Release,
        );
        let keep = format!("snapshot-{}.data", meta.snapshot_id);
        for e in std::fs::read_dir(&self.inner.dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snapshot-") && name.ends_with(".data") && name != keep {
                let _ = std::fs::remove_file(self.inner.dir.join(&*name));
            }
        }
        Ok(())
    }

    fn write_applied(&self, state: &AppliedState) -> io::Result<()> {
        // In place, one fsync: a torn write fails the checksum at the next start, which then
        // restores the latest snapshot (as for a batch cut short).
        use std::os::unix::fs::FileExt;
        let bytes = frame::encode(&APPLIED_MAGIC, state)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.inner.dir.join("applied"))?;
        file.write_all_at(&bytes, 0)?;
        persist::sync_file_data(&file)
    }

    fn apply_batch(&self, entries: Vec<Entry<TypeConfig>>) -> io::Result<Vec<Blob>> {
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let mut state = self.lock();
        let mut marked = state.clone();
        marked.applying = Some(last.index);
        self.write_applied(&marked)?;
        let mut answers = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => answers.push(Blob::default()),
                EntryPayload::Normal(command) => answers.push(Blob(
                    self.inner.applier.apply(entry.log_id.index, &command.0)?,
                )),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    answers.push(Blob::default());
                }
            }
            state.applied = Some(entry.log_id);
        }
        self.inner.applier.sync()?;
        state.applying = None;
        self.write_applied(&state)?;
        Ok(answers)
    }

    fn build(&self) -> io::Result<(SnapshotMeta<NodeId, Node>, PathBuf)> {
        let state = self.lock();
        let id = format!(
            "{}-{}-{}",
            state.applied.map_or(0, |l| l.leader_id.term),
            state.applied.map_or(0, |l| l.index),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        let path = self.data_path(&id);
        let tmp = path.with_extension("building");
        self.inner.applier.snapshot(&tmp)?;
        let meta = SnapshotMeta {
            last_log_id: state.applied,
            last_membership: state.membership.clone(),
            snapshot_id: id,
        };
        persist::sync_file(&std::fs::File::open(&tmp)?)?;
        std::fs::rename(&tmp, &path)?;
        persist::sync_dir(&self.inner.dir)?;
        // Still under the lock: an install cannot publish between, and this snapshot is of
        // the state as it is (at least as new as any installed before).
        self.publish(&meta)?;
        drop(state);
        Ok((meta, path))
    }
}

impl<A: Applier> RaftSnapshotBuilder<TypeConfig> for StateMachine<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, path) = blocking(|| self.build()).map_err(snapshot_error)?;
        let file = tokio::fs::File::open(&path).await.map_err(snapshot_error)?;
        tracing::info!(snapshot = %meta.snapshot_id, "raft snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl<A: Applier> RaftStateMachine<TypeConfig> for StateMachine<A> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let s = self.lock();
        Ok((s.applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Blob>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        blocking(|| self.apply_batch(entries)).map_err(sm_error)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<NodeId>> {
        // A file of its own per stream (a new stream may begin before the last one's file
        // is installed), found again at install by its inode.
        let n = self.inner.incoming.fetch_add(1, Ordering::Relaxed);
        let path = self.inner.dir.join(format!("snapshot-incoming-{n}.part"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(snapshot_error)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<NodeId>> {
        snapshot.sync_all().await.map_err(snapshot_error)?;
        let inode = {
            use std::os::unix::fs::MetadataExt;
            snapshot.metadata().await.map_err(snapshot_error)?.ino()
        };
        drop(snapshot);
        let path = self.data_path(&meta.snapshot_id);
        blocking(|| -> io::Result<()> {
            let mut state = self.lock();
            let incoming = self.incoming_file(inode)?;
            std::fs::rename(&incoming, &path)?;
            persist::sync_dir(&self.inner.dir)?;
            // Marked first: a crash while the storage is replaced restores the snapshot
            // published before (this one is published only once restored, so an archive
            // that cannot be restored never replaces it).
            let mut marked = state.clone();
            marked.applying = meta.last_log_id.map(|l| l.index);
            self.write_applied(&marked)?;
            self.inner.applier.restore(Some(&path))?;
            self.publish(meta)?;
            *state = AppliedState {
                applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                applying: None,
            };
            self.write_applied(&state)
        })
        .map_err(snapshot_error)?;
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        // Read and opened under the lock: a snapshot published meanwhile cannot remove the
        // archive between.
        let found = blocking(|| -> io::Result<_> {
            let _state = self.lock();
            match self.current_snapshot()? {
                None => Ok(None),
                Some((meta, path)) => Ok(Some((meta, std::fs::File::open(&path)?))),
            }
        })
        .map_err(snapshot_error)?;
        Ok(found.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::BTreeMap;

    /// A state of strings appended in order, archived as lines.
    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Applier for Lines {
        fn apply(&self, index: u64, command: &[u8]) -> io::Result<Vec<u8>> {
            if command == b"disk error" {
                return Err(io::Error::other("disk error"));
            }
            let mut l = self.0.lock().unwrap();
            l.push(format!("{index}:{}", String::from_utf8_lossy(command)));
            Ok(l.len().to_string().into_bytes())
        }
        fn sync(&self) -> io::Result<()> {
            Ok(())
        }
        fn snapshot(&self, path: &Path) -> io::Result<()> {
            std::fs::write(path, self.0.lock().unwrap().join("\n"))
        }
        fn restore(&self, path: Option<&Path>) -> io::Result<()> {
            let lines = match path {
                Some(p) => std::fs::read_to_string(p)?
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
                None => Vec::new(),
            };
            *self.0.lock().unwrap() = lines;
            Ok(())
        }
    }

    fn normal(index: u64, data: &str) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Blob(data.as_bytes().to_vec())),
        }
    }

    #[test]
    fn applies_snapshots_and_restores_after_a_cut_batch() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let lines = Arc::new(Lines::default());
            let mut sm = StateMachine::open(dir.path(), lines.clone(), true).unwrap();
            let members = Membership::new(
                vec![[1u64].into()],
                BTreeMap::<u64, Node>::from([(1, Node::new("a"))]),
            );
            let m = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 0),
                payload: EntryPayload::Membership(members),
            };
            let answers = sm
                .apply(vec![m, normal(1, "a"), normal(2, "b")])
                .await
                .unwrap();
            assert_eq!(answers[2].0, b"2");
            let snap = sm.build_snapshot().await.unwrap();
            assert_eq!(snap.meta.last_log_id.unwrap().index, 2);
            assert_eq!(sm.purge_limit().load(Ordering::Acquire), 3);
            // A failure of the replica's own stops the batch: nothing recorded as applied.
            assert!(sm.apply(vec![normal(3, "disk error")]).await.is_err());
            let (applied, _) = sm.applied_state().await.unwrap();
            assert_eq!(applied.unwrap().index, 2);
            sm.apply(vec![normal(3, "c")]).await.unwrap();
            drop(sm);

            // A clean restart keeps what was applied.
            let lines2 = Arc::new(Lines::default());
            let mut sm = StateMachine::open(dir.path(), lines2.clone(), false).unwrap();
            let (applied, membership) = sm.applied_state().await.unwrap();
            assert_eq!(applied.unwrap().index, 3);
            assert_eq!(membership.log_id().unwrap().index, 0);
            // (lines2 is the "storage" of the restarted process: it kept its own data, so the
            // test state is not restored, and stays empty.)
            assert!(lines2.0.lock().unwrap().is_empty());

            // A batch cut by a crash: the mark is there at the next start, which restores the
            // snapshot (entries 1 and 2) and reports entry 2 as the last applied.
            let mut marked: AppliedState = frame::read(&dir.path().join("applied"), &APPLIED_MAGIC)
                .unwrap()
                .unwrap();
            marked.applying = Some(5);
            sm.write_applied(&marked).unwrap();
            drop(sm);
            let lines3 = Arc::new(Lines::default());
            let mut sm = StateMachine::open(dir.path(), lines3.clone(), false).unwrap();
            assert_eq!(
                *lines3.0.lock().unwrap(),
                vec!["1:a".to_string(), "2:b".to_string()]
            );
            let (applied, _) = sm.applied_state().await.unwrap();
            assert_eq!(applied.unwrap().index, 2);
            assert!(sm.get_current_snapshot().await.unwrap().is_some());
            assert_eq!(sm.purge_limit().load(Ordering::Acquire), 3);
        });
    }

    #[test]
    fn a_full_storage_without_a_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StateMachine::open(dir.path(), Arc::new(Lines::default()), false).is_err());
        assert!(StateMachine::open(dir.path(), Arc::new(Lines::default()), true).is_ok());
    }
}
