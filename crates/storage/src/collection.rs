//! A durable collection: its config, its write-ahead log, its local shards and the
//! background thread that indexes, checkpoints and syncs.
//!
//! # Write path
//! Under the collection's write lock an update is validated, its filter (if any) resolved to
//! ids, given the next sequence number, appended to the log and applied to every shard (the
//! shards not concerned only advance their sequence number). The lock is then released and,
//! unless the collection syncs on an interval or the caller does not wait, the caller waits
//! for the log to reach the disk: concurrent writers share one fsync. An update is
//! acknowledged only after that, and a crash before it loses only unacknowledged updates.
//!
//! One log for all of a collection's shards makes a batch atomic across shards: after a
//! crash it is replayed whole or, if its record is torn, not at all.
//!
//! # Files
//! ```text
//! <dir>/config.json           the CreateCollection body, as sent (JSON)
//! <dir>/payload_indexes.json  [[field, schema], ...]
//! <dir>/wal/                  the log (see `wal`)
//! <dir>/shard-<k>/            each shard's checkpoint and graph files (see `shard`)
//! ```

use crate::config::{
    CollectionConfig, SparseModifier, SparseVectorParams, VectorParams, VectorsConfig,
};
use crate::multi::MultiVector;
use crate::ops::{Operation, PointWrite};
use crate::shard::{sync_dir, write_atomically};
use crate::shard::{
    LocalShard, MultiColumn, Record, ScoredPoint, ScrollPage, SearchRequest, ShardSettings,
    VectorSelector,
};
use crate::sparse::SparseVector;
use crate::wal::{Wal, WalOptions};
use crate::{Result, StorageError};
use index_core::{merge_top_k, PointId};
use parking_lot::{Condvar, Mutex, RwLock};
use payload::{Filter, KeyPath, Payload, PayloadSelector};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The largest payload one point may carry, serialised.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Which points an update touches.
#[derive(Debug, Clone)]
pub enum PointSelector {
    /// These ids.
    Ids(Vec<PointId>),
    /// The points matching a filter when the update is applied.
    Filter(Arc<Filter>),
}

/// An update, as the API asks for it.
#[derive(Debug, Clone)]
pub enum Update {
    /// Insert or replace points. Vectors are checked and prepared here.
    Upsert(Vec<PointWrite>),
    /// Delete points.
    Delete(PointSelector),
    /// Merge keys into payloads (or into the object at `key`).
    SetPayload {
        /// Keys to set.
        payload: Payload,
        /// Points.
        selector: PointSelector,
        /// Nested path.
        key: Option<String>,
    },
    /// Replace payloads.
    OverwritePayload {
        /// The payload.
        payload: Payload,
        /// Points.
        selector: PointSelector,
    },
    /// Delete payload keys.
    DeletePayload {
        /// Key paths.
        keys: Vec<String>,
        /// Points.
        selector: PointSelector,
    },
    /// Remove payloads.
    ClearPayload(PointSelector),
    /// Insert or replace points, only those `mode` and `filter` allow: a point that exists is
    /// replaced only when it passes `filter` (and `mode` is not `InsertOnly`); a new one is
    /// inserted unless `mode` is `UpdateOnly`.
    ConditionalUpsert {
        /// The points.
        points: Vec<PointWrite>,
        /// Which points may be written.
        mode: UpsertMode,
        /// What an existing point must pass to be replaced.
        filter: Option<Arc<Filter>>,
    },
    /// Replace some named vectors of existing points, keeping their other vectors and their
    /// payload (the `payload` of each `PointWrite` is ignored); only points passing `filter`.
    /// An id that does not exist is reported after the others are written.
    UpdateVectors {
        /// Each point's new vectors.
        points: Vec<PointWrite>,
        /// What a point must pass to be updated.
        filter: Option<Arc<Filter>>,
    },
    /// Remove named vectors from points, keeping the rest.
    DeleteVectors {
        /// Points.
        selector: PointSelector,
        /// Vector names.
        names: Vec<String>,
    },
    /// Updates applied in order, atomically (`/points/batch`): each is resolved against what
    /// the ones before it left, and all of them are logged as one record. When one names a
    /// point that does not exist (where a single update would report it), nothing is applied.
    Batch(Vec<Update>),
}

impl Update {
    /// How many points the update carries (what its size is bounded by).
    fn point_count(&self) -> usize {
        match self {
            Update::Upsert(points)
            | Update::ConditionalUpsert { points, .. }
            | Update::UpdateVectors { points, .. } => points.len(),
            Update::Delete(s)
            | Update::ClearPayload(s)
            | Update::SetPayload { selector: s, .. }
            | Update::OverwritePayload { selector: s, .. }
            | Update::DeletePayload { selector: s, .. }
            | Update::DeleteVectors { selector: s, .. } => match s {
                PointSelector::Ids(ids) => ids.len(),
                PointSelector::Filter(_) => 0,
            },
            Update::Batch(updates) => updates.iter().map(Update::point_count).sum(),
        }
    }
}

/// The most updates one batch may hold.
pub const MAX_BATCH_OPERATIONS: usize = 1_000;

/// Which points an upsert may write (Qdrant's `update_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpsertMode {
    /// Insert new points and replace existing ones.
    #[default]
    Upsert,
    /// Only insert points that do not exist.
    InsertOnly,
    /// Only replace points that exist.
    UpdateOnly,
}

/// Points rewritten whole from their stored form: a vector update is logged and applied as
/// an upsert of the point with its other vectors and its payload, so replaying the log needs
/// nothing but the record. An id met twice is edited again from its pending form.
#[derive(Default)]
struct Rewrites {
    points: Vec<PointWrite>,
    at: std::collections::HashMap<PointId, usize>,
}

impl Rewrites {
    /// Edits the vectors of point `id`, as `view` sees it (skipped when it does not exist).
    fn edit(&mut self, view: &Pending<'_>, id: PointId, f: impl FnOnce(&mut PointWrite)) {
        let k = match self.at.get(&id) {
            Some(&k) => k,
            None => {
                let Some(point) = view.point(id) else {
                    return;
                };
                self.points.push(point);
                self.at.insert(id, self.points.len() - 1);
                self.points.len() - 1
            }
        };
        f(&mut self.points[k]);
    }
}

/// The collection as the updates resolved so far in a batch leave it: the stored points,
/// overlaid with the points those updates wrote (`None`: deleted). Outside a batch the
/// overlay stays empty and every question goes to the shards.
struct Pending<'a> {
    shards: &'a [Arc<LocalShard>],
    written: std::collections::HashMap<PointId, Option<PointWrite>>,
}

/// A pending point seen by a filter.
struct PendingView<'a>(&'a PointWrite);

impl payload::PointView for PendingView<'_> {
    fn id(&self) -> PointId {
        self.0.id
    }
    fn payload(&self) -> Option<&Payload> {
        Some(&self.0.payload)
    }
    fn has_vector(&self, name: &str) -> bool {
        self.0.vectors.iter().any(|(n, _)| n == name)
            || self.0.sparse.iter().any(|(n, _)| n == name)
            || self.0.multi.iter().any(|(n, _)| n == name)
    }
}

impl<'a> Pending<'a> {
    fn new(shards: &'a [Arc<LocalShard>]) -> Pending<'a> {
        Pending {
            shards,
            written: Default::default(),
        }
    }

    fn shard(&self, id: &PointId) -> &LocalShard {
        &self.shards[shard_of(id, self.shards.len())]
    }

    fn exists(&self, id: PointId) -> bool {
        match self.written.get(&id) {
            Some(p) => p.is_some(),
            None => !self.shard(&id).existing(&[id]).is_empty(),
        }
    }

    /// Whether point `id` passes `filter` (`None`: it does not exist).
    fn matches(&self, id: PointId, filter: Option<&Filter>) -> Option<bool> {
        match self.written.get(&id) {
            Some(p) => p
                .as_ref()
                .map(|p| filter.is_none_or(|f| f.matches(&PendingView(p)))),
            None => self.shard(&id).point_matches(id, filter),
        }
    }

    /// The points passing `filter`, in id order.
    fn matching_ids(&self, filter: &Filter) -> Vec<PointId> {
        let mut all: Vec<PointId> = self
            .shards
            .iter()
            .flat_map(|s| s.matching_ids(Some(filter)))
            .filter(|id| !self.written.contains_key(id))
            .collect();
        all.extend(self.written.iter().filter_map(|(id, p)| {
            p.as_ref()
                .is_some_and(|p| filter.matches(&PendingView(p)))
                .then_some(*id)
        }));
        all.sort();
        all
    }

    /// Point `id` whole: its vectors and its payload.
    fn point(&self, id: PointId) -> Option<PointWrite> {
        if let Some(p) = self.written.get(&id) {
            return p.clone();
        }
        let r = self
            .shard(&id)
            .retrieve(&[id], &PayloadSelector::All, &VectorSelector::All)
            .pop()?;
        Some(PointWrite {
            id,
            vectors: r.vectors.unwrap_or_default(),
            payload: r.payload.unwrap_or_default(),
            sparse: r.sparse,
            multi: r.multi,
        })
    }

    /// Records what `op` leaves of the points it touches, for the updates after it.
    fn absorb(&mut self, op: &Operation) {
        match op {
            Operation::Upsert(points) => {
                for p in points {
                    self.written.insert(p.id, Some(p.clone()));
                }
            }
            Operation::Delete(ids) => {
                for &id in ids {
                    self.written.insert(id, None);
                }
            }
            Operation::SetPayload { ids, payload, key } => {
                let key = key.as_deref().and_then(|k| KeyPath::parse(k).ok());
                self.edit(ids, |p| {
                    let _ = payload::set_payload(p, payload, key.as_ref());
                });
            }
            Operation::OverwritePayload { ids, payload } => {
                self.edit(ids, |p| *p = payload.clone())
            }
            Operation::DeletePayload { ids, keys } => {
                let keys: Vec<KeyPath> =
                    keys.iter().filter_map(|k| KeyPath::parse(k).ok()).collect();
                self.edit(ids, |p| payload::delete_keys(p, &keys));
            }
            Operation::ClearPayload(ids) => self.edit(ids, |p| p.clear()),
            Operation::Batch(ops) => ops.iter().for_each(|o| self.absorb(o)),
        }
    }

    fn edit(&mut self, ids: &[PointId], f: impl Fn(&mut Payload)) {
        for &id in ids {
            if let Some(mut p) = self.point(id) {
                f(&mut p.payload);
                self.written.insert(id, Some(p));
            }
        }
    }
}

/// What `GET /collections/{name}` reports, besides the config.
#[derive(Debug, Clone)]
pub struct CollectionStats {
    /// Live points.
    pub points: usize,
    /// Points whose vectors are in an index.
    pub indexed_points: usize,
    /// Segments over all shards.
    pub segments: usize,
    /// Whether the optimizer has work waiting or running.
    pub optimizing: bool,
    /// The optimizer's last error, if its last run failed.
    pub optimizer_error: Option<String>,
    /// Bytes of log on disk.
    pub wal_bytes: u64,
    /// Bytes of vectors and codes held by indexed segments (RAM and memory-mapped).
    pub index_vector_bytes: usize,
    /// The part of `index_vector_bytes` served from file maps (`on_disk` vectors).
    pub index_vector_bytes_on_disk: usize,
}

struct Background {
    stop: bool,
    /// Work may be waiting (a segment was sealed).
    kick: bool,
}

/// A durable collection.
pub struct Collection {
    name: String,
    dir: PathBuf,
    config: RwLock<CollectionConfig>,
    wal: Wal,
    shards: Vec<Arc<LocalShard>>,
    write_lock: Mutex<()>,
    index_defs: Mutex<Vec<(String, Value)>>,
    signal: Arc<(Mutex<Background>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Fsyncs the log on the `fsync_interval_ms` policy, on a thread of its own so that an
    /// optimizer step of minutes does not stretch the interval.
    sync_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Stops the sync thread (its own, so that kicks for the optimizer do not wake it).
    sync_stop: Arc<(Mutex<bool>, Condvar)>,
    pool: rayon::ThreadPool,
    optimizing: AtomicBool,
    optimizer_error: Mutex<Option<String>>,
    /// Highest sequence number written but maybe not yet fsynced.
    unsynced: AtomicU64,
    /// When the last update was applied, in milliseconds since `opened`.
    last_write_ms: AtomicU64,
    opened: Instant,
    /// Bumped by every change of the named vectors: an update checked against the vectors
    /// before one is checked again (see [`Collection::update`]).
    vectors_epoch: AtomicU64,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collection")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish()
    }
}

/// What the shards of a collection with `config` work by.
fn shard_settings(config: &CollectionConfig) -> ShardSettings {
    ShardSettings {
        vectors: config.effective_vectors(),
        indexing_threshold: config.indexing_threshold_points(),
        max_segment_points: config.max_segment_points(),
        segment_target: config.segment_target(),
        vacuum: config.vacuum_thresholds(),
        sparse: config.sparse_names(),
        multi: config
            .multivectors()
            .into_iter()
            .map(|(name, p, indexed)| MultiColumn {
                encodings: indexed.then(|| {
                    (
                        crate::config::fde_column(&name),
                        Arc::new(crate::multi::Fde::new(p.size)),
                    )
                }),
                name,
                dim: p.size,
                metric: p.distance.metric(),
                half: p.datatype.as_deref() == Some("float16"),
            })
            .collect(),
    }
}

/// The most bytes a vector's name may have when it is created on an existing collection.
pub const MAX_NEW_VECTOR_NAME_BYTES: usize = 200;

/// Checks the name of a vector to create as Qdrant does (it keeps vectors in directories
/// named after them): at most 200 bytes, none of the characters file systems refuse.
fn validate_new_vector_name(name: &str) -> Result<()> {
    const REFUSED: [char; 11] = ['<', '>', ':', '"', '/', '\\', '|', '?', '*', '\0', '\u{1f}'];
    if name.len() > MAX_NEW_VECTOR_NAME_BYTES {
        return Err(StorageError::InvalidInput(format!(
            "vector name `{name}`: must be at most {MAX_NEW_VECTOR_NAME_BYTES} bytes long"
        )));
    }
    if let Some(c) = name.chars().find(|c| REFUSED.contains(c)) {
        return Err(StorageError::InvalidInput(format!(
            "vector name `{name}`: cannot contain {c:?}"
        )));
    }
    if name == "." || name == ".." {
        return Err(StorageError::InvalidInput(format!(
            "vector name `{name}` is not allowed"
        )));
    }
    Ok(())
}

/// Stable shard choice for an id: a point always lives in the same shard.
pub fn shard_of(id: &PointId, shards: usize) -> usize {
    let x = match *id {
        PointId::Num(n) => n,
        PointId::Uuid(u) => (u as u64) ^ ((u >> 64) as u64).rotate_left(17),
    };
    // splitmix64 finaliser: spreads sequential ids evenly.
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % shards as u64) as usize
}

/// Merges shards' pages, each in id order from the same start, into the first `limit` points
/// and the id the next page starts at: the smallest id some shard did not return (a pure
/// function, used here and by `shard-router`'s fan-out).
pub fn merge_scroll_pages(pages: Vec<ScrollPage>, limit: usize) -> ScrollPage {
    let mut next_candidates: Vec<PointId> = pages.iter().filter_map(|p| p.next).collect();
    let mut points: Vec<Record> = pages.into_iter().flat_map(|p| p.points).collect();
    points.sort_by_key(|r| r.id);
    // A point two pages both hold (one id under two shard keys of a cluster) is listed
    // once: listed twice, it could also start the next page where this one started.
    points.dedup_by_key(|r| r.id);
    if points.len() > limit {
        next_candidates.push(points[limit].id);
        points.truncate(limit);
    }
    ScrollPage {
        points,
        next: next_candidates.into_iter().min(),
    }
}

impl Collection {
    /// Creates a collection in `dir` (which must not exist).
    pub fn create(dir: &Path, name: &str, config: CollectionConfig) -> Result<Arc<Collection>> {
        config.validate()?;
        if dir.exists() {
            return Err(StorageError::CollectionExists {
                name: name.to_string(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        write_atomically(&dir.join("config.json"), &json)?;
        write_atomically(&dir.join("payload_indexes.json"), b"[]")?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Collection::open(dir, name)
    }

    /// Opens the collection in `dir`: loads each shard's checkpoint and replays the log past
    /// it. A damaged file stops the open with an error naming it.
    pub fn open(dir: &Path, name: &str) -> Result<Arc<Collection>> {
        let config_path = dir.join("config.json");
        let bytes = std::fs::read(&config_path).map_err(|e| StorageError::io(&config_path, e))?;
        let mut config: CollectionConfig = serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::corrupt(&config_path, e.to_string()))?;
        for dropped in config.drop_unknown_binary_encodings() {
            tracing::warn!(collection = name, setting = %dropped, "not one of Qdrant's names: ignored");
        }
        config
            .validate()
            .map_err(|e| StorageError::corrupt(&config_path, e.to_string()))?;
        let defs_path = dir.join("payload_indexes.json");
        let index_defs: Vec<(String, Value)> = match std::fs::read(&defs_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| StorageError::corrupt(&defs_path, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StorageError::io(&defs_path, e)),
        };
        let settings = shard_settings(&config);
        let shards = (0..config.shards())
            .map(|k| {
                LocalShard::open(
                    k,
                    &dir.join(format!("shard-{k}")),
                    settings.clone(),
                    &index_defs,
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        let wal = Wal::open(
            &dir.join("wal"),
            WalOptions {
                segment_bytes: config.wal_segment_bytes(),
            },
        )?;
        check_log_covers(dir, &shards, &wal)?;
        let from = shards.iter().map(|s| s.applied_seq()).min().unwrap_or(0);
        let n = shards.len();
        wal.replay(from, |seq, body| {
            let op = Operation::decode(body)?;
            for (k, shard) in shards.iter().enumerate() {
                shard.apply(seq, op.restricted(|id| shard_of(id, n) == k).as_ref());
            }
            Ok(())
        })?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.optimizer_threads())
            .thread_name(|i| format!("optimizer-{i}"))
            .start_handler(|_| crate::priority::register_this_thread())
            .exit_handler(|_| crate::priority::unregister_this_thread())
            .build()
            .map_err(|e| StorageError::InvalidInput(format!("optimizer threads: {e}")))?;
        let collection = Arc::new(Collection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            wal,
            shards,
            write_lock: Mutex::new(()),
            index_defs: Mutex::new(index_defs),
            signal: Arc::new((
                Mutex::new(Background {
                    stop: false,
                    kick: true,
                }),
                Condvar::new(),
            )),
            thread: Mutex::new(None),
            sync_thread: Mutex::new(None),
            sync_stop: Arc::new((Mutex::new(false), Condvar::new())),
            pool,
            optimizing: AtomicBool::new(false),
            optimizer_error: Mutex::new(None),
            unsynced: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
            opened: Instant::now(),
            vectors_epoch: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&collection);
        let signal = collection.signal.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bg-{name}"))
            .spawn(move || background(weak, signal))
            .map_err(|e| StorageError::io(dir, e))?;
        *collection.thread.lock() = Some(handle);
        let weak = Arc::downgrade(&collection);
        let stop = collection.sync_stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sync-{name}"))
            .spawn(move || sync_on_interval(weak, stop))
            .map_err(|e| StorageError::io(dir, e))?;
        *collection.sync_thread.lock() = Some(handle);
        Ok(collection)
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its config, as created (and updated).
    pub fn config(&self) -> CollectionConfig {
        self.config.read().clone()
    }

    /// Reads its config without copying it (what the request path does).
    pub fn with_config<T>(&self, f: impl FnOnce(&CollectionConfig) -> T) -> T {
        f(&self.config.read())
    }

    /// Its shards.
    pub fn shards(&self) -> &[Arc<LocalShard>] {
        &self.shards
    }

    /// Checks, prepares and applies an update; returns its sequence number once it is as
    /// durable as asked (`wait`: on disk, unless the collection syncs on an interval).
    ///
    /// A payload write that names ids not stored is applied to the ids that are, then answers
    /// [`StorageError::PointNotFound`] with the first missing id, as Qdrant does; which ids
    /// exist is decided under the write lock, with the write. Deletes by id stay lenient.
    pub fn update(&self, update: Update, wait: bool) -> Result<u64> {
        let mut update = update;
        let (seq, missing) = loop {
            let epoch = self.vectors_epoch.load(Ordering::Acquire);
            update = self.prepare(update)?;
            let _w = self.write_lock.lock();
            if self.vectors_epoch.load(Ordering::Acquire) != epoch {
                // The named vectors changed while it was checked: check it again (preparing
                // twice changes nothing but the verdict on the vectors).
                continue;
            }
            let atomic = matches!(update, Update::Batch(_));
            let (op, missing) = self.resolve(update, &mut Pending::new(&self.shards));
            if let (true, Some(id)) = (atomic, missing) {
                // A batch is all or nothing: nothing was logged or applied yet.
                return Err(StorageError::PointNotFound { id });
            }
            let body = op.encode();
            let seq = self.wal.append(&body)?;
            let n = self.shards.len();
            let mut sealed = false;
            for (k, shard) in self.shards.iter().enumerate() {
                let part = if n == 1 {
                    Some(op.clone())
                } else {
                    op.restricted(|id| shard_of(id, n) == k)
                };
                sealed |= shard.apply(seq, part.as_ref());
            }
            self.unsynced.fetch_max(seq, Ordering::AcqRel);
            self.last_write_ms
                .store(self.opened.elapsed().as_millis() as u64, Ordering::Release);
            crate::priority::write_arrived();
            if sealed {
                self.kick();
            }
            break (seq, missing);
        };
        if wait && self.config.read().fsync_interval().is_none() {
            // The update is logged and applied already: a failed fsync must not read as a
            // refused write (a full disk at this point is not "nothing was applied").
            self.wal.sync(seq).map_err(|e| match e {
                StorageError::Io { path, source } => StorageError::Io {
                    path,
                    source: std::io::Error::other(format!(
                        "the update was applied but could not be made durable: {source}"
                    )),
                },
                e => e,
            })?;
        }
        match missing {
            Some(id) => Err(StorageError::PointNotFound { id }),
            None => Ok(seq),
        }
    }

    /// Checks an update as [`Collection::update`] would (vector names, dimensions,
    /// finiteness, payload sizes, key paths, counts) without applying it: what a router whose
    /// shards are elsewhere runs before it splits the update, so that a fault refuses all of
    /// it rather than the parts one node holds.
    pub fn check_update(&self, update: &Update) -> Result<()> {
        self.prepare(update.clone()).map(|_| ())
    }

    /// Validates an update before anything is logged: vector names, dimensions, finiteness,
    /// payload sizes and key paths. Vectors are normalised for cosine here, so the log holds
    /// what is stored.
    fn prepare(&self, update: Update) -> Result<Update> {
        let config = self.config.read();
        let check_payload = |p: &Payload| -> Result<()> {
            let size = serde_json::to_vec(p).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > MAX_PAYLOAD_BYTES {
                return Err(StorageError::PayloadTooLarge {
                    bytes: size,
                    limit: MAX_PAYLOAD_BYTES,
                });
            }
            Ok(())
        };
        let check_selector = |s: &PointSelector| -> Result<()> {
            if let PointSelector::Ids(ids) = s {
                if ids.len() > crate::ops::MAX_POINTS_PER_OPERATION {
                    return Err(StorageError::TooManyPoints {
                        count: ids.len(),
                        limit: crate::ops::MAX_POINTS_PER_OPERATION,
                    });
                }
            }
            Ok(())
        };
        let check_points = |points: &mut Vec<PointWrite>| -> Result<()> {
            if points.len() > crate::ops::MAX_POINTS_PER_OPERATION {
                return Err(StorageError::TooManyPoints {
                    count: points.len(),
                    limit: crate::ops::MAX_POINTS_PER_OPERATION,
                });
            }
            for p in points.iter_mut() {
                if let Some((name, _)) = p.sparse.iter().find(|(n, _)| config.sparse(n).is_none()) {
                    return Err(StorageError::UnknownVector { name: name.clone() });
                }
                for (name, v) in &p.sparse {
                    v.check().map_err(|e| {
                        StorageError::InvalidInput(format!(
                            "point {}: sparse vector `{name}`: {e}",
                            p.id
                        ))
                    })?;
                }
                let mut names: Vec<&str> = p
                    .vectors
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .chain(p.sparse.iter().map(|(n, _)| n.as_str()))
                    .chain(p.multi.iter().map(|(n, _)| n.as_str()))
                    .collect();
                names.sort_unstable();
                if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                    return Err(StorageError::InvalidInput(format!(
                        "point {}: vector `{}` given twice",
                        p.id, w[0]
                    )));
                }
                // A matrix for a multivector; a single vector given for one is its only row
                // (as Qdrant reads it).
                let mut k = 0;
                while k < p.vectors.len() {
                    if config.multivector(&p.vectors[k].0).is_some() {
                        let (name, v) = p.vectors.remove(k);
                        let dim = v.len();
                        let m = MultiVector::from_flat(dim, v).map_err(|e| {
                            StorageError::InvalidInput(format!(
                                "point {}: multivector `{name}`: {e}",
                                p.id
                            ))
                        })?;
                        p.multi.push((name, m));
                    } else {
                        k += 1;
                    }
                }
                for (name, m) in &mut p.multi {
                    let Some(params) = config.multivector(name) else {
                        return Err(match config.vectors.get(name) {
                            Some(_) => StorageError::InvalidInput(format!(
                                "point {}: vector `{name}` is a single vector, not a multivector",
                                p.id
                            )),
                            None => StorageError::UnknownVector { name: name.clone() },
                        });
                    };
                    *m = std::mem::take(m)
                        .prepared(params.size, params.distance.metric())
                        .map_err(|e| {
                            StorageError::InvalidInput(format!(
                                "Vector dimension error: point {}: multivector `{name}`: {e}",
                                p.id
                            ))
                        })?;
                }
                for (name, v) in &mut p.vectors {
                    let Some(params) = config.vectors.get(name) else {
                        return Err(StorageError::UnknownVector { name: name.clone() });
                    };
                    if v.len() != params.size {
                        return Err(StorageError::DimensionMismatch {
                            expected: params.size,
                            got: v.len(),
                            point: Some(p.id),
                            vector: name.clone(),
                        });
                    }
                    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                        return Err(StorageError::NonFiniteVector {
                            point: p.id,
                            position: i,
                        });
                    }
                    params.distance.metric().prepare(v);
                }
                check_payload(&p.payload)?;
            }
            Ok(())
        };
        match update {
            Update::Batch(updates) => {
                drop(config);
                if updates.len() > MAX_BATCH_OPERATIONS {
                    return Err(StorageError::InvalidInput(format!(
                        "a batch holds at most {MAX_BATCH_OPERATIONS} operations, got {}",
                        updates.len()
                    )));
                }
                let points: usize = updates.iter().map(Update::point_count).sum();
                if points > crate::ops::MAX_POINTS_PER_OPERATION {
                    return Err(StorageError::TooManyPoints {
                        count: points,
                        limit: crate::ops::MAX_POINTS_PER_OPERATION,
                    });
                }
                let prepared = updates
                    .into_iter()
                    .map(|u| match u {
                        Update::Batch(_) => Err(StorageError::InvalidInput(
                            "a batch cannot hold another batch".into(),
                        )),
                        u => self.prepare(u),
                    })
                    .collect::<Result<_>>()?;
                Ok(Update::Batch(prepared))
            }
            Update::Upsert(mut points) => {
                check_points(&mut points)?;
                Ok(Update::Upsert(points))
            }
            Update::ConditionalUpsert {
                mut points,
                mode,
                filter,
            } => {
                check_points(&mut points)?;
                Ok(Update::ConditionalUpsert {
                    points,
                    mode,
                    filter,
                })
            }
            Update::UpdateVectors { mut points, filter } => {
                check_points(&mut points)?;
                Ok(Update::UpdateVectors { points, filter })
            }
            Update::DeleteVectors { selector, names } => {
                check_selector(&selector)?;
                if let Some(name) = names
                    .iter()
                    .find(|n| config.vectors.get(n).is_none() && config.sparse(n).is_none())
                {
                    return Err(StorageError::UnknownVector { name: name.clone() });
                }
                Ok(Update::DeleteVectors { selector, names })
            }
            Update::SetPayload {
                payload,
                selector,
                key,
            } => {
                check_payload(&payload)?;
                check_selector(&selector)?;
                if let Some(k) = &key {
                    KeyPath::parse(k)?;
                }
                Ok(Update::SetPayload {
                    payload,
                    selector,
                    key,
                })
            }
            Update::OverwritePayload { payload, selector } => {
                check_payload(&payload)?;
                check_selector(&selector)?;
                Ok(Update::OverwritePayload { payload, selector })
            }
            Update::DeletePayload { keys, selector } => {
                check_selector(&selector)?;
                for k in &keys {
                    KeyPath::parse(k)?;
                }
                Ok(Update::DeletePayload { keys, selector })
            }
            Update::Delete(s) => {
                check_selector(&s)?;
                Ok(Update::Delete(s))
            }
            Update::ClearPayload(s) => {
                check_selector(&s)?;
                Ok(Update::ClearPayload(s))
            }
        }
    }

    /// Turns selectors into explicit ids (the caller holds the write lock), keeping only ids
    /// that exist as `view` sees them; also the first id a payload or vector write named that
    /// does not. A batch resolves each update against what the ones before it left.
    fn resolve(&self, update: Update, view: &mut Pending<'_>) -> (Operation, Option<PointId>) {
        let mut missing = None;
        if let Update::Batch(updates) = update {
            let last = updates.len().saturating_sub(1);
            let mut ops = Vec::with_capacity(updates.len());
            for (k, u) in updates.into_iter().enumerate() {
                let (op, m) = self.resolve(u, view);
                missing = missing.or(m);
                // The last update's effects are not asked about again.
                if k < last {
                    view.absorb(&op);
                }
                ops.push(op);
            }
            return (Operation::Batch(ops), missing);
        }
        let view = &*view;
        let mut ids = |s: PointSelector, report_missing: bool| -> Vec<PointId> {
            match s {
                PointSelector::Ids(ids) => ids
                    .into_iter()
                    .filter(|id| {
                        let exists = view.exists(*id);
                        if !exists && report_missing && missing.is_none() {
                            missing = Some(*id);
                        }
                        exists
                    })
                    .collect(),
                PointSelector::Filter(f) => view.matching_ids(&f),
            }
        };
        let op = match update {
            Update::Batch(_) => unreachable!("resolved above"),
            Update::Upsert(points) => Operation::Upsert(points),
            Update::Delete(s) => Operation::Delete(ids(s, false)),
            Update::SetPayload {
                payload,
                selector,
                key,
            } => Operation::SetPayload {
                ids: ids(selector, true),
                payload,
                key,
            },
            Update::OverwritePayload { payload, selector } => Operation::OverwritePayload {
                ids: ids(selector, true),
                payload,
            },
            Update::DeletePayload { keys, selector } => Operation::DeletePayload {
                ids: ids(selector, true),
                keys,
            },
            Update::ClearPayload(s) => Operation::ClearPayload(ids(s, true)),
            Update::ConditionalUpsert {
                points,
                mode,
                filter,
            } => Operation::Upsert(
                points
                    .into_iter()
                    .filter(|p| match view.matches(p.id, filter.as_deref()) {
                        None => mode != UpsertMode::UpdateOnly,
                        Some(passes) => mode != UpsertMode::InsertOnly && passes,
                    })
                    .collect(),
            ),
            Update::UpdateVectors { points, filter } => {
                let mut out = Rewrites::default();
                for p in points {
                    match view.matches(p.id, filter.as_deref()) {
                        None => {
                            missing.get_or_insert(p.id);
                        }
                        Some(false) => {}
                        Some(true) => out.edit(view, p.id, |point| {
                            for (name, v) in p.vectors {
                                point.vectors.retain(|(n, _)| *n != name);
                                point.vectors.push((name, v));
                            }
                            for (name, v) in p.sparse {
                                point.sparse.retain(|(n, _)| *n != name);
                                point.sparse.push((name, v));
                            }
                            for (name, v) in p.multi {
                                point.multi.retain(|(n, _)| *n != name);
                                point.multi.push((name, v));
                            }
                        }),
                    }
                }
                Operation::Upsert(out.points)
            }
            Update::DeleteVectors { selector, names } => {
                let mut out = Rewrites::default();
                for id in ids(selector, true) {
                    out.edit(view, id, |point| {
                        point.vectors.retain(|(name, _)| !names.contains(name));
                        point.sparse.retain(|(name, _)| !names.contains(name));
                        point.multi.retain(|(name, _)| !names.contains(name));
                    });
                }
                Operation::Upsert(out.points)
            }
        };
        (op, missing)
    }

    fn kick(&self) {
        let (lock, cv) = &*self.signal;
        lock.lock().kick = true;
        cv.notify_all();
    }

    /// Searches every shard (in parallel) and merges: the closest `params.limit` points.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        use rayon::prelude::*;
        let lists: Vec<Vec<ScoredPoint>> = self
            .shards
            .par_iter()
            .map(|s| s.search(req))
            .collect::<Result<Vec<_>>>()?;
        Ok(merge_top_k(
            &lists,
            req.params.limit,
            |h| h.distance,
            |h| h.record.id,
        ))
    }

    /// The points with these ids that exist, in the order asked (each once).
    pub fn retrieve(
        &self,
        ids: &[PointId],
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> Vec<Record> {
        let n = self.shards.len();
        let mut seen = std::collections::HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| {
                self.shards[shard_of(id, n)]
                    .retrieve(&[*id], with_payload, with_vector)
                    .pop()
            })
            .collect()
    }

    /// A page of points in id order from `from` on, matching `filter`.
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> ScrollPage {
        let pages: Vec<ScrollPage> = self
            .shards
            .iter()
            .map(|s| s.scroll(from, limit, filter, with_payload, with_vector))
            .collect();
        merge_scroll_pages(pages, limit)
    }

    /// Points matching `filter` (exact).
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.shards.iter().map(|s| s.count(filter)).sum()
    }

    /// The stored vector `name` of a point, wherever it lives.
    pub fn vector_of(&self, id: PointId, name: &str) -> Result<Option<Vec<f32>>> {
        self.shards[shard_of(&id, self.shards.len())].vector_of(id, name)
    }

    /// The stored sparse vector `name` of a point, wherever it lives.
    pub fn sparse_vector_of(&self, id: PointId, name: &str) -> Result<Option<SparseVector>> {
        self.shards[shard_of(&id, self.shards.len())].sparse_vector_of(id, name)
    }

    /// The stored multivector `name` of a point, wherever it lives.
    pub fn multi_vector_of(&self, id: PointId, name: &str) -> Result<Option<MultiVector>> {
        self.shards[shard_of(&id, self.shards.len())].multi_vector_of(id, name)
    }

    /// A sparse query vector with Qdrant's IDF modifier applied when sparse vector `name`
    /// has it: each weight times the inverse document frequency of its index among the
    /// collection's points that hold the vector (every shard counted, so a collection of
    /// many shards weighs as one).
    pub fn sparse_query(&self, name: &str, mut q: SparseVector) -> Result<SparseVector> {
        let modifier = self
            .with_config(|c| c.sparse(name).map(|p| p.modifier))
            .ok_or_else(|| StorageError::UnknownVector {
                name: name.to_string(),
            })?;
        if modifier != Some(crate::config::SparseModifier::Idf) {
            return Ok(q);
        }
        let mut n = 0;
        let mut df = vec![0; q.indices.len()];
        for s in &self.shards {
            let (points, counts) = s.sparse_stats(name, &q.indices)?;
            n += points;
            df.iter_mut().zip(counts).for_each(|(d, c)| *d += c);
        }
        for (v, d) in q.values.iter_mut().zip(df) {
            *v *= crate::sparse::idf(d, n);
        }
        Ok(q)
    }

    /// Creates (or replaces) a payload index and records it.
    pub fn create_payload_index(&self, field: &str, schema: Value) -> Result<()> {
        payload::FieldSchema::from_json(&schema)?;
        KeyPath::parse(field)?;
        let _w = self.write_lock.lock();
        for s in &self.shards {
            s.create_payload_index(field, &schema)?;
        }
        let mut defs = self.index_defs.lock();
        defs.retain(|(f, _)| f != field);
        defs.push((field.to_string(), schema));
        write_atomically(
            &self.dir.join("payload_indexes.json"),
            &serde_json::to_vec(&*defs).expect("json"),
        )
    }

    /// Drops a payload index; whether it existed.
    pub fn delete_payload_index(&self, field: &str) -> Result<bool> {
        let _w = self.write_lock.lock();
        let mut existed = false;
        for s in &self.shards {
            existed |= s.delete_payload_index(field);
        }
        let mut defs = self.index_defs.lock();
        defs.retain(|(f, _)| f != field);
        write_atomically(
            &self.dir.join("payload_indexes.json"),
            &serde_json::to_vec(&*defs).expect("json"),
        )?;
        Ok(existed)
    }

    /// Qdrant's `payload_schema`: each indexed field with its type and point count.
    pub fn payload_schema(&self) -> Value {
        let mut out = serde_json::Map::new();
        for s in &self.shards {
            if let Value::Object(m) = s.payload_schema() {
                for (field, info) in m {
                    match out.get_mut(&field) {
                        Some(Value::Object(existing)) => {
                            let add = info.get("points").and_then(Value::as_u64).unwrap_or(0);
                            let have = existing.get("points").and_then(Value::as_u64).unwrap_or(0);
                            existing.insert("points".into(), (have + add).into());
                        }
                        _ => {
                            out.insert(field, info);
                        }
                    }
                }
            }
        }
        Value::Object(out)
    }

    /// Whether an optimizer step with work (indexing, a rebuild, a merge) is running now.
    pub fn optimizer_running(&self) -> bool {
        self.optimizing.load(Ordering::Acquire)
    }

    /// Counters for the info endpoint and metrics.
    pub fn stats(&self) -> CollectionStats {
        let busy = self.optimizing.load(Ordering::Acquire)
            || self.shards.iter().any(|s| s.needs_optimization());
        let (ram, disk) = self
            .shards
            .iter()
            .map(|s| s.index_vector_bytes_split())
            .fold((0, 0), |(r, d), (a, b)| (r + a, d + b));
        CollectionStats {
            points: self.shards.iter().map(|s| s.len()).sum(),
            indexed_points: self.shards.iter().map(|s| s.indexed_points()).sum(),
            segments: self.shards.iter().map(|s| s.segment_count()).sum(),
            optimizing: busy,
            optimizer_error: self.optimizer_error.lock().clone(),
            wal_bytes: self.wal.size_bytes(),
            index_vector_bytes: ram + disk,
            index_vector_bytes_on_disk: disk,
        }
    }

    /// Replaces the stored optimizer, HNSW, quantization and other mutable settings (PATCH).
    /// The vectors' names, sizes and distances may not change. The shards take the new
    /// settings at once: searches and segments built from now on use them, and the optimizer
    /// rebuilds, one at a time, the indexed segments whose graphs were built otherwise.
    pub fn update_config(&self, f: impl FnOnce(&mut CollectionConfig) -> Result<()>) -> Result<()> {
        let _w = self.write_lock.lock();
        let before = self.config.read().clone();
        let mut next = before.clone();
        f(&mut next)?;
        next.validate()?;
        let shape = |c: &CollectionConfig| -> Vec<(String, usize, crate::Distance)> {
            c.vectors
                .params()
                .into_iter()
                .map(|(n, p)| (n, p.size, p.distance))
                .collect()
        };
        if shape(&next) != shape(&before) {
            return Err(StorageError::InvalidConfig(
                "vectors: names, sizes and distances cannot change".into(),
            ));
        }
        // The columns segments hold must stay: a multivector's hidden column of encodings
        // exists only while its graph is on (`m` not 0).
        let columns = |c: &CollectionConfig| -> Vec<(String, usize)> {
            c.effective_vectors()
                .into_iter()
                .map(|v| (v.name, v.dim))
                .collect()
        };
        if columns(&next) != columns(&before) {
            return Err(StorageError::InvalidConfig(
                "hnsw_config.m: a multivector's graph cannot be turned on or off (m: 0) on an \
                 existing collection"
                    .into(),
            ));
        }
        write_atomically(
            &self.dir.join("config.json"),
            &serde_json::to_vec_pretty(&next).expect("json"),
        )?;
        let settings = shard_settings(&next);
        *self.config.write() = next;
        for shard in &self.shards {
            shard.update_settings(settings.clone());
        }
        self.kick();
        Ok(())
    }

    /// Creates the vector `name` (Qdrant's `create_vector_name`) with the size, distance,
    /// datatype and multivector config of `params` (its index and quantization are the
    /// collection's): the points stored have none of it until written. A collection of one
    /// unnamed vector keeps it, as `""`, beside the named ones. Creating a vector that exists
    /// with the same size, distance and multivector config changes nothing; with another, it
    /// is refused. Returns whether anything changed.
    pub fn create_vector(&self, name: &str, params: VectorParams) -> Result<bool> {
        validate_new_vector_name(name)?;
        self.change_vectors(|config| {
            if let Some(existing) = config.vectors.get(name) {
                if existing.size == params.size
                    && existing.distance == params.distance
                    && existing.multivector_config == params.multivector_config
                {
                    return Ok(false);
                }
                return Err(StorageError::InvalidConfig(format!(
                    "vectors.{name}: exists with another size, distance or multivector config \
                     ({} {:?})",
                    existing.size, existing.distance
                )));
            }
            // A new vector takes the collection's index; an IVF index is trained on vectors
            // a new, empty vector does not have.
            if matches!(config.index, Some(crate::config::IndexConfig::Ivf(_))) {
                return Err(StorageError::InvalidConfig(
                    "vectors: creating a vector on a collection with an IVF index is not supported"
                        .into(),
                ));
            }
            let VectorsConfig::Multi(named) = &mut config.vectors else {
                let VectorsConfig::Single(unnamed) = config.vectors.clone() else {
                    unreachable!("one of two")
                };
                config.vectors = VectorsConfig::Multi(
                    [(String::new(), *unnamed), (name.to_string(), params)].into(),
                );
                return Ok(true);
            };
            named.insert(name.to_string(), params);
            Ok(true)
        })
    }

    /// Creates the sparse vector `name` (Qdrant's `create_vector_name` with `sparse`): the
    /// points stored have none of it until written. Creating one that exists with the same
    /// modifier changes nothing; with another, or over a dense vector's name, it is refused.
    /// Returns whether anything changed.
    pub fn create_sparse_vector(&self, name: &str, params: SparseVectorParams) -> Result<bool> {
        validate_new_vector_name(name)?;
        if name.is_empty() {
            return Err(StorageError::InvalidInput(
                "a sparse vector needs a name".into(),
            ));
        }
        self.change_vectors(|config| {
            if config.vectors.get(name).is_some() {
                return Err(StorageError::InvalidConfig(format!(
                    "vectors.{name}: a dense vector has this name"
                )));
            }
            if let Some(existing) = config.sparse(name) {
                if existing.modifier.unwrap_or(SparseModifier::None)
                    == params.modifier.unwrap_or(SparseModifier::None)
                {
                    return Ok(false);
                }
                return Err(StorageError::InvalidConfig(format!(
                    "sparse_vectors.{name}: exists with another modifier"
                )));
            }
            config
                .sparse_vectors
                .get_or_insert_with(Default::default)
                .insert(name.to_string(), params);
            Ok(true)
        })
    }

    /// Deletes the vector `name` (Qdrant's `delete_vector_name`), dense, sparse or a
    /// multivector, from the collection and every point. A name that does not exist changes
    /// nothing; the last vector of a collection cannot be deleted. Returns whether anything
    /// changed.
    pub fn delete_vector(&self, name: &str) -> Result<bool> {
        self.change_vectors(|config| {
            let sparse = config.sparse_vectors.as_ref().map_or(0, |s| s.len());
            if config.sparse(name).is_some() {
                if sparse == 1 && config.vectors.params().is_empty() {
                    return Err(StorageError::InvalidConfig(format!(
                        "sparse_vectors: `{name}` is the collection's only vector and cannot be \
                         deleted"
                    )));
                }
                config
                    .sparse_vectors
                    .as_mut()
                    .expect("it has this one")
                    .remove(name);
                return Ok(true);
            }
            if config.vectors.get(name).is_none() {
                return Ok(false);
            }
            match &mut config.vectors {
                VectorsConfig::Multi(named) if named.len() > 1 || sparse > 0 => {
                    named.remove(name);
                    Ok(true)
                }
                // The unnamed vector of a collection made with one stays, as Qdrant keeps it.
                _ => Err(StorageError::InvalidConfig(format!(
                    "vectors: `{name}` is the collection's only vector and cannot be deleted"
                ))),
            }
        })
    }

    /// Changes the collection's vectors as `edit` does (returning whether it did), and re-lays
    /// every shard's columns for them (`shard::relayout`): prepared on every shard, committed
    /// by writing the config, then applied in memory and checkpointed. Writes wait meanwhile.
    fn change_vectors(
        &self,
        edit: impl FnOnce(&mut CollectionConfig) -> Result<bool>,
    ) -> Result<bool> {
        let _w = self.write_lock.lock();
        let mut next = self.config.read().clone();
        if !edit(&mut next)? {
            return Ok(false);
        }
        next.validate()?;
        // Checkpoints in the current layout first, each naming it: a crash after the config is
        // written then loads them mapped onto the new vectors.
        self.sync_log()?;
        for s in &self.shards {
            s.checkpoint_forced(&self.wal)?;
        }
        let settings = shard_settings(&next);
        let changes = self
            .shards
            .iter()
            .map(|s| s.prepare_vectors_change(settings.clone()))
            .collect::<Result<Vec<_>>>()?;
        write_atomically(
            &self.dir.join("config.json"),
            &serde_json::to_vec_pretty(&next).expect("json"),
        )?;
        *self.config.write() = next;
        self.vectors_epoch.fetch_add(1, Ordering::AcqRel);
        for change in changes {
            change.commit();
        }
        for s in &self.shards {
            s.checkpoint_forced(&self.wal)?;
        }
        self.truncate_log()?;
        self.kick();
        Ok(true)
    }

    /// Runs the optimizer until no shard has work (what the background thread does); for
    /// tests and tools that want a fully indexed collection now.
    pub fn optimize_now(&self) -> Result<()> {
        while self.optimize_once()? {}
        Ok(())
    }

    fn optimize_once(&self) -> Result<bool> {
        let mut worked = false;
        let mut result = Ok(());
        for s in &self.shards {
            // Waits out a step another caller (the background thread) has running: once it
            // has swapped its segments in, the shard no longer reports work, but the step
            // still writes graph files and a checkpoint. Returning then let a caller of
            // `optimize_now` copy a shard directory mid-write (a storage test caught a
            // checkpoint naming a graph file its copy lacked).
            drop(s.pause_optimizer());
            // The flag says a step with work is running: raised for every wake of the
            // background thread, it made a collection with nothing to index report "yellow"
            // to whoever asked at that moment (a router test caught it under load).
            if !s.needs_optimization() {
                continue;
            }
            self.optimizing.store(true, Ordering::Release);
            match s.optimize(&self.pool, &self.wal) {
                Ok(w) => worked |= w,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.optimizing.store(false, Ordering::Release);
        match result {
            Ok(()) => {
                *self.optimizer_error.lock() = None;
                if worked {
                    self.truncate_log()?;
                }
                Ok(worked)
            }
            Err(e) => {
                *self.optimizer_error.lock() = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Every update up to this sequence number is on disk (see [`Collection::update`]'s
    /// result); under the `fsync_interval_ms` policy it trails the acknowledged ones.
    pub fn durable_seq(&self) -> u64 {
        self.wal.durable_seq()
    }

    /// Fsyncs the log and checkpoints every shard, then drops the log records they cover.
    pub fn flush(&self) -> Result<()> {
        self.sync_log()?;
        for s in &self.shards {
            s.checkpoint(&self.wal)?;
        }
        self.truncate_log()
    }

    /// Fsyncs the log: every update applied so far is durable when it returns.
    pub fn sync(&self) -> Result<()> {
        self.sync_log()
    }

    fn sync_log(&self) -> Result<()> {
        let upto = self.unsynced.load(Ordering::Acquire);
        if upto > 0 {
            self.wal.sync(upto)?;
        }
        Ok(())
    }

    fn truncate_log(&self) -> Result<()> {
        let covered = self
            .shards
            .iter()
            .map(|s| s.checkpointed_seq())
            .min()
            .unwrap_or(0);
        if covered > 0 {
            self.wal.truncate_through(covered)?;
        }
        Ok(())
    }

    /// Holds writes while `f` runs over a fresh checkpoint of every shard: what a snapshot
    /// needs for a consistent set of files. `f` gets the files (absolute paths) with their
    /// names relative to the collection directory.
    pub fn with_checkpoint<T>(
        &self,
        f: impl FnOnce(Vec<(String, PathBuf)>) -> Result<T>,
    ) -> Result<T> {
        let _w = self.write_lock.lock();
        // The optimizer rewrites graph files and deletes the ones no checkpoint names: keep it
        // between steps until the caller has the files.
        let _paused: Vec<_> = self.shards.iter().map(|s| s.pause_optimizer()).collect();
        self.flush()?;
        let mut files = vec![
            ("config.json".to_string(), self.dir.join("config.json")),
            (
                "payload_indexes.json".to_string(),
                self.dir.join("payload_indexes.json"),
            ),
        ];
        for s in &self.shards {
            for path in s.checkpoint_files()? {
                let name = format!(
                    "shard-{}/{}",
                    s.id(),
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                files.push((name, path));
            }
        }
        f(files)
    }

    /// Tells the background and sync threads to stop.
    fn stop_threads_signal(&self) {
        let (lock, cv) = &*self.signal;
        lock.lock().stop = true;
        cv.notify_all();
        let (lock, cv) = &*self.sync_stop;
        *lock.lock() = true;
        cv.notify_all();
    }

    /// Stops the background thread and writes a final checkpoint.
    pub fn close(&self) -> Result<()> {
        self.stop_threads_signal();
        for thread in [&self.thread, &self.sync_thread] {
            if let Some(h) = thread.lock().take() {
                if h.thread().id() != std::thread::current().id() {
                    let _ = h.join();
                }
            }
        }
        let _w = self.write_lock.lock();
        self.sync_log()?;
        for s in &self.shards {
            s.save_all(&self.wal)?;
        }
        self.truncate_log()
    }

    /// Opens, once, a collection unpacked from a snapshot (its shards' checkpoints, taken
    /// under the write lock so they agree, and no log): the fresh log then numbers new writes
    /// after the checkpoints (see `check_log_covers`).
    pub(crate) fn prepare_restored(dir: &Path) -> Result<()> {
        let c = Collection::open(dir, "restoring")?;
        c.stop_threads_signal();
        for thread in [&c.thread, &c.sync_thread] {
            if let Some(h) = thread.lock().take() {
                let _ = h.join();
            }
        }
        Ok(())
    }
}

/// Checks at open that the log reaches every shard's checkpoint. A checkpoint is written only
/// after the log holds what it covers durably (see `shard::checkpoint`), so a log behind a
/// checkpoint means the disk lost data the log had made durable, or the log directory was
/// removed, or the files were written by a build before that rule (issue 20).
///
/// When every shard is at the same operation, nothing is missing: the shards hold it all, and
/// the log restarts its numbering after it, so that new writes are not skipped as applied.
/// When they differ, the operations between are lost for the shards behind: the open fails
/// rather than serve a collection whose shards disagree.
fn check_log_covers(dir: &Path, shards: &[Arc<LocalShard>], wal: &Wal) -> Result<()> {
    let last = wal.last_seq();
    let applied: Vec<u64> = shards.iter().map(|s| s.applied_seq()).collect();
    let (Some(&lowest), Some(&highest)) = (applied.iter().min(), applied.iter().max()) else {
        return Ok(());
    };
    let behind = applied.iter().position(|&a| a == lowest).unwrap_or(0);
    // The log must also start early enough for the shard furthest behind.
    if lowest < last {
        let first = wal.first_seq().unwrap_or(last + 1);
        if first > lowest + 1 {
            return Err(StorageError::corrupt(
                wal.dir(),
                format!(
                    "the write-ahead log starts at operation {first} but shard {behind} is \
                     checkpointed at {lowest}: operations {} to {} are lost for it",
                    lowest + 1,
                    first - 1
                ),
            ));
        }
    }
    if highest <= last {
        return Ok(());
    }
    if lowest == highest {
        tracing::warn!(
            collection = %dir.display(),
            log_ends_at = last,
            checkpoints_at = highest,
            "the write-ahead log ends before the shards' checkpoints; numbering new writes after them"
        );
        return wal.restart_after(highest);
    }
    Err(StorageError::corrupt(
        dir.join(format!("shard-{behind}")),
        format!(
            "shard {behind} is checkpointed at operation {lowest}, another shard at {highest}, \
             and the write-ahead log ends at {last}: operations {} to {highest} are lost for \
             shard {behind}",
            lowest.max(last) + 1
        ),
    ))
}

/// How long writes must pause before the appendable tail of an indexed shard is sealed.
const IDLE_SEAL_AFTER: Duration = Duration::from_secs(2);
/// The fewest rows worth sealing early: below this an exact scan costs less than a graph walk.
const IDLE_SEAL_MIN_ROWS: usize = 1_000;

/// The background loop: index sealed segments, checkpoint on the flush interval. Holds only
/// a weak reference, so dropping the collection ends it.
fn background(weak: Weak<Collection>, signal: Arc<(Mutex<Background>, Condvar)>) {
    let mut last_flush = Instant::now();
    loop {
        let flush_every = match weak.upgrade() {
            Some(c) => c.config.read().flush_interval(),
            None => return,
        };
        {
            let (lock, cv) = &*signal;
            let mut st = lock.lock();
            if !st.kick && !st.stop {
                // At least once a second: the idle-tail check below needs the clock too.
                let flush_due = flush_every.saturating_sub(last_flush.elapsed());
                cv.wait_for(&mut st, flush_due.min(Duration::from_secs(1)));
            }
            if st.stop {
                return;
            }
            st.kick = false;
        }
        let Some(c) = weak.upgrade() else { return };
        loop {
            match c.optimize_once() {
                Ok(true) => {
                    if signal.0.lock().stop {
                        return;
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(collection = %c.name, error = %e, "optimizer failed");
                    break;
                }
            }
        }
        // Writes have paused: index the tail of a bulk load rather than scan it exactly.
        let idle_ms = (c.opened.elapsed().as_millis() as u64)
            .saturating_sub(c.last_write_ms.load(Ordering::Acquire));
        if idle_ms >= IDLE_SEAL_AFTER.as_millis() as u64
            && c.shards
                .iter()
                .fold(false, |any, s| s.seal_idle_tail(IDLE_SEAL_MIN_ROWS) | any)
        {
            let (lock, _) = &*signal;
            lock.lock().kick = true;
        }
        if last_flush.elapsed() >= flush_every {
            last_flush = Instant::now();
            if let Err(e) = c.flush() {
                tracing::error!(collection = %c.name, error = %e, "checkpoint failed");
            }
        }
    }
}

/// Fsyncs the log every `fsync_interval_ms` (every second without that policy, for writes
/// sent without waiting), whatever the optimizer is doing: a write acknowledged under the
/// interval policy is on disk one interval (and one fsync) later at most. Holds only a weak
/// reference, so dropping the collection ends it.
fn sync_on_interval(weak: Weak<Collection>, stop: Arc<(Mutex<bool>, Condvar)>) {
    loop {
        let every = match weak.upgrade() {
            Some(c) => c
                .config
                .read()
                .fsync_interval()
                .unwrap_or(Duration::from_secs(1)),
            None => return,
        };
        {
            let (lock, cv) = &*stop;
            let mut stopped = lock.lock();
            if *stopped {
                return;
            }
            cv.wait_for(&mut stopped, every);
            if *stopped {
                return;
            }
        }
        let Some(c) = weak.upgrade() else { return };
        if let Err(e) = c.sync_log() {
            tracing::error!(collection = %c.name, error = %e, "log sync failed");
        }
    }
}
