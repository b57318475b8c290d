//! Resharding a collection placed by hash: growing it by one shard (on the next node of the
//! list) or shrinking it by its last shard, while it serves reads and writes.
//!
//! Points are placed by jump consistent hashing, so going from `from` shards to `to` moves
//! only the points whose shard changes: growing, about one in `to` of each old shard's
//! points, each to the new shard; shrinking, every point of the removed shard, each to one
//! of the others. A *draining* shard is one that loses points. It is emptied in id order, a
//! batch at a time: the batch's points that move are read, written to their new shards and
//! deleted from the draining one, and the shard's cursor (the first id not yet drained)
//! advances. So at every moment each point is in exactly one place, which
//! [`Resharding::shard_of`] names (its old shard until the cursor passes it, its new one
//! after); writes are sent there, and reads ask every shard that may hold points.
//!
//! A batch runs alone: it holds the collection's [`Gate`] exclusively, while every read and
//! write holds it shared. So a read never sees a point twice (copied, not yet deleted) or not
//! at all, and no write lands between a batch's read of a point and its copy. The price is
//! that the collection's requests wait for a batch (a scroll, a retrieve, an upsert and a
//! delete); batches are small. A batch never queues behind requests in a way that a request
//! taking the gate twice (a query whose examples are read first) could wait on: see [`Gate`].
//! Writes during a resharding are applied before they are answered (`wait` is forced), so a
//! batch never reads a point older than an answered write.
//!
//! ## On the nodes (the markers)
//!
//! The state lives in each node collection's marker (metadata key [`super::SHARD_MARKER`]):
//! stable, `{"index": k, "of": n}`; resharding, `{"index": k, "of": from, "resharding":
//! {"from": from, "to": to, "drained": D}}`, where D is `"start"`, `"done"`, or the first id
//! not yet drained (a number, or a UUID as 32 hex digits in a string). Node 0's marker is the
//! commit point: a resharding has begun once node 0's marker says so, and has ended once it
//! says `{"index": 0, "of": to}` (the other markers are rewritten before it, the removed
//! shard's collection deleted before it). A coordinator starting up finds a resharding on node
//! 0, takes each draining shard's cursor from that shard's marker (one rewritten to stable
//! already, or deleted, counts as drained), and resumes it. A batch's cursor is written to
//! the marker before the batch lets requests in, and a resumed resharding runs its first
//! batch before any request: so no write is ever sent by a cursor older than the points'.

use super::{Cluster, SHARD_MARKER};
use crate::remote::{jump_shard_of, wire, EncodedQuery, RemoteShard};
use crate::{RetrieveRequest, ScrollRequest, Shard, ShardError};
use index_core::PointId;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which way a resharding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// One shard more, on the next node.
    Up,
    /// One shard less: the last.
    Down,
}

impl Direction {
    /// Qdrant's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// How far a draining shard has been emptied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Not begun.
    Start,
    /// Every point before this id is drained (in scroll order: numbers before UUIDs).
    Before(PointId),
    /// All of it.
    Done,
}

impl Drained {
    /// Whether a point of this id has been drained.
    pub fn covers(self, id: &PointId) -> bool {
        match self {
            Drained::Start => false,
            Drained::Before(x) => *id < x,
            Drained::Done => true,
        }
    }

    fn to_json(self) -> Json {
        match self {
            Drained::Start => json!("start"),
            Drained::Done => json!("done"),
            Drained::Before(PointId::Num(n)) => json!(n),
            Drained::Before(PointId::Uuid(u)) => json!(format!("{u:032x}")),
        }
    }

    fn from_json(v: &Json) -> Option<Drained> {
        match v {
            Json::String(s) if s == "start" => Some(Drained::Start),
            Json::String(s) if s == "done" => Some(Drained::Done),
            Json::String(s) if s.len() == 32 => u128::from_str_radix(s, 16)
                .ok()
                .map(|u| Drained::Before(PointId::Uuid(u))),
            Json::Number(n) => n.as_u64().map(|n| Drained::Before(PointId::Num(n))),
            _ => None,
        }
    }
}

/// A resharding under way: from `from` shards to `to`, one more or one less.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resharding {
    /// Shards before.
    pub from: usize,
    /// Shards after.
    pub to: usize,
    /// Each draining shard's progress.
    pub drained: BTreeMap<usize, Drained>,
    /// The page size of each draining shard's next batch, as its marker keeps it: a batch cut
    /// off after its move and before its cursor is run again with the same page size, so
    /// that its page reaches past every point it moved.
    pub limits: BTreeMap<usize, usize>,
}

impl Resharding {
    /// A resharding not begun.
    pub fn new(from: usize, to: usize) -> Resharding {
        let draining = if to > from { 0..from } else { to..from };
        Resharding {
            from,
            to,
            drained: draining.map(|k| (k, Drained::Start)).collect(),
            limits: BTreeMap::new(),
        }
    }

    /// Whether every draining shard is drained.
    pub fn is_drained(&self) -> bool {
        self.drained.values().all(|d| *d == Drained::Done)
    }

    /// Its direction.
    pub fn direction(&self) -> Direction {
        if self.to > self.from {
            Direction::Up
        } else {
            Direction::Down
        }
    }

    /// The shards that may hold points meanwhile (the nodes `0..shards()`).
    pub fn shards(&self) -> usize {
        self.from.max(self.to)
    }

    /// The shard added or removed.
    pub fn changed_shard(&self) -> usize {
        self.from.max(self.to) - 1
    }

    /// The shard point `id` is on now.
    pub fn shard_of(&self, id: &PointId) -> usize {
        let old = jump_shard_of(id, self.from);
        let new = jump_shard_of(id, self.to);
        if old == new {
            return old;
        }
        // A point changes shard only from a draining one (jump hashing moves points only to
        // an added shard, or off a removed one).
        match self.drained.get(&old) {
            Some(d) if d.covers(id) => new,
            _ => old,
        }
    }

    /// The first draining shard not yet drained.
    pub fn next_draining(&self) -> Option<(usize, Drained)> {
        self.drained
            .iter()
            .find(|(_, d)| **d != Drained::Done)
            .map(|(k, d)| (*k, *d))
    }

    /// Shard `k`'s marker while it runs.
    pub fn marker(&self, k: usize) -> Json {
        json!({
            "index": k,
            "of": self.from,
            "resharding": {
                "from": self.from,
                "to": self.to,
                "drained": self.drained.get(&k).copied().unwrap_or(Drained::Done).to_json(),
                "batch": self.limits.get(&k),
            }
        })
    }
}

/// A node's marker of a collection placed by hash, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardMarker {
    /// Shard `index` of `of`.
    Stable {
        /// The shard.
        index: usize,
        /// Of how many.
        of: usize,
    },
    /// Shard `index` while the collection goes from `from` shards to `to`.
    Resharding {
        /// The shard.
        index: usize,
        /// Shards before.
        from: usize,
        /// Shards after.
        to: usize,
        /// This shard's progress (meaningful for a draining shard).
        drained: Drained,
        /// The page size of its next batch.
        batch: Option<usize>,
    },
}

impl ShardMarker {
    /// Reads a marker; `None` when it is not one.
    pub fn read(v: &Json) -> Option<ShardMarker> {
        let index = usize::try_from(v.get("index")?.as_u64()?).ok()?;
        let of = usize::try_from(v.get("of")?.as_u64()?).ok()?;
        if v.get("collection").is_some() {
            return None; // a shard key's marker
        }
        let marker = match v.get("resharding") {
            None => ShardMarker::Stable { index, of },
            Some(r) => {
                let from = usize::try_from(r.get("from")?.as_u64()?).ok()?;
                let to = usize::try_from(r.get("to")?.as_u64()?).ok()?;
                let drained = Drained::from_json(r.get("drained")?)?;
                let batch = match r.get("batch") {
                    None | Some(Json::Null) => None,
                    Some(b) => Some(usize::try_from(b.as_u64()?).ok().filter(|b| *b > 0)?),
                };
                if of != from || from.abs_diff(to) != 1 || to == 0 || index >= from.max(to) {
                    return None;
                }
                ShardMarker::Resharding {
                    index,
                    from,
                    to,
                    drained,
                    batch,
                }
            }
        };
        match marker {
            ShardMarker::Stable { index, of } if index >= of => None,
            m => Some(m),
        }
    }

    /// The shard it names.
    pub fn index(&self) -> usize {
        match self {
            ShardMarker::Stable { index, .. } | ShardMarker::Resharding { index, .. } => *index,
        }
    }
}

/// A collection's hash layout: its shards (on nodes `0..shards`), and the resharding under
/// way, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashLayout {
    /// Shards, when no resharding runs.
    pub shards: usize,
    /// The resharding under way.
    pub resharding: Option<Resharding>,
}

impl HashLayout {
    /// The shards that may hold points (every one is read).
    pub fn read_shards(&self) -> usize {
        match &self.resharding {
            Some(r) => r.shards(),
            None => self.shards,
        }
    }
}

/// What a resharding has done so far, as `GET /collections/{name}/cluster` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReshardProgress {
    /// Points moved.
    pub moved: u64,
    /// Batches run.
    pub batches: u64,
    /// The last batch's failure, while the batch is retried.
    pub error: Option<String>,
}

/// Held shared by every read and write of a collection, exclusively by each resharding batch.
///
/// A fair lock would queue a waiting batch ahead of later readers, and a request that holds
/// the gate while it takes it again (a hybrid query's stages, a query's examples read under
/// its search, a batch of searches) would wait on the batch, which waits on the request. So a
/// request notes its hold of each gate ([`gate_scope`], a task-local the router opens per
/// request), and takes a gate it holds by sharing that hold: the lock is let go when the
/// request's last guard of it is. The batch does not queue in the lock: it takes it when no
/// request holds it; once it has waited [`PENDING_AFTER`], it marks itself pending and new
/// requests wait for it to run ([`PENDING_WAIT`] at most, and only a little outside a
/// request's scope, where a second taking cannot be told from a first), so that a load that
/// never pauses still lets it in.
#[derive(Debug, Default)]
pub struct Gate {
    lock: Arc<tokio::sync::RwLock<()>>,
    pending: std::sync::atomic::AtomicBool,
    /// Batches waiting for the lock (a start, a delete and a batch may wait at once).
    waiting: std::sync::atomic::AtomicUsize,
    cleared: tokio::sync::Notify,
}

/// How long a batch waits for requests to pause before new ones wait for it.
const PENDING_AFTER: Duration = Duration::from_millis(20);
/// The longest a request waits for a pending batch before it goes ahead anyway (a request
/// in flight longer than that, holding the gate, keeps the batch out meanwhile).
const PENDING_WAIT: Duration = Duration::from_secs(2);
/// The same outside a request's scope.
const PENDING_WAIT_UNSCOPED: Duration = Duration::from_millis(50);

tokio::task_local! {
    /// The gates the current request holds: each lock's address and the request's shared
    /// hold of it (alive while any of the request's guards of that gate is).
    static HELD: std::cell::RefCell<Vec<(usize, std::sync::Weak<tokio::sync::OwnedRwLockReadGuard<()>>)>>;
}

/// Runs one request's work, noting the gates it takes: a gate taken again by the same
/// request shares the hold it has.
pub async fn gate_scope<F: std::future::Future>(f: F) -> F::Output {
    HELD.scope(std::cell::RefCell::new(Vec::new()), f).await
}

/// A gate held shared (by one request, however many times it took it).
#[derive(Debug, Clone)]
pub struct GateGuard {
    _held: Arc<tokio::sync::OwnedRwLockReadGuard<()>>,
}

/// Counts a batch waiting for the gate while it lives; the last to stop waiting (having got
/// in, or given up) clears `pending`.
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.pending.store(false, Ordering::Release);
            self.0.cleared.notify_waiters();
        }
    }
}

impl Gate {
    fn address(&self) -> usize {
        Arc::as_ptr(&self.lock) as usize
    }

    /// Shared: waits while a batch runs (and a while when one is pending); shares the hold
    /// when the current request has it already.
    pub async fn read(&self) -> GateGuard {
        use std::sync::atomic::Ordering;
        let me = self.address();
        let mine = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            h.retain(|(_, held)| held.strong_count() > 0);
            h.iter()
                .find(|(g, _)| *g == me)
                .and_then(|(_, held)| held.upgrade())
        });
        if let Ok(Some(held)) = mine {
            return GateGuard { _held: held };
        }
        if self.pending.load(Ordering::Acquire) {
            let cleared = self.cleared.notified();
            tokio::pin!(cleared);
            cleared.as_mut().enable();
            if self.pending.load(Ordering::Acquire) {
                let wait = match mine {
                    Ok(_) => PENDING_WAIT,
                    Err(_) => PENDING_WAIT_UNSCOPED,
                };
                let _ = tokio::time::timeout(wait, cleared).await;
            }
        }
        let held = Arc::new(self.lock.clone().read_owned().await);
        let _ = HELD.try_with(|h| h.borrow_mut().push((me, Arc::downgrade(&held))));
        GateGuard { _held: held }
    }

    /// Exclusive, for one batch: once no request holds it.
    pub async fn write(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        use std::sync::atomic::Ordering;
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(self);
        let began = Instant::now();
        loop {
            if let Ok(g) = self.lock.clone().try_write_owned() {
                return g;
            }
            if began.elapsed() >= PENDING_AFTER {
                self.pending.store(true, Ordering::Release);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Exclusive at once, when no one can hold it yet (a gate just made).
    fn take_new(&self) -> Option<tokio::sync::OwnedRwLockWriteGuard<()>> {
        self.lock.clone().try_write_owned().ok()
    }
}

/// One hash-placed collection's state in the coordinator.
#[derive(Debug)]
pub(crate) struct HashState {
    pub gate: Gate,
    pub layout: Mutex<HashLayout>,
    /// Bumped by every change of `layout`: shard handles built for another version are
    /// built again.
    pub version: std::sync::atomic::AtomicU64,
    pub progress: Mutex<ReshardProgress>,
}

/// Layout versions, over every collection and state: a state made anew under a name never
/// reuses the version of the one before.
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, std::sync::atomic::Ordering::AcqRel)
}

impl HashState {
    pub fn new(layout: HashLayout) -> HashState {
        HashState {
            gate: Gate::default(),
            layout: Mutex::new(layout),
            version: std::sync::atomic::AtomicU64::new(next_version()),
            progress: Mutex::new(ReshardProgress::default()),
        }
    }

    pub fn layout(&self) -> HashLayout {
        self.layout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_layout(&self, layout: HashLayout) {
        *self.layout.lock().unwrap_or_else(|e| e.into_inner()) = layout;
        self.version
            .store(next_version(), std::sync::atomic::Ordering::Release);
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, ReshardProgress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a resharding needs to make a new shard: the collection's configuration, and its
/// payload indexes.
#[derive(Debug, Clone)]
pub struct ShardTemplate {
    /// The node collection's creation message (without marker).
    pub create: qdrant_client::qdrant::CreateCollection,
    /// Payload indexes, made on the new shard before it takes points.
    pub indexes: Vec<(String, qdrant_client::qdrant::FieldType)>,
}

/// How long one step of a batch (or of starting and finishing) may take.
const STEP_TIME: Duration = Duration::from_secs(60);
/// How long a failed batch waits before it is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The field type a payload index of this schema type is made with.
fn field_type_of(
    schema: qdrant_client::qdrant::PayloadSchemaType,
) -> Option<qdrant_client::qdrant::FieldType> {
    use qdrant_client::qdrant::{FieldType as F, PayloadSchemaType as S};
    Some(match schema {
        S::Keyword => F::Keyword,
        S::Integer => F::Integer,
        S::Float => F::Float,
        S::Geo => F::Geo,
        S::Text => F::Text,
        S::Bool => F::Bool,
        S::Datetime => F::Datetime,
        S::Uuid => F::Uuid,
        S::UnknownType => return None,
    })
}

fn refused(status: u16, reason: String) -> ShardError {
    ShardError::Refused {
        shard: 0,
        status,
        reason,
    }
}

impl Cluster {
    /// Begins resharding collection `name` one shard `direction`, and runs it in the
    /// background; answers once it has begun (the markers written, the new shard made).
    pub async fn start_resharding(
        self: &Arc<Self>,
        name: &str,
        direction: Direction,
        template: ShardTemplate,
    ) -> Result<(), ShardError> {
        if self.is_keyed(name) {
            return Err(refused(
                501,
                "Not implemented: resharding a collection sharded by key (each key's group \
                 keeps the shards it was created with)"
                    .into(),
            ));
        }
        let state = self.known_hash_state(name)?;
        let running = |layout: &HashLayout| match &layout.resharding {
            Some(r) => Err(refused(
                400,
                format!(
                    "Bad request: collection `{name}` is already resharding {} from {} to {} \
                     shards",
                    r.direction().as_str(),
                    r.from,
                    r.to
                ),
            )),
            None => Ok(()),
        };
        // Refused at once while one runs (its batches would keep this waiting to its end).
        running(&state.layout())?;
        // The gate, exclusively: no request runs while the layout changes.
        let gate = tokio::time::timeout(STEP_TIME, state.gate.write())
            .await
            .map_err(|_| ShardError::Timeout { shard: 0 })?;
        if !self.is_current(name, &state) {
            return Err(refused(
                404,
                format!("Not found: Collection `{name}` doesn't exist!"),
            ));
        }
        let layout = state.layout();
        running(&layout)?;
        let from = layout.shards;
        let to = match direction {
            Direction::Up if from >= self.nodes.len() => {
                return Err(refused(
                    400,
                    format!(
                        "Bad request: collection `{name}` has a shard on each of the {} nodes: \
                         list another node (`--cluster-nodes`) to add a shard on it",
                        self.nodes.len()
                    ),
                ))
            }
            Direction::Up => from + 1,
            Direction::Down if from <= 1 => {
                return Err(refused(
                    400,
                    format!("Bad request: collection `{name}` has one shard: it cannot lose it"),
                ))
            }
            Direction::Down => from - 1,
        };
        // The new shard's payload indexes: those the catalog knew, and those made since on
        // the nodes (an index made while this waited for the gate is on node 0 by now).
        let mut template = template;
        let deadline = Instant::now() + STEP_TIME;
        let first = self.nodes[0].collection_info(name, deadline).await?;
        for (field, schema) in &first.payload_schema {
            let kind = qdrant_client::qdrant::PayloadSchemaType::try_from(schema.data_type)
                .ok()
                .and_then(field_type_of);
            if let Some(kind) = kind {
                if !template.indexes.iter().any(|(f, _)| f == field) {
                    template.indexes.push((field.clone(), kind));
                }
            }
        }
        let mut resharding = Resharding::new(from, to);
        let limit = self.reshard_batch();
        let draining: Vec<usize> = resharding.drained.keys().copied().collect();
        for k in draining {
            resharding.limits.insert(k, limit);
        }
        // Writes answered without waiting (a Qdrant node applies them later) are applied
        // before the first batch reads a shard: a write that waits is applied after them.
        // The write deletes what a filter matching no id selects (Qdrant refuses an empty
        // list of ids).
        let nothing = Arc::new(payload::Filter::has_id(std::iter::empty()));
        for k in 0..from {
            self.plain_shard(name, k)
                .write(
                    storage::Update::Delete(storage::PointSelector::Filter(nothing.clone())),
                    true,
                    deadline,
                )
                .await?;
        }
        // The commit point first: node 0's marker. From here on, a coordinator starting up
        // resumes the resharding.
        if let Err(e) = self
            .write_marker(name, 0, resharding.marker(0), deadline)
            .await
        {
            // Maybe written, its answer lost: written back as it was, as far as it goes.
            let stable = json!({"index": 0, "of": from});
            let undo = Instant::now() + STEP_TIME;
            if self.write_marker(name, 0, stable, undo).await.is_err() {
                tracing::error!(collection = %name, error = %e, "a resharding that failed to begin may be resumed by a coordinator starting up");
            }
            return Err(e);
        }
        if let Err((e, made)) = self.prepare(name, &resharding, &template, deadline).await {
            // Back to what it was, as far as it goes: the new shard holds nothing yet, no
            // write having been sent by the new layout. Node 0's marker last, and only once
            // every other is back: it is the commit point.
            let undo = Instant::now() + STEP_TIME;
            let mut undone = true;
            if made {
                undone &= self.nodes[from].delete_collection(name, undo).await.is_ok();
            }
            for k in (0..from).rev() {
                if !undone {
                    break;
                }
                let stable = json!({"index": k, "of": from});
                undone &= self.write_marker(name, k, stable, undo).await.is_ok();
            }
            if !undone {
                tracing::error!(collection = %name, error = %e, "a resharding that failed to begin could not be undone: a coordinator starting up resumes it");
            }
            return Err(e);
        }
        state.set_layout(HashLayout {
            shards: from,
            resharding: Some(resharding),
        });
        *state.progress() = ReshardProgress::default();
        tracing::info!(collection = %name, from, to, "resharding begun");
        self.spawn_resharding(name, state, gate);
        Ok(())
    }

    /// Resumes the resharding that node 0's marker of `name` names, found at start-up:
    /// registers the layout and runs it, its first batch before any request.
    pub(crate) fn resume_resharding(
        self: &Arc<Self>,
        name: &str,
        resharding: Resharding,
        template: ShardTemplate,
    ) {
        let state = Arc::new(HashState::new(HashLayout {
            shards: resharding.from,
            resharding: Some(resharding.clone()),
        }));
        let gate = state.gate.take_new().expect("a new gate is free");
        self.write_hashed().insert(name.to_string(), state.clone());
        let cluster = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            // The markers and the new shard, as the start left them (a resharding whose
            // shards are all drained only has its end to finish).
            while !resharding.is_drained() {
                let deadline = Instant::now() + STEP_TIME;
                match cluster
                    .prepare(&name, &resharding, &template, deadline)
                    .await
                {
                    Ok(()) => break,
                    Err((e, _)) => {
                        if !cluster.is_current(&name, &state) {
                            return;
                        }
                        tracing::warn!(collection = %name, error = %e, "resuming a resharding: retrying");
                        state.progress().error = Some(e.to_string());
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
            tracing::info!(collection = %name, from = resharding.from, to = resharding.to, "resharding resumed");
            cluster.spawn_resharding(&name, state, gate);
        });
    }

    /// Makes sure the shards are as a running resharding needs: the added shard's collection
    /// on its node (with the indexes), and every marker but node 0's saying so. On failure,
    /// whether this call made the added shard's collection.
    async fn prepare(
        &self,
        name: &str,
        r: &Resharding,
        template: &ShardTemplate,
        deadline: Instant,
    ) -> Result<(), (ShardError, bool)> {
        let mut made = false;
        if r.direction() == Direction::Up {
            let k = r.changed_shard();
            let node = &self.nodes[k];
            let mut m = template.create.clone();
            m.metadata
                .insert(SHARD_MARKER.to_string(), wire::json_value(&r.marker(k)));
            match node.create_collection(m, deadline).await {
                Ok(()) => made = true,
                Err(ShardError::Refused { status: 409, .. }) => {
                    // Made by a start or resume cut short: ours only if its marker says so.
                    let info = node
                        .collection_info(name, deadline)
                        .await
                        .map_err(|e| (e, false))?;
                    let marker = info
                        .config
                        .as_ref()
                        .and_then(|c| c.metadata.get(SHARD_MARKER))
                        .map(wire::value_json)
                        .and_then(|m| ShardMarker::read(&m));
                    match marker {
                        Some(ShardMarker::Resharding { from, to, .. })
                            if from == r.from && to == r.to => {}
                        _ => {
                            return Err((
                                refused(
                                    409,
                                    format!(
                                        "Conflict: node {} holds a collection `{name}` that is \
                                         not this collection's new shard: delete it there first",
                                        node.url()
                                    ),
                                ),
                                false,
                            ))
                        }
                    }
                }
                Err(e) => return Err((e, false)),
            }
            for (field, kind) in &template.indexes {
                node.create_field_index(name, field, *kind, deadline)
                    .await
                    .map_err(|e| (e, made))?;
            }
        }
        for k in 1..r.from {
            self.write_marker(name, k, r.marker(k), deadline)
                .await
                .map_err(|e| (e, made))?;
        }
        Ok(())
    }

    fn spawn_resharding(
        self: &Arc<Self>,
        name: &str,
        state: Arc<HashState>,
        gate: tokio::sync::OwnedRwLockWriteGuard<()>,
    ) {
        let cluster = self.clone();
        let name = name.to_string();
        tokio::spawn(async move { cluster.run_resharding(&name, state, gate).await });
    }

    /// Drains batch after batch, each under the gate, then finishes. Stops when the
    /// collection is deleted meanwhile (a delete takes the gate, so never within a batch).
    /// `first` is the gate the first batch runs under.
    async fn run_resharding(
        self: Arc<Self>,
        name: &str,
        state: Arc<HashState>,
        first: tokio::sync::OwnedRwLockWriteGuard<()>,
    ) {
        let mut gate = Some(first);
        loop {
            let guard = match gate.take() {
                Some(g) => g,
                None => state.gate.write().await,
            };
            if !self.is_current(name, &state) {
                tracing::info!(collection = %name, "resharding stopped: the collection is gone");
                return;
            }
            let Some(resharding) = state.layout().resharding else {
                return;
            };
            let step = match resharding.next_draining() {
                Some((shard, drained)) => self
                    .drain_batch(name, &state, &resharding, shard, drained)
                    .await
                    .map(|_| false),
                None => self.finish(name, &state, &resharding).await.map(|_| true),
            };
            match step {
                Ok(true) => {
                    state.progress().error = None;
                    drop(guard);
                    tracing::info!(collection = %name, from = resharding.from, to = resharding.to, "resharding done");
                    return;
                }
                Ok(false) => {
                    state.progress().error = None;
                    drop(guard);
                }
                Err(BatchError::Retry(e)) => {
                    tracing::warn!(collection = %name, error = %e, "a resharding batch failed: retrying");
                    state.progress().error = Some(e.to_string());
                    drop(guard);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(BatchError::Stuck(e)) => {
                    // Points may be on two shards, or a cursor unwritten: nothing runs until
                    // the batch is run again.
                    tracing::error!(collection = %name, error = %e, "a resharding batch was cut off midway: holding the collection until it is run again");
                    state.progress().error = Some(e.to_string());
                    tokio::time::sleep(RETRY_PAUSE).await;
                    gate = Some(guard);
                }
            }
            // Requests waiting for the gate go first.
            tokio::task::yield_now().await;
        }
    }

    /// Whether `state` is still collection `name`'s (not deleted, nor created anew).
    fn is_current(&self, name: &str, state: &Arc<HashState>) -> bool {
        self.read_hashed()
            .get(name)
            .is_some_and(|s| Arc::ptr_eq(s, state))
    }

    /// One batch of draining shard `shard`: the next page of its ids; those that move are
    /// copied to their new shards and deleted from it; then its cursor advances, on the
    /// node's marker and in the layout.
    async fn drain_batch(
        &self,
        name: &str,
        state: &HashState,
        r: &Resharding,
        shard: usize,
        drained: Drained,
    ) -> Result<(), BatchError> {
        let deadline = Instant::now() + STEP_TIME;
        let source = self.plain_shard(name, shard);
        let from = match drained {
            Drained::Before(id) => Some(id),
            _ => None,
        };
        let limit = r
            .limits
            .get(&shard)
            .copied()
            .unwrap_or_else(|| self.reshard_batch());
        let page = source
            .scroll(
                Arc::new(ScrollRequest {
                    from,
                    limit,
                    filter: None,
                    with_payload: payload::PayloadSelector::Nothing,
                    with_vector: storage::VectorSelector::Nothing,
                }),
                deadline,
            )
            .await
            .map_err(BatchError::Retry)?;
        let moving: Vec<PointId> = page
            .points
            .iter()
            .map(|p| p.id)
            .filter(|id| jump_shard_of(id, r.to) != shard)
            .collect();
        if !moving.is_empty() {
            self.move_points(name, shard, r.to, &source, &moving, deadline)
                .await?;
            if let Some(pause) = self.pause_after_move {
                tokio::time::sleep(pause).await;
            }
        }
        let mut next = r.clone();
        next.drained.insert(
            shard,
            match page.next {
                Some(id) => Drained::Before(id),
                None => Drained::Done,
            },
        );
        next.limits.insert(shard, self.reshard_batch());
        // Points moved, the cursor not written: requests wait until it is (a retry finds
        // the moved points gone from this shard, and writes the cursor past them).
        self.write_marker(name, shard, next.marker(shard), deadline)
            .await
            .map_err(BatchError::Stuck)?;
        state.set_layout(HashLayout {
            shards: r.from,
            resharding: Some(next),
        });
        let mut p = state.progress();
        p.moved += moving.len() as u64;
        p.batches += 1;
        Ok(())
    }

    /// Copies points `ids` of shard `shard` to their shards among `to`, then deletes them
    /// from it. When a copy fails, the copies are deleted again (each point is then on its
    /// old shard only, and the batch can wait); when that, or the delete from the old
    /// shard, fails, points may be on two shards, and the batch is retried before any
    /// request runs (whether the lost answer's write was applied or not, a retry puts each
    /// point on one shard).
    async fn move_points(
        &self,
        name: &str,
        shard: usize,
        to: usize,
        source: &RemoteShard,
        ids: &[PointId],
        deadline: Instant,
    ) -> Result<(), BatchError> {
        let records = source
            .retrieve(
                ids.to_vec(),
                Arc::new(RetrieveRequest {
                    with_payload: payload::PayloadSelector::All,
                    with_vector: storage::VectorSelector::All,
                }),
                deadline,
            )
            .await
            .map_err(BatchError::Retry)?;
        let mut by_target: BTreeMap<usize, Vec<storage::PointWrite>> = BTreeMap::new();
        for r in records {
            by_target
                .entry(jump_shard_of(&r.id, to))
                .or_default()
                .push(storage::PointWrite {
                    id: r.id,
                    vectors: r.vectors.unwrap_or_default(),
                    sparse: r.sparse,
                    multi: r.multi,
                    payload: r.payload.unwrap_or_default(),
                });
        }
        let targets: Vec<usize> = by_target.keys().copied().collect();
        let copies = futures::future::join_all(by_target.into_iter().map(|(k, points)| {
            self.plain_shard(name, k)
                .write(storage::Update::Upsert(points), true, deadline)
        }))
        .await;
        if let Some(e) = copies.into_iter().find_map(Result::err) {
            let undo_deadline = Instant::now() + STEP_TIME;
            let undone = futures::future::join_all(targets.iter().map(|&k| {
                self.plain_shard(name, k).write(
                    storage::Update::Delete(storage::PointSelector::Ids(ids.to_vec())),
                    true,
                    undo_deadline,
                )
            }))
            .await;
            return Err(match undone.into_iter().find_map(Result::err) {
                None => BatchError::Retry(e),
                Some(u) => BatchError::Stuck(ShardError::Failed {
                    shard: shard as u32,
                    reason: format!("{e}; the copies made could not be deleted again: {u}"),
                }),
            });
        }
        source
            .write(
                storage::Update::Delete(storage::PointSelector::Ids(ids.to_vec())),
                true,
                deadline,
            )
            .await
            .map(|_| ())
            .map_err(BatchError::Stuck)
    }

    /// Ends a resharding whose shards are all drained, under the gate: points written to
    /// the removed shard behind this coordinator's back are moved too, its collection is
    /// deleted, every marker rewritten stable (node 0's last: the commit point), and only
    /// then the layout made stable. Each step may be run again: a removed shard found gone
    /// was deleted already.
    async fn finish(
        &self,
        name: &str,
        state: &Arc<HashState>,
        r: &Resharding,
    ) -> Result<(), BatchError> {
        let deadline = Instant::now() + STEP_TIME;
        if r.direction() == Direction::Down {
            let k = r.changed_shard();
            let source = self.plain_shard(name, k);
            loop {
                let page = match source
                    .scroll(
                        Arc::new(ScrollRequest {
                            from: None,
                            limit: self.reshard_batch(),
                            filter: None,
                            with_payload: payload::PayloadSelector::Nothing,
                            with_vector: storage::VectorSelector::Nothing,
                        }),
                        deadline,
                    )
                    .await
                {
                    Ok(page) => page,
                    Err(ShardError::Refused { status: 404, .. }) => break,
                    Err(e) => return Err(BatchError::Retry(e)),
                };
                if page.points.is_empty() {
                    match self.nodes[k].delete_collection(name, deadline).await {
                        Ok(_) | Err(ShardError::Refused { status: 404, .. }) => break,
                        Err(e) => return Err(BatchError::Stuck(e)),
                    }
                }
                // Drained, yet holding points: written to behind this coordinator's back.
                tracing::warn!(collection = %name, shard = k, points = page.points.len(), "the removed shard holds points after it was drained: moving them");
                let ids: Vec<PointId> = page.points.iter().map(|p| p.id).collect();
                self.move_points(name, k, r.to, &source, &ids, deadline)
                    .await?;
            }
        }
        for k in (0..r.to).rev() {
            self.write_marker(name, k, json!({"index": k, "of": r.to}), deadline)
                .await
                .map_err(|e| match r.direction() {
                    // The removed shard is gone: reads must not reach it again.
                    Direction::Down => BatchError::Stuck(e),
                    Direction::Up => BatchError::Retry(e),
                })?;
        }
        state.set_layout(HashLayout {
            shards: r.to,
            resharding: None,
        });
        Ok(())
    }

    /// Shard `k` of hash-placed collection `name`, for the resharding's own reads and writes.
    fn plain_shard(&self, name: &str, k: usize) -> RemoteShard {
        RemoteShard::new(
            self.nodes[k].clone(),
            name,
            k as u32,
            Arc::new(HashMap::new()),
            Arc::new(EncodedQuery::default()),
        )
    }

    /// Rewrites shard `k`'s marker (the node merges it into the collection's metadata).
    async fn write_marker(
        &self,
        name: &str,
        k: usize,
        marker: Json,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let mut metadata = HashMap::new();
        metadata.insert(SHARD_MARKER.to_string(), wire::json_value(&marker));
        self.nodes[k]
            .update_metadata(name, metadata, deadline)
            .await
            .map_err(|e| match e {
                ShardError::Refused { status, reason, .. } => ShardError::Refused {
                    shard: k as u32,
                    status,
                    reason,
                },
                other => other,
            })
    }

    /// Every resharding under way, with what it has done.
    pub fn reshardings(&self) -> Vec<(String, Resharding, ReshardProgress)> {
        let states: Vec<(String, Arc<HashState>)> = self
            .read_hashed()
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        states
            .into_iter()
            .filter_map(|(n, s)| {
                let r = s.layout().resharding?;
                let p = s.progress().clone();
                Some((n, r, p))
            })
            .collect()
    }

    /// The resharding under way on `name` and what it has done; `None` when none runs.
    pub fn resharding_of(&self, name: &str) -> Option<(Resharding, ReshardProgress)> {
        let state = self.read_hashed().get(name).cloned()?;
        let r = state.layout().resharding?;
        let p = state.progress().clone();
        Some((r, p))
    }
}

/// Why a batch did not complete.
enum BatchError {
    /// Nothing changed that a retry does not mend.
    Retry(ShardError),
    /// Points may be on two shards: requests must wait until a retry mends it.
    Stuck(ShardError),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Retry(e) | BatchError::Stuck(e) => e.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_moves_once_its_shard_is_drained_past_it() {
        let ids: Vec<PointId> = (0..5_000u64).map(PointId::Num).collect();
        for (from, to) in [(2usize, 3usize), (3, 2), (1, 2), (4, 3)] {
            let mut r = Resharding::new(from, to);
            // Before: where the old layout puts it.
            assert!(ids
                .iter()
                .all(|id| r.shard_of(id) == jump_shard_of(id, from)));
            let draining: Vec<usize> = r.drained.keys().copied().collect();
            // Half way through each draining shard.
            for &k in &draining {
                r.drained.insert(k, Drained::Before(PointId::Num(2_500)));
            }
            for id in &ids {
                let expect = if jump_shard_of(id, from) != jump_shard_of(id, to)
                    && *id < PointId::Num(2_500)
                {
                    jump_shard_of(id, to)
                } else {
                    jump_shard_of(id, from)
                };
                assert_eq!(r.shard_of(id), expect, "{id:?} {from}->{to}");
                assert!(r.shard_of(id) < r.shards());
            }
            for &k in &draining {
                r.drained.insert(k, Drained::Done);
            }
            assert!(ids.iter().all(|id| r.shard_of(id) == jump_shard_of(id, to)));
            assert_eq!(r.next_draining(), None);
        }
    }

    #[test]
    fn markers_read_back_and_odd_ones_are_refused() {
        let mut r = Resharding::new(2, 3);
        r.limits.insert(1, 40);
        r.drained.insert(0, Drained::Done);
        r.drained
            .insert(1, Drained::Before(PointId::Uuid(0xabc_u128 << 64)));
        for k in 0..3 {
            let m = ShardMarker::read(&r.marker(k)).unwrap();
            let ShardMarker::Resharding {
                index,
                from,
                to,
                drained,
                batch,
            } = m
            else {
                panic!("{m:?}")
            };
            assert_eq!((index, from, to), (k, 2, 3));
            assert_eq!(drained, r.drained.get(&k).copied().unwrap_or(Drained::Done));
            assert_eq!(batch, r.limits.get(&k).copied());
        }
        assert_eq!(
            ShardMarker::read(&json!({"index": 1, "of": 3})),
            Some(ShardMarker::Stable { index: 1, of: 3 })
        );
        for bad in [
            json!({"index": 3, "of": 3}),
            json!({"index": 0, "of": 2, "resharding": {"from": 2, "to": 4, "drained": "start"}}),
            json!({"index": 0, "of": 2, "resharding": {"from": 3, "to": 2, "drained": "start"}}),
            json!({"index": 0, "of": 2, "resharding": {"from": 2, "to": 3, "drained": "later"}}),
            json!({"index": 0, "of": 1, "collection": "c", "shard_key": "a", "nodes": [0]}),
        ] {
            assert_eq!(ShardMarker::read(&bad), None, "{bad}");
        }
        let d = Drained::Before(PointId::Num(7));
        assert!(d.covers(&PointId::Num(6)) && !d.covers(&PointId::Num(7)));
        assert!(!d.covers(&PointId::Uuid(1)));
        assert!(Drained::Before(PointId::Uuid(5)).covers(&PointId::Num(u64::MAX)));
    }
}
