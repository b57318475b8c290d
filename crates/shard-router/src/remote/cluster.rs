//! A cluster: collections whose shards are the same-named collections on a fixed list of
//! nodes, one shard per node, points placed by jump consistent hashing of their ids; or,
//! for a collection sharded by key (`sharding_method: custom`), one group of nodes for each
//! of its shard keys ([`super::keys`]).

mod reshard;

pub use reshard::{
    gate_scope, Direction, Drained, GateGuard, HashLayout, ReshardProgress, Resharding,
    ShardMarker, ShardTemplate,
};

use super::keys::{self, FieldPlacement, KeyError, KeyLayout, KeySelection, ShardKey};
use super::regions::{self, Region, RegionLayout};
use super::{wire, EncodedQuery, Node, NodeOptions, Placement, RemoteShard};
use crate::{Shard, ShardError};
use quant::Metric;
use reshard::HashState;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use storage::{CollectionConfig, Update};

/// The metadata key each node's copy of a collection carries: which shard of how many it is,
/// so that a coordinator given the nodes in another order, or another number of them, finds
/// out before it places a point where no read will look.
pub const SHARD_MARKER: &str = "vector_router_shard";

/// The marker of shard `k` of `n`.
pub fn shard_marker(k: usize, n: usize) -> qdrant_client::qdrant::Value {
    wire::json_value(&serde_json::json!({ "index": k, "of": n }))
}

/// The marker of shard `k` of key `key` of collection `collection`, whose group is `group`
/// (node positions, in shard order) and region `region`. The collection's `shard_number`
/// (the default shards of a new key), `shard_key_field` and `shard_region_field` are kept in
/// it, so that a coordinator importing the collection from its keys restores them.
pub fn key_marker(
    collection: &str,
    key: &ShardKey,
    k: usize,
    group: &[usize],
    region: Option<&Region>,
    config: &CollectionConfig,
) -> qdrant_client::qdrant::Value {
    wire::json_value(&serde_json::json!({
        "collection": collection,
        "shard_key": key.to_json(),
        "index": k,
        "of": group.len(),
        "nodes": group,
        "region": region.map(Region::to_json),
        "shard_number": config.shard_number,
        "shard_key_field": config.shard_key_field,
        "shard_region_field": config.shard_region_field,
    }))
}

/// A key's node collection, as one node describes it: found while importing the catalog.
#[derive(Debug, Clone)]
pub struct FoundKey {
    /// The collection it is a key of.
    pub collection: String,
    /// The key.
    pub key: ShardKey,
    /// Its group (node positions in shard order).
    pub group: Vec<usize>,
    /// The collection's `shard_number` setting, as the marker keeps it.
    pub shard_number: Option<u32>,
    /// The collection's `shard_key_field`, as the marker keeps it.
    pub field: Option<String>,
    /// The collection's `shard_region_field`, as the marker keeps it.
    pub region_field: Option<String>,
    /// The key's region, if it has one.
    pub region: Option<Region>,
    /// The node's description of it (configuration, payload schema).
    pub info: qdrant_client::qdrant::CollectionInfo,
}

/// A key marker, read.
struct KeyMarker {
    collection: String,
    key: ShardKey,
    index: usize,
    group: Vec<usize>,
    shard_number: Option<u32>,
    field: Option<String>,
    region_field: Option<String>,
    region: Option<Region>,
}

/// Reads a key marker; `None` when it is not one (a region that does not read included:
/// taken for no region, the key would take points outside every region).
fn read_key_marker(v: &serde_json::Value) -> Option<KeyMarker> {
    let collection = v.get("collection")?.as_str()?.to_string();
    let key = ShardKey::from_json(v.get("shard_key")?).ok()?;
    let index = usize::try_from(v.get("index")?.as_u64()?).ok()?;
    let group: Vec<usize> = v
        .get("nodes")?
        .as_array()?
        .iter()
        .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()))
        .collect::<Option<_>>()?;
    let of = usize::try_from(v.get("of")?.as_u64()?).ok()?;
    let shard_number = v
        .get("shard_number")
        .and_then(serde_json::Value::as_u64)
        .and_then(|x| u32::try_from(x).ok());
    let text = |name: &str| {
        v.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let region = match v.get("region") {
        None | Some(serde_json::Value::Null) => None,
        Some(r) => Some(Region::from_json(r).ok()?),
    };
    (of == group.len() && index < of).then_some(KeyMarker {
        collection,
        key,
        index,
        group,
        shard_number,
        field: text("shard_key_field"),
        region_field: text("shard_region_field"),
        region,
    })
}

/// Why a collection on the nodes cannot be served by this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// A node does not hold it or cannot describe it.
    Unreadable(String),
    /// A node holds it as another shard than its place in the list says, or without a
    /// marker: serving it would place writes where no read looks.
    Misplaced(String),
    /// The first node holds it without a marker: not made through a cluster router (a
    /// collection of the node's own), so not one of the cluster's.
    Foreign(String),
}

impl std::fmt::Display for PlacementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlacementError::Unreadable(m)
            | PlacementError::Misplaced(m)
            | PlacementError::Foreign(m) => f.write_str(m),
        }
    }
}

/// How long undoing a partial create may take.
const UNDO_TIME: Duration = Duration::from_secs(10);

/// A collection's state over a cluster's nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCollectionState {
    /// 0 green, 1 yellow (optimizing), 2 red (failed), the worst node's.
    pub status: u8,
    /// The first node's optimizer error, if any.
    pub optimizer_error: Option<String>,
    /// Points, over the nodes.
    pub points: u64,
    /// Indexed vectors, over the nodes.
    pub indexed_vectors: u64,
    /// Segments, over the nodes.
    pub segments: u64,
}

/// The nodes of a cluster, in shard order: node `k` holds shard `k` of every collection
/// sharded by hash that has more than `k` shards; the collections sharded by key, with their
/// keys' groups.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Arc<Node>>,
    /// The collections placed by hash: their shards, and the resharding under way.
    hashed: RwLock<HashMap<String, Arc<HashState>>>,
    /// Points a resharding batch reads at once.
    reshard_batch: std::sync::atomic::AtomicUsize,
    /// A fail point for the tests (`VR_TEST_RESHARD_PAUSE_AFTER_MOVE_MS`): how long a batch
    /// waits between moving its points and writing its cursor, so that a test can kill the
    /// coordinator in that window.
    pause_after_move: Option<Duration>,
    /// Collections this coordinator could not place at start-up: a resharding found on them
    /// later is this coordinator's to resume (another's is left alone).
    unplaced_at_start: std::sync::Mutex<std::collections::HashSet<String>>,
    keyed: RwLock<HashMap<String, Keyed>>,
    /// Bumped by every change of `keyed` (and after the node side of a key's or a keyed
    /// collection's delete): a scan of the nodes that saw another epoch is not applied.
    epoch: std::sync::atomic::AtomicU64,
    /// Key creations and deletes in flight: a scan is not applied while one runs (its node
    /// side may be half done, which a scan would read as the key found, or gone).
    busy: std::sync::atomic::AtomicUsize,
}

/// A shard key to create: the key, its group (node positions, in shard order), and its
/// region, if it has one.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key.
    pub key: ShardKey,
    /// Its group.
    pub group: Vec<usize>,
    /// Its region (a collection placed by region only).
    pub region: Option<Region>,
}

/// A collection sharded by key: its keys' groups, and their regions.
#[derive(Debug, Clone, Default)]
struct Keyed {
    layout: KeyLayout,
    /// Shared with the writes placing points by them (a polygon may be large).
    regions: Arc<RegionLayout>,
    /// Placed by region (`shard_region_field`): its keys' markers are read again by every
    /// scan, since a key deleted and created again with another region through another
    /// coordinator keeps its name, and a stale region would route reads past its points.
    by_region: bool,
}

/// Counts one key operation in flight while it lives.
struct Busy<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Busy<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Busy<'a> {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(count)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Where a collection's points are: (node collection name, node position) for every shard.
type Copies = Vec<(String, usize)>;

/// Points a resharding batch reads at once, unless configured otherwise.
pub const DEFAULT_RESHARD_BATCH: usize = 256;

impl Cluster {
    /// A cluster over `urls` (each a node's gRPC URL, each once).
    pub fn new(urls: &[String], options: &NodeOptions) -> Result<Cluster, String> {
        if urls.is_empty() {
            return Err("a cluster needs at least one node".into());
        }
        let mut seen = std::collections::HashSet::new();
        for u in urls {
            if !seen.insert(u.trim_end_matches('/')) {
                return Err(format!(
                    "node `{u}` is listed twice: each node holds one shard of the collection"
                ));
            }
        }
        let nodes = urls
            .iter()
            .map(|u| Node::new(u, options).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Cluster {
            nodes,
            hashed: RwLock::new(HashMap::new()),
            reshard_batch: std::sync::atomic::AtomicUsize::new(DEFAULT_RESHARD_BATCH),
            pause_after_move: std::env::var("VR_TEST_RESHARD_PAUSE_AFTER_MOVE_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
            unplaced_at_start: std::sync::Mutex::new(std::collections::HashSet::new()),
            keyed: RwLock::new(HashMap::new()),
            epoch: std::sync::atomic::AtomicU64::new(0),
            busy: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The nodes, in shard order.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// Probes every node at once: why each that does not answer does not, naming it (none
    /// when all answer).
    pub async fn probe(&self, timeout: Duration) -> Vec<String> {
        let answers = futures::future::join_all(self.nodes.iter().map(|n| n.probe(timeout))).await;
        self.nodes
            .iter()
            .zip(answers)
            .filter_map(|(node, answer)| {
                answer
                    .err()
                    .map(|e| format!("node {} does not answer: {e}", node.url()))
            })
            .collect()
    }

    /// The shards of hash-placed collection `name`, whose dense vectors are measured by
    /// `metrics`, and the layout version they were built for ([`Cluster::hash_version`]).
    /// While it reshards, every shard that may hold points, each asked for any id.
    pub fn shards(
        &self,
        name: &str,
        metrics: HashMap<String, Metric>,
    ) -> (u64, Arc<[Arc<dyn Shard>]>) {
        let Some(state) = self.hash_state(name) else {
            // Deleted meanwhile (a request reads shards only once the layout is known).
            return (0, Arc::from(Vec::new()));
        };
        let version = state.version.load(std::sync::atomic::Ordering::Acquire);
        let layout = state.layout();
        let placement = match layout.resharding {
            Some(_) => Placement::Any,
            None => Placement::Jump,
        };
        let metrics = Arc::new(metrics);
        let encoded = Arc::new(EncodedQuery::default());
        let shards = self.nodes[..layout.read_shards().min(self.nodes.len())]
            .iter()
            .enumerate()
            .map(|(k, n)| {
                Arc::new(
                    RemoteShard::new(n.clone(), name, k as u32, metrics.clone(), encoded.clone())
                        .with_placement(placement),
                ) as Arc<dyn Shard>
            })
            .collect();
        (version, shards)
    }

    /// The version of hash-placed collection `name`'s layout: shards built for another are
    /// stale.
    pub fn hash_version(&self, name: &str) -> u64 {
        self.hash_state(name)
            .map(|s| s.version.load(std::sync::atomic::Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Collection `name`'s hash layout; `None` when it is not known (not placed by hash, or
    /// its nodes could not be read yet).
    pub fn hash_layout(&self, name: &str) -> Option<HashLayout> {
        self.hash_state(name).map(|s| s.layout())
    }

    /// Waits until no resharding batch of hash-placed collection `name` runs, and keeps one
    /// from starting while the guard lives: every read and write of the collection holds it.
    /// `None` for a collection sharded by key; an error when its layout is not known.
    pub async fn read_gate(&self, name: &str) -> Result<Option<reshard::GateGuard>, ShardError> {
        if self.is_keyed(name) {
            return Ok(None);
        }
        Ok(Some(self.known_hash_state(name)?.gate.read().await))
    }

    /// Sets the points a resharding batch reads at once.
    pub fn set_reshard_batch(&self, points: usize) {
        self.reshard_batch
            .store(points.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    fn reshard_batch(&self) -> usize {
        self.reshard_batch
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hash-placed collection `name`'s state, when known.
    fn hash_state(&self, name: &str) -> Option<Arc<HashState>> {
        self.read_hashed().get(name).cloned()
    }

    /// Hash-placed collection `name`'s state, or why it cannot be served: its layout is
    /// learnt from the nodes when it is created or imported, never assumed.
    fn known_hash_state(&self, name: &str) -> Result<Arc<HashState>, ShardError> {
        self.hash_state(name)
            .ok_or_else(|| ShardError::Unavailable {
                shard: 0,
                reason: format!(
                    "collection `{name}`: where its shards are is not known yet (its nodes could \
                 not be read when it was imported; tried again every 10 s)"
                ),
            })
    }

    /// Collection `name`'s hash layout, or why it is not known.
    pub fn known_hash_layout(&self, name: &str) -> Result<HashLayout, ShardError> {
        self.known_hash_state(name).map(|s| s.layout())
    }

    /// Notes a collection that could not be placed at start-up.
    pub fn note_unplaced_at_start(&self, name: &str) {
        self.unplaced_at_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
    }

    /// Whether `name` could not be placed at start-up (and forgets it).
    pub fn take_unplaced_at_start(&self, name: &str) -> bool {
        self.unplaced_at_start
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// Whether the layout of hash-placed collection `name` is known.
    pub fn is_hash_registered(&self, name: &str) -> bool {
        self.read_hashed().contains_key(name)
    }

    /// Registers hash-placed collection `name` as found on the nodes
    /// ([`Cluster::placed_collection`]): a resharding under way is resumed (`template` makes
    /// its new shard; without one it cannot be, and the collection is not registered).
    pub fn register_hashed(
        self: &Arc<Self>,
        name: &str,
        layout: HashLayout,
        template: Option<ShardTemplate>,
    ) -> Result<(), String> {
        match (layout.resharding.clone(), template) {
            (Some(r), Some(template)) => {
                self.resume_resharding(name, r, template);
                Ok(())
            }
            (Some(_), None) => Err(format!(
                "collection `{name}` is resharding, and its new shard cannot be described"
            )),
            (None, _) => {
                self.write_hashed()
                    .insert(name.to_string(), Arc::new(HashState::new(layout)));
                Ok(())
            }
        }
    }

    fn read_hashed(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<HashState>>> {
        self.hashed.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_hashed(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<HashState>>> {
        self.hashed.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `name` is sharded by key here.
    pub fn is_keyed(&self, name: &str) -> bool {
        self.read_keyed().contains_key(name)
    }

    /// Marks `name` as sharded by key (with no keys yet, unless it has some), placed by
    /// region or not.
    pub fn add_keyed(&self, name: &str, by_region: bool) {
        self.write_keyed()
            .entry(name.to_string())
            .or_default()
            .by_region |= by_region;
    }

    /// Puts back the state of a collection whose delete failed (unless one was made anew
    /// meanwhile). A resharding it ran stopped: it is resumed by a coordinator starting up.
    fn restore_hashed(&self, name: &str, state: Arc<HashState>) {
        if state.layout().resharding.is_some() {
            tracing::error!(collection = %name, "a delete of a resharding collection failed: the resharding stopped; restart the coordinator to resume it");
        }
        self.write_hashed().entry(name.to_string()).or_insert(state);
    }

    /// Forgets hash-placed collection `name`'s state, if it is still `state`.
    fn forget_hashed(&self, name: &str, state: &Arc<HashState>) {
        let mut hashed = self.write_hashed();
        if hashed.get(name).is_some_and(|s| Arc::ptr_eq(s, state)) {
            hashed.remove(name);
        }
    }

    /// Forgets a collection sharded by key (deleted).
    pub fn forget_keyed(&self, name: &str) {
        self.write_keyed().remove(name);
    }

    /// The keys of `name` and their groups; `None` when it is not sharded by key.
    pub fn key_layout(&self, name: &str) -> Option<KeyLayout> {
        self.read_keyed().get(name).map(|k| k.layout.clone())
    }

    /// The regions of `name`'s keys (none when it has none, or is not sharded by key).
    pub fn regions(&self, name: &str) -> Arc<RegionLayout> {
        self.read_keyed()
            .get(name)
            .map(|k| k.regions.clone())
            .unwrap_or_default()
    }

    fn read_keyed(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Keyed>> {
        self.keyed.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_keyed(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Keyed>> {
        let guard = self.keyed.write().unwrap_or_else(|e| e.into_inner());
        self.touch();
        guard
    }

    /// Marks the key layouts changed: a scan of the nodes begun before is not applied.
    fn touch(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The shards of keyed collection `name` that `selection` reaches (every key's for
    /// `None`). Shards are numbered over the whole layout, key by key in key order, so a
    /// partial answer names the same shard whatever the selection.
    pub fn keyed_shards(
        &self,
        name: &str,
        metrics: HashMap<String, Metric>,
        selection: Option<&KeySelection>,
    ) -> Result<Arc<[Arc<dyn Shard>]>, KeyError> {
        let layout = self.key_layout(name).unwrap_or_default();
        let chosen = keys::selected_keys(&layout, selection)?;
        let metrics = Arc::new(metrics);
        let encoded = Arc::new(EncodedQuery::default());
        let mut out: Vec<Arc<dyn Shard>> = Vec::new();
        let mut number = 0u32;
        for (key, group) in &layout {
            let chosen = chosen.contains(key);
            let node_name = keys::node_collection_name(name, key);
            for &node in group {
                if chosen {
                    out.push(Arc::new(
                        RemoteShard::new(
                            self.nodes[node].clone(),
                            &node_name,
                            number,
                            metrics.clone(),
                            encoded.clone(),
                        )
                        .with_placement(Placement::Any),
                    ));
                }
                number += 1;
            }
        }
        Ok(out.into())
    }

    /// Every copy of a collection's points: each node's for a collection sharded by hash,
    /// each key's group's for one sharded by key.
    fn copies(&self, name: &str) -> Copies {
        let keyed = self.key_layout(name);
        match keyed {
            None => (0..self
                .hash_layout(name)
                .map_or(0, |l| l.read_shards())
                .min(self.nodes.len()))
                .map(|k| (name.to_string(), k))
                .collect(),
            Some(layout) => layout
                .iter()
                .flat_map(|(key, group)| {
                    let node_name = keys::node_collection_name(name, key);
                    group.iter().map(move |&k| (node_name.clone(), k))
                })
                .collect(),
        }
    }

    /// Creates collection `name` on every node; a collection sharded by key is only noted
    /// (its keys' groups hold its points, created with each key). When a node refuses, the
    /// ones already created are deleted again and the refusal is the answer.
    pub async fn create_collection(
        &self,
        name: &str,
        config: &CollectionConfig,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let bad = |reason: String| ShardError::Refused {
            shard: 0,
            status: 400,
            reason,
        };
        if name.contains(keys::KEY_SEPARATOR) {
            return Err(bad(format!(
                "Bad request: a collection name in cluster mode must not hold `{}`: it joins a \
                 collection's name and a shard key's on the nodes",
                keys::KEY_SEPARATOR
            )));
        }
        if config.sharding_method.as_deref() == Some("custom") {
            // What the nodes will be asked for, checked now: a key's create must not be the
            // first to find the configuration unserved.
            wire::create_collection(name, &key_config(config))
                .map_err(|e| bad(format!("Bad request: {e}")))?;
            self.add_keyed(name, config.shard_region_field.is_some());
            return Ok(());
        }
        let message =
            wire::create_collection(name, config).map_err(|e| bad(format!("Bad request: {e}")))?;
        // A keyed collection of this name deleted while it was being created may have left
        // its entry: this one is placed by hash.
        self.forget_keyed(name);
        let n = self.nodes.len();
        let targets = (0..n).map(|k| (k, shard_marker(k, n))).collect();
        self.create_on(name, message, targets, deadline).await?;
        // A new collection: a state left by one of the name deleted meanwhile goes.
        self.write_hashed().insert(
            name.to_string(),
            Arc::new(HashState::new(HashLayout {
                shards: n,
                resharding: None,
            })),
        );
        Ok(())
    }

    /// Creates key `key` of keyed collection `name` (configured `config`) on the nodes of
    /// `group`, then the payload indexes the collection has (`indexes`). Undone when a node
    /// refuses.
    pub async fn create_shard_key(
        &self,
        name: &str,
        config: &CollectionConfig,
        new_key: NewKey,
        indexes: &[(String, qdrant_client::qdrant::FieldType)],
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let NewKey { key, group, region } = new_key;
        let key = &key;
        let refused = |status: u16, reason: String| ShardError::Refused {
            shard: 0,
            status,
            reason,
        };
        if region.is_some() && config.shard_region_field.is_none() {
            return Err(refused(
                400,
                format!(
                    "Bad request: region: collection `{name}` does not place its points by \
                     region (create it with shard_region_field)"
                ),
            ));
        }
        let _busy = Busy::new(&self.busy);
        match self.read_keyed().get(name) {
            None => {
                return Err(refused(
                    400,
                    format!(
                        "Bad request: collection `{name}` is not sharded by key \
                         (sharding_method: custom)"
                    ),
                ))
            }
            Some(keyed) if keyed.layout.contains_key(key) => {
                return Err(refused(
                    400,
                    format!("Bad request: Shard key {key} already exists"),
                ))
            }
            Some(_) => {}
        }
        let node_name = keys::node_collection_name(name, key);
        if node_name.len() > 255 {
            return Err(refused(
                400,
                format!(
                    "Bad request: collection `{name}` and shard key {key} make a node \
                     collection name over 255 bytes"
                ),
            ));
        }
        let message = wire::create_collection(&node_name, &key_config(config))
            .map_err(|e| refused(400, format!("Bad request: {e}")))?;
        let targets = group
            .iter()
            .enumerate()
            .map(|(k, &node)| {
                let marker = key_marker(name, key, k, &group, region.as_ref(), config);
                (node, marker)
            })
            .collect();
        self.create_on(&node_name, message, targets, deadline)
            .await
            .map_err(|e| match e {
                // Created meanwhile by another request (or left by an undo that failed).
                ShardError::Refused { status: 409, .. } => {
                    refused(400, format!("Bad request: Shard key {key} already exists"))
                }
                other => other,
            })?;
        for (field, kind) in indexes {
            let made =
                futures::future::try_join_all(group.iter().map(|&n| {
                    self.nodes[n].create_field_index(&node_name, field, *kind, deadline)
                }))
                .await;
            if let Err(e) = made {
                self.undo(&node_name, group.iter().copied()).await;
                return Err(e);
            }
        }
        let registered = match self.write_keyed().get_mut(name) {
            Some(keyed) => {
                keyed.layout.insert(key.clone(), group.clone());
                let regions = Arc::make_mut(&mut keyed.regions);
                match region {
                    Some(r) => regions.insert(key.clone(), r),
                    None => regions.remove(key),
                };
                true
            }
            None => false,
        };
        if !registered {
            // Deleted meanwhile: what was made goes with it, as far as it can.
            self.undo(&node_name, group.iter().copied()).await;
            return Err(refused(
                404,
                format!("Not found: Collection `{name}` doesn't exist!"),
            ));
        }
        Ok(())
    }

    /// Deletes key `key` of keyed collection `name` from its nodes, and its points with it.
    pub async fn delete_shard_key(
        &self,
        name: &str,
        key: &ShardKey,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let group = self
            .read_keyed()
            .get(name)
            .and_then(|k| k.layout.get(key).cloned())
            .ok_or_else(|| ShardError::Refused {
                shard: 0,
                status: 400,
                reason: format!("Bad request: Shard key {key} not found"),
            })?;
        let _busy = Busy::new(&self.busy);
        // Out of the layout first: no request meets a key half deleted. Should a node fail
        // to delete its part, the next scan of the nodes finds the key again.
        if let Some(keyed) = self.write_keyed().get_mut(name) {
            keyed.layout.remove(key);
            Arc::make_mut(&mut keyed.regions).remove(key);
        }
        let node_name = keys::node_collection_name(name, key);
        let deleted = futures::future::try_join_all(
            group
                .iter()
                .map(|&n| self.nodes[n].delete_collection(&node_name, deadline)),
        )
        .await;
        self.touch();
        deleted.map(|_| ())
    }

    /// Deletes `name` wherever `nodes` may hold it, with time of its own; false when some
    /// node still may.
    async fn undo(&self, name: &str, nodes: impl Iterator<Item = usize>) -> bool {
        let undo_deadline = Instant::now() + UNDO_TIME;
        let undone = futures::future::join_all(
            nodes.map(|k| self.nodes[k].delete_collection(name, undo_deadline)),
        )
        .await;
        undone.iter().all(Result::is_ok)
    }

    /// Creates `message` on each target node with its marker; when one refuses, undoes the
    /// rest.
    async fn create_on(
        &self,
        name: &str,
        message: qdrant_client::qdrant::CreateCollection,
        targets: Vec<(usize, qdrant_client::qdrant::Value)>,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let answers = futures::future::join_all(targets.iter().map(|(k, marker)| {
            let mut m = message.clone();
            m.metadata.insert(SHARD_MARKER.to_string(), marker.clone());
            self.nodes[*k].create_collection(m, deadline)
        }))
        .await;
        let mut failure = None;
        for (&(k, _), a) in targets.iter().zip(&answers) {
            if let Err(e) = a {
                failure.get_or_insert_with(|| match e {
                    ShardError::Refused { status, reason, .. } => ShardError::Refused {
                        shard: k as u32,
                        status: *status,
                        reason: reason.clone(),
                    },
                    other => ShardError::Unavailable {
                        shard: k as u32,
                        reason: format!("node {}: {other}", self.nodes[k].url()),
                    },
                });
            }
        }
        let Some(failure) = failure else {
            return Ok(());
        };
        // Undone wherever it may have been made: on the nodes that created it, and on those
        // whose answer was lost (unreachable, or past the deadline). Not on a node that
        // refused because it already held a collection of that name: that one is not ours.
        // A refusal (a 409 included: that node's collection of the name is not ours) created
        // nothing. The undo gets time of its own: the create's deadline may be spent.
        let created = targets
            .iter()
            .zip(&answers)
            .filter(|(_, a)| !matches!(a, Err(ShardError::Refused { .. })))
            .map(|(&(k, _), _)| k);
        if !self.undo(name, created).await {
            // The collection is left on some nodes: say so, so that the operator can delete
            // it (a delete through the router removes it wherever it is).
            return Err(ShardError::Unavailable {
                shard: 0,
                reason: format!(
                    "{failure}; `{name}` could not be removed again from every node: delete \
                     it through the router"
                ),
            });
        }
        Err(failure)
    }

    /// Deletes collection `name` from every node (each of its keys', when sharded by key);
    /// whether any held it.
    pub async fn delete_collection(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<bool, ShardError> {
        let Some(keyed) = self.read_keyed().get(name).cloned() else {
            // Forgotten first, so that a resharding of it stops (a batch retried under the
            // gate gives it up), then under the gate, exclusively: no batch runs meanwhile (a
            // collection made again under the name is another, with a gate of its own).
            let state = self.hash_state(name);
            if let Some(s) = &state {
                self.forget_hashed(name, s);
            }
            let _batch = match &state {
                Some(s) => match tokio::time::timeout_at(deadline.into(), s.gate.write()).await {
                    Ok(g) => Some(g),
                    Err(_) => {
                        self.restore_hashed(name, s.clone());
                        return Err(ShardError::Timeout { shard: 0 });
                    }
                },
                None => None,
            };
            let answers = futures::future::try_join_all(
                self.nodes
                    .iter()
                    .map(|n| n.delete_collection(name, deadline)),
            )
            .await;
            return match answers {
                Ok(answers) => Ok(answers.into_iter().any(|x| x)),
                Err(e) => {
                    // Still there, on some nodes at least: served as it was.
                    if let Some(state) = state {
                        self.restore_hashed(name, state);
                    }
                    Err(e)
                }
            };
        };
        // Forgotten first, so that a key being created meanwhile is not registered (its
        // create undoes itself); then every `name@...` each node holds is deleted, listed
        // now (keys created or found since the layout was read included).
        let _busy = Busy::new(&self.busy);
        self.forget_keyed(name);
        let deleted = self.delete_keyed_copies(name, deadline).await;
        self.touch();
        match deleted {
            Ok(any) => Ok(any),
            Err(e) => {
                // Still a keyed collection, with what is left of it on the nodes.
                self.write_keyed().insert(name.to_string(), keyed);
                Err(e)
            }
        }
    }

    /// Deletes `name` and every `name@...` from every node; whether any was there.
    async fn delete_keyed_copies(&self, name: &str, deadline: Instant) -> Result<bool, ShardError> {
        let prefix = format!("{name}{}", keys::KEY_SEPARATOR);
        let lists =
            futures::future::try_join_all(self.nodes.iter().map(|n| n.list_collections(deadline)))
                .await?;
        let mut deletes = Vec::new();
        for (k, list) in lists.into_iter().enumerate() {
            for c in list {
                if c == name || c.starts_with(&prefix) {
                    deletes.push((c, k));
                }
            }
        }
        let answers = futures::future::try_join_all(
            deletes
                .iter()
                .map(|(c, k)| self.nodes[*k].delete_collection(c, deadline)),
        )
        .await?;
        Ok(answers.into_iter().any(|x| x))
    }

    /// A collection's state over the nodes: the worst status (red over yellow over green),
    /// the first optimizer error, and the counts added up.
    pub async fn collection_state(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<ClusterCollectionState, ShardError> {
        use qdrant_client::qdrant::CollectionStatus as S;
        if !self.is_keyed(name) {
            self.known_hash_state(name)?;
        }
        let copies = self.copies(name);
        let infos = futures::future::try_join_all(
            copies
                .iter()
                .map(|(c, k)| self.nodes[*k].collection_info(c, deadline)),
        )
        .await?;
        let mut state = ClusterCollectionState::default();
        for ((_, k), info) in copies.iter().zip(infos) {
            let node = &self.nodes[*k];
            let rank = |s: i32| match S::try_from(s) {
                Ok(S::Green) => 0,
                Ok(S::Yellow | S::Grey) => 1,
                _ => 2,
            };
            state.status = state.status.max(rank(info.status));
            if let Some(o) = info.optimizer_status.filter(|o| !o.ok) {
                state
                    .optimizer_error
                    .get_or_insert_with(|| format!("node {}: {}", node.url(), o.error));
            }
            state.points += info.points_count.unwrap_or(0);
            state.indexed_vectors += info.indexed_vectors_count.unwrap_or(0);
            state.segments += info.segments_count;
        }
        Ok(state)
    }

    /// Collection `name` as its nodes describe it, checked to be laid out as this cluster
    /// places points: node k must hold shard k of n (its marker), n at most the nodes
    /// listed; or the shards of a resharding under way, as node 0's marker names it
    /// ([`Resharding`]). Node 0's description and the layout, or why the collection cannot
    /// be served by this cluster.
    pub async fn placed_collection(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<(qdrant_client::qdrant::CollectionInfo, HashLayout), PlacementError> {
        let marker_of = |info: &qdrant_client::qdrant::CollectionInfo| {
            info.config
                .as_ref()
                .and_then(|c| c.metadata.get(SHARD_MARKER))
                .map(wire::value_json)
        };
        let first = self.nodes[0]
            .collection_info(name, deadline)
            .await
            .map_err(|e| {
                PlacementError::Unreadable(format!(
                    "node {} cannot describe it: {e}",
                    self.nodes[0].url()
                ))
            })?;
        let unmarked = |k: usize| {
            PlacementError::Misplaced(format!(
                "node {} holds it without a shard marker: it was not created through a \
                 cluster router, so its points are not placed as this cluster reads them",
                self.nodes[k].url()
            ))
        };
        let first_marker = marker_of(&first).ok_or_else(|| {
            PlacementError::Foreign(format!(
                "node {} holds it without a shard marker: it was not created through a \
                 cluster router",
                self.nodes[0].url()
            ))
        })?;
        let (layout, shards) = match ShardMarker::read(&first_marker) {
            Some(ShardMarker::Stable { index: 0, of }) => (
                HashLayout {
                    shards: of,
                    resharding: None,
                },
                of,
            ),
            Some(ShardMarker::Resharding {
                index: 0,
                from,
                to,
                drained,
                batch,
            }) => {
                let mut r = Resharding::new(from, to);
                if let Some(d) = r.drained.get_mut(&0) {
                    *d = drained;
                    if let Some(b) = batch {
                        r.limits.insert(0, b);
                    }
                }
                let shards = r.shards();
                (
                    HashLayout {
                        shards: from,
                        resharding: Some(r),
                    },
                    shards,
                )
            }
            _ => {
                return Err(PlacementError::Misplaced(format!(
                    "node {} holds shard {first_marker} of it, but is listed first (shard 0): \
                     list the nodes in the order the collection was created with",
                    self.nodes[0].url()
                )))
            }
        };
        if shards > self.nodes.len() {
            return Err(PlacementError::Misplaced(format!(
                "it has {shards} shards, one a node, but the cluster lists {} nodes: list \
                 every node it was created on, in the same order",
                self.nodes.len()
            )));
        }
        let infos = futures::future::join_all(
            self.nodes[1..shards]
                .iter()
                .map(|node| node.collection_info(name, deadline)),
        )
        .await;
        let mut layout = layout;
        for (k, info) in (1..shards).zip(infos) {
            let node = &self.nodes[k];
            let changed = layout.resharding.as_ref().map(Resharding::changed_shard);
            let info = match info {
                Ok(info) => info,
                // The shard a resharding adds, not made yet; or the one it removes, gone
                // already (drained, then deleted).
                Err(ShardError::Refused { status: 404, .. }) if changed == Some(k) => {
                    if let Some(d) = layout
                        .resharding
                        .as_mut()
                        .and_then(|r| r.drained.get_mut(&k))
                    {
                        *d = Drained::Done;
                    }
                    continue;
                }
                Err(e) => {
                    return Err(PlacementError::Unreadable(format!(
                        "node {} cannot describe it: {e}",
                        node.url()
                    )))
                }
            };
            let marker = marker_of(&info).ok_or_else(|| unmarked(k))?;
            let read = ShardMarker::read(&marker);
            let fits = match (&mut layout.resharding, read) {
                (None, Some(ShardMarker::Stable { index, of })) => index == k && of == shards,
                (Some(r), Some(m)) if m.index() == k => match m {
                    ShardMarker::Resharding {
                        from,
                        to,
                        drained,
                        batch,
                        ..
                    } if from == r.from && to == r.to => {
                        if let Some(d) = r.drained.get_mut(&k) {
                            *d = drained;
                            if let Some(b) = batch {
                                r.limits.insert(k, b);
                            }
                        }
                        true
                    }
                    // Not rewritten yet by the start.
                    ShardMarker::Stable { of, .. } if of == r.from => true,
                    // Rewritten already by the finish.
                    ShardMarker::Stable { of, .. } if of == r.to => {
                        if let Some(d) = r.drained.get_mut(&k) {
                            *d = Drained::Done;
                        }
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            if !fits {
                return Err(PlacementError::Misplaced(format!(
                    "node {} holds shard {marker} of it, but is listed as shard {k} of {shards}: \
                     list the nodes in the order (and number) the collection was created with",
                    node.url()
                )));
            }
        }
        Ok((first, layout))
    }

    /// Creates a payload index on every node.
    pub async fn create_field_index(
        &self,
        name: &str,
        field: &str,
        field_type: qdrant_client::qdrant::FieldType,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        // Not while a resharding begins: its new shard gets the indexes it finds.
        let _gate = self.gate_within(name, deadline).await?;
        futures::future::try_join_all(
            self.copies(name)
                .iter()
                .map(|(c, k)| self.nodes[*k].create_field_index(c, field, field_type, deadline)),
        )
        .await
        .map(|_| ())
    }

    /// The gate of hash-placed collection `name`, shared, waited for until `deadline`;
    /// `None` for a collection sharded by key; an error when its layout is not known.
    async fn gate_within(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<reshard::GateGuard>, ShardError> {
        if self.is_keyed(name) {
            return Ok(None);
        }
        let state = self.known_hash_state(name)?;
        tokio::time::timeout_at(deadline.into(), state.gate.read())
            .await
            .map(Some)
            .map_err(|_| ShardError::Timeout { shard: 0 })
    }

    /// Drops a payload index on every node.
    pub async fn delete_field_index(
        &self,
        name: &str,
        field: &str,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let _gate = self.gate_within(name, deadline).await?;
        futures::future::try_join_all(
            self.copies(name)
                .iter()
                .map(|(c, k)| self.nodes[*k].delete_field_index(c, field, deadline)),
        )
        .await
        .map(|_| ())
    }

    /// Sends each shard its part of `update`, all at once; the largest operation id the
    /// nodes answered. The parts are applied independently: when one node refuses or cannot
    /// be reached, the others' parts stay applied (an update is atomic per node, not across
    /// nodes), and the error is the answer.
    ///
    /// A collection sharded by key takes the update in each key `selection` names, whole
    /// (an upsert naming two keys writes its points under both, as Qdrant does); with no
    /// selection, an update that may create points is refused (it cannot be placed) and
    /// any other reaches every key.
    ///
    /// With `field` (the collection's `shard_key_field` or `shard_region_field`), an
    /// upsert's points are placed by their value of the field, each key's part sent to its
    /// key; a payload write that would set the field to a value of another key is refused
    /// (points do not move between keys).
    pub async fn write(
        &self,
        name: &str,
        update: Update,
        selection: Option<&KeySelection>,
        field: Option<&FieldPlacement>,
        wait: bool,
        deadline: Instant,
    ) -> Result<u64, ShardError> {
        let Some(layout) = self.key_layout(name) else {
            if let Some(s) = selection {
                return Err(not_keyed(name, s));
            }
            let state = self.known_hash_state(name)?;
            let _gate = tokio::time::timeout_at(deadline.into(), state.gate.read())
                .await
                .map_err(|_| ShardError::Timeout { shard: 0 })?;
            let layout = state.layout();
            let group: Vec<usize> = (0..layout.read_shards().min(self.nodes.len())).collect();
            return match &layout.resharding {
                None => self.write_group(name, &group, update, wait, deadline).await,
                // Applied before it is answered: a batch must not read a point older than
                // an answered write.
                Some(r) => {
                    let place = |id: &index_core::PointId| r.shard_of(id);
                    self.write_placed(name, &group, update, true, deadline, &place)
                        .await
                }
            };
        };
        let parts: Vec<(ShardKey, Update)> = match field {
            Some(field) => by_field(&layout, &self.regions(name), update, selection, field)
                .map_err(|reason| ShardError::Refused {
                    shard: 0,
                    status: 400,
                    reason: format!("Bad request: {reason}"),
                })?,
            None => {
                if creates_points(&update) && selection.is_none() {
                    return Err(key_error(KeyError::Unspecified));
                }
                keys::selected_keys(&layout, selection)
                    .map_err(key_error)?
                    .into_iter()
                    .map(|k| (k, update.clone()))
                    .collect()
            }
        };
        // A write naming points by id reports a point it does not find: sent whole to keys
        // that do not all hold every id, each would refuse. So the ids are first looked up,
        // and each key gets only its own; an id no key holds is the answer's 404.
        let parts = if parts.len() > 1 {
            self.by_holder(name, &layout, parts, deadline).await?
        } else {
            parts
        };
        let sends = parts.into_iter().map(|(key, update)| {
            let node_name = keys::node_collection_name(name, &key);
            let group = layout[&key].clone();
            async move {
                self.write_group(&node_name, &group, update, wait, deadline)
                    .await
            }
        });
        let answers = futures::future::join_all(sends).await;
        let mut max = 0;
        for a in answers {
            max = max.max(a?);
        }
        Ok(max)
    }

    /// Each key's part of a write naming points by id, cut down to the ids the key holds
    /// (keys holding none are left out); other writes unchanged.
    async fn by_holder(
        &self,
        name: &str,
        layout: &KeyLayout,
        parts: Vec<(ShardKey, Update)>,
        deadline: Instant,
    ) -> Result<Vec<(ShardKey, Update)>, ShardError> {
        let Some(ids) = parts.first().and_then(|(_, u)| reported_ids(u)) else {
            if parts.iter().any(|(_, u)| matches!(u, Update::Batch(b) if b.iter().any(|u| reported_ids(u).is_some()))) {
                return Err(ShardError::Refused {
                    shard: 0,
                    status: 501,
                    reason: "Not implemented: a batch of operations naming points by id, on \
                             a collection with several shard keys: send the operations on \
                             their own"
                        .into(),
                });
            }
            return Ok(parts);
        };
        let req = Arc::new(crate::RetrieveRequest {
            with_payload: payload::PayloadSelector::Nothing,
            with_vector: storage::VectorSelector::Nothing,
        });
        let lookups = parts.iter().map(|(key, _)| {
            let node_name = keys::node_collection_name(name, key);
            let shards: Vec<Arc<dyn Shard>> = layout[key]
                .iter()
                .enumerate()
                .map(|(k, &node)| {
                    Arc::new(RemoteShard::new(
                        self.nodes[node].clone(),
                        &node_name,
                        k as u32,
                        Arc::new(HashMap::new()),
                        Arc::new(EncodedQuery::default()),
                    )) as Arc<dyn Shard>
                })
                .collect();
            let (ids, req) = (ids.clone(), req.clone());
            async move { crate::retrieve(&shards, &ids, req, deadline).await }
        });
        let found = futures::future::try_join_all(lookups).await?;
        let held: Vec<std::collections::HashSet<index_core::PointId>> = found
            .into_iter()
            .map(|records| records.into_iter().map(|r| r.id).collect())
            .collect();
        if let Some(missing) = ids.iter().find(|id| !held.iter().any(|h| h.contains(id))) {
            return Err(ShardError::Refused {
                shard: 0,
                status: 404,
                reason: format!("Not found: No point with id {missing} found"),
            });
        }
        Ok(parts
            .into_iter()
            .zip(&held)
            .filter_map(|((key, u), held)| Some((key, restricted(u, held)?)))
            .collect())
    }

    /// Sends the nodes of `group` (positions, in shard order) their parts of `update` to
    /// their collection `name`.
    async fn write_group(
        &self,
        name: &str,
        group: &[usize],
        update: Update,
        wait: bool,
        deadline: Instant,
    ) -> Result<u64, ShardError> {
        let n = group.len();
        let place = |id: &index_core::PointId| super::jump_shard_of(id, n);
        self.write_placed(name, group, update, wait, deadline, &place)
            .await
    }

    /// Sends the nodes of `group` their parts of `update`, each id to the shard `place`
    /// names.
    async fn write_placed(
        &self,
        name: &str,
        group: &[usize],
        update: Update,
        wait: bool,
        deadline: Instant,
        place: &(dyn Fn(&index_core::PointId) -> usize + Sync),
    ) -> Result<u64, ShardError> {
        let parts = super::split_update(update, group.len(), place);
        let sends = parts
            .into_iter()
            .enumerate()
            .filter_map(|(k, part)| Some((k, part?)))
            .map(|(k, part)| {
                let shard = RemoteShard::new(
                    self.nodes[group[k]].clone(),
                    name,
                    k as u32,
                    Arc::new(HashMap::new()),
                    Arc::new(EncodedQuery::default()),
                );
                shard.write(part, wait, deadline)
            });
        let ids = futures::future::join_all(sends).await;
        let mut max = 0;
        let mut first_error = None;
        for r in ids {
            match r {
                Ok(id) => max = max.max(id),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(max),
        }
    }

    /// Reads every node's collections for shard keys: those not in the layouts yet (each
    /// described by the node holding it), the keys whose node collections no node of their
    /// group lists any more (deleted through another coordinator), and node collections
    /// placed otherwise than this node list says. A node that cannot be listed is a warning,
    /// and keys on it are neither found nor given up.
    pub async fn scan_keys(&self, deadline: Instant) -> KeyScan {
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        let lists =
            futures::future::join_all(self.nodes.iter().map(|n| n.list_collections(deadline)))
                .await;
        let mut scan = KeyScan {
            epoch,
            ..KeyScan::default()
        };
        // The keys known: for those of collections placed by region, their group and region,
        // to be compared with their markers.
        type Placed = Option<(Vec<usize>, Option<Region>)>;
        let known: HashMap<String, Placed> = self
            .read_keyed()
            .iter()
            .flat_map(|(c, k)| {
                k.layout.iter().map(move |(key, group)| {
                    let placed = k
                        .by_region
                        .then(|| (group.clone(), k.regions.get(key).cloned()));
                    (keys::node_collection_name(c, key), placed)
                })
            })
            .collect();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut listed: Vec<Option<std::collections::HashSet<String>>> = Vec::new();
        for (at, list) in lists.into_iter().enumerate() {
            let names = match list {
                Ok(l) => l,
                Err(e) => {
                    scan.warnings
                        .push(format!("node {} cannot list: {e}", self.nodes[at].url()));
                    listed.push(None);
                    continue;
                }
            };
            listed.push(Some(names.iter().cloned().collect()));
            for node_name in names {
                if !node_name.contains(keys::KEY_SEPARATOR) {
                    continue;
                }
                let recheck = match known.get(&node_name) {
                    None => None,
                    Some(None) => continue,
                    // Read from a node of its group: a copy elsewhere is one a failed delete
                    // left (a key moved to other nodes is found gone, then found anew).
                    Some(Some(placed)) if !placed.0.contains(&at) => continue,
                    Some(Some(placed)) => Some(placed),
                };
                if !seen.insert(node_name.clone()) {
                    continue;
                }
                let info = match self.nodes[at].collection_info(&node_name, deadline).await {
                    Ok(i) => i,
                    Err(e) => {
                        scan.warnings.push(format!(
                            "node {} cannot describe `{node_name}`: {e}",
                            self.nodes[at].url()
                        ));
                        continue;
                    }
                };
                let raw = info
                    .config
                    .as_ref()
                    .and_then(|c| c.metadata.get(SHARD_MARKER))
                    .map(wire::value_json);
                let marker = raw.as_ref().and_then(read_key_marker);
                let bad_region = raw
                    .as_ref()
                    .and_then(|m| m.get("region"))
                    .filter(|r| !r.is_null())
                    .and_then(|r| Region::from_json(r).err());
                if let Some(e) = bad_region {
                    scan.warnings.push(format!(
                        "node {} holds `{node_name}` with a region that does not read ({e}): \
                         not served",
                        self.nodes[at].url()
                    ));
                    continue;
                }
                let Some(KeyMarker {
                    collection,
                    key,
                    index,
                    group,
                    shard_number,
                    field,
                    region_field,
                    region,
                }) = marker
                else {
                    scan.warnings.push(format!(
                        "node {} holds `{node_name}` without a shard key marker",
                        self.nodes[at].url()
                    ));
                    continue;
                };
                let placed = keys::node_collection_name(&collection, &key) == node_name
                    && group.get(index) == Some(&at)
                    && group.iter().all(|&g| g < self.nodes.len());
                if !placed {
                    scan.misplaced.push(format!(
                        "node {} holds `{node_name}` as shard {index} of nodes {group:?}: list \
                         the nodes in the order (and number) its key was created with",
                        self.nodes[at].url()
                    ));
                    continue;
                }
                let found = FoundKey {
                    collection,
                    key,
                    group,
                    shard_number,
                    field,
                    region_field,
                    region,
                    info,
                };
                match recheck {
                    None => scan.found.push(found),
                    Some((group, region)) => {
                        let same_region = match (&found.region, region) {
                            (Some(a), Some(b)) => a.same_shape(b),
                            (a, b) => a.is_none() && b.is_none(),
                        };
                        if &found.group != group || !same_region {
                            scan.changed.push(found);
                        }
                    }
                }
            }
        }
        for (collection, keyed) in self.read_keyed().iter() {
            for (key, group) in &keyed.layout {
                let node_name = keys::node_collection_name(collection, key);
                let all_listed = group.iter().all(|&g| listed[g].is_some());
                let anywhere = group
                    .iter()
                    .any(|&g| listed[g].as_ref().is_some_and(|l| l.contains(&node_name)));
                if all_listed && !anywhere {
                    scan.gone.push((collection.clone(), key.clone()));
                }
            }
        }
        scan
    }

    /// Applies a scan: found keys join their collections' layouts (a collection not noted
    /// keyed is skipped), keys gone leave them. Nothing is applied when the layouts changed
    /// since the scan began (a key created or deleted meanwhile would be undone); false then.
    /// `new_keyed` are collections found through their keys, noted keyed here.
    pub fn apply_scan(&self, scan: &KeyScan, new_keyed: &[String]) -> bool {
        let mut keyed = self.keyed.write().unwrap_or_else(|e| e.into_inner());
        if !self.scan_is_current(scan) {
            return false;
        }
        self.touch();
        for name in new_keyed {
            let by_region = scan
                .found
                .iter()
                .any(|f| &f.collection == name && f.region_field.is_some());
            keyed.entry(name.clone()).or_default().by_region |= by_region;
        }
        // Keys made again, through another coordinator, with another group or region.
        for f in &scan.changed {
            if let Some(k) = keyed.get_mut(&f.collection) {
                if k.layout.contains_key(&f.key) {
                    k.layout.insert(f.key.clone(), f.group.clone());
                    let regions = Arc::make_mut(&mut k.regions);
                    match &f.region {
                        Some(r) => regions.insert(f.key.clone(), r.clone()),
                        None => regions.remove(&f.key),
                    };
                }
            }
        }
        for f in &scan.found {
            if let Some(k) = keyed.get_mut(&f.collection) {
                if let std::collections::btree_map::Entry::Vacant(e) = k.layout.entry(f.key.clone())
                {
                    e.insert(f.group.clone());
                    let regions = Arc::make_mut(&mut k.regions);
                    match &f.region {
                        Some(r) => regions.insert(f.key.clone(), r.clone()),
                        None => regions.remove(&f.key),
                    };
                }
            }
        }
        for (collection, key) in &scan.gone {
            if let Some(k) = keyed.get_mut(collection) {
                k.layout.remove(key);
                Arc::make_mut(&mut k.regions).remove(key);
            }
        }
        true
    }
}

impl Cluster {
    /// Whether no key was created or deleted since `scan` began, and none is being now.
    pub fn scan_is_current(&self, scan: &KeyScan) -> bool {
        self.busy.load(std::sync::atomic::Ordering::Acquire) == 0
            && self.epoch.load(std::sync::atomic::Ordering::Acquire) == scan.epoch
    }
}

/// What a scan of the nodes found about shard keys ([`Cluster::scan_keys`]).
#[derive(Debug, Default)]
pub struct KeyScan {
    epoch: u64,
    /// Keys not in the layouts yet.
    pub found: Vec<FoundKey>,
    /// Keys in the layouts that no node holds any more.
    pub gone: Vec<(String, ShardKey)>,
    /// Keys of collections placed by region whose markers name another group or region than
    /// the layouts (made again through another coordinator).
    pub changed: Vec<FoundKey>,
    /// Node collections placed otherwise than the node list says.
    pub misplaced: Vec<String>,
    /// Nodes or collections that could not be read.
    pub warnings: Vec<String>,
}

/// The configuration each node collection of a key is created with: the collection's, one
/// shard a node and no sharding of its own (the key's group is the sharding).
pub fn key_config(config: &CollectionConfig) -> CollectionConfig {
    let mut c = config.clone();
    c.sharding_method = None;
    c.shard_number = None;
    c.shard_key_field = None;
    c.shard_region_field = None;
    c
}

/// An update of a collection placed by a payload field (`placement`), cut into each key's
/// part. An upsert's points go to the key their field names, or whose region holds it (or
/// the one key the request names, for points without the field); any other update goes to
/// the keys selected, whole, unless it would set the field to a value of another key.
fn by_field(
    layout: &KeyLayout,
    regions: &RegionLayout,
    update: Update,
    selection: Option<&KeySelection>,
    placement: &FieldPlacement,
) -> Result<Vec<(ShardKey, Update)>, String> {
    let field = placement.field();
    let exists = |k: &ShardKey| {
        if layout.contains_key(k) {
            Ok(())
        } else {
            Err(format!(
                "{}: create it with PUT /collections/{{name}}/shards",
                KeyError::NotFound(k.clone())
            ))
        }
    };
    // The one key a request names for an upsert.
    let named = |selection: Option<&KeySelection>| -> Result<Option<ShardKey>, String> {
        match keys::selected_keys(layout, selection) {
            _ if selection.is_none() => Ok(None),
            Ok(mut k) if k.len() == 1 => Ok(k.pop()),
            Ok(_) => Err(format!(
                "an upsert placed by payload field `{field}` names at most one shard key"
            )),
            Err(e) => Err(e.to_string()),
        }
    };
    let place = |points: Vec<storage::PointWrite>,
                 make: &dyn Fn(Vec<storage::PointWrite>) -> Update|
     -> Result<Vec<(ShardKey, Update)>, String> {
        let named = named(selection)?;
        let parts = match placement {
            FieldPlacement::Value(_) => keys::points_by_field(points, field, named.as_ref())?,
            FieldPlacement::Region(_) => {
                regions::points_by_region(points, field, layout, regions, named.as_ref())?
            }
        };
        // Every key checked before anything is sent: an unknown one refuses the whole upsert.
        for (k, _) in &parts {
            exists(k)?;
        }
        Ok(parts.into_iter().map(|(k, p)| (k, make(p))).collect())
    };
    let targets = || keys::selected_keys(layout, selection).map_err(|e| e.to_string());
    // A payload write setting the field: only to a value of the one key it reaches.
    let check_sets = |payload: &payload::Payload| -> Result<Vec<ShardKey>, String> {
        let targets = targets()?;
        if let Some(v) = payload.get(field) {
            let same = match (placement, targets.as_slice()) {
                (FieldPlacement::Value(_), [target]) => {
                    keys::key_of_value(v).as_ref() == Some(target)
                }
                (FieldPlacement::Region(_), [target]) => regions::location_of(v)
                    .and_then(|p| regions::key_for(layout, regions, p, Some(target)))
                    .is_ok_and(|k| &k == target),
                _ => false,
            };
            if !same {
                let what = match placement {
                    FieldPlacement::Value(_) => "the value of the one shard key it names",
                    FieldPlacement::Region(_) => {
                        "a location the one shard key it names takes (in its region, or in \
                         none for a key without one)"
                    }
                };
                return Err(format!(
                    "payload field `{field}` places points by shard key: a payload write may \
                     set it only to {what} (points do not move between keys: delete the \
                     point, then upsert it with its new value)"
                ));
            }
        }
        Ok(targets)
    };
    let whole = |targets: Vec<ShardKey>, u: Update| -> Vec<(ShardKey, Update)> {
        targets.into_iter().map(|k| (k, u.clone())).collect()
    };
    match update {
        Update::Upsert(points) => place(points, &Update::Upsert),
        Update::ConditionalUpsert {
            points,
            mode,
            filter,
        } => place(points, &|points| Update::ConditionalUpsert {
            points,
            mode,
            filter: filter.clone(),
        }),
        Update::SetPayload {
            ref payload,
            ref key,
            ..
        } => {
            // By the path's first key, as the payload write reads it (`"lang".x` included);
            // a path that does not parse is the node's to refuse.
            let nested = key.as_deref().is_some_and(|k| {
                payload::KeyPath::parse(k).is_ok_and(|p| {
                    matches!(p.items().first(), Some(payload::PathItem::Key(first)) if first == field)
                })
            });
            if nested {
                return Err(format!(
                    "payload field `{field}` places points by shard key: a payload write may \
                     not write inside it"
                ));
            }
            let targets = if key.is_none() {
                check_sets(payload)?
            } else {
                targets()?
            };
            Ok(whole(targets, update))
        }
        Update::OverwritePayload { ref payload, .. } => {
            let targets = check_sets(payload)?;
            Ok(whole(targets, update))
        }
        Update::Batch(ref parts)
            if parts.iter().any(|p| {
                creates_points(p)
                    || matches!(
                        p,
                        Update::SetPayload { .. } | Update::OverwritePayload { .. }
                    )
            }) =>
        {
            Err(format!(
                "a batch of operations is not placed by payload field `{field}`: send its \
                 upserts and payload writes on their own"
            ))
        }
        other => Ok(whole(targets()?, other)),
    }
}

/// The ids of a write that reports a point it does not find.
fn reported_ids(u: &Update) -> Option<Vec<index_core::PointId>> {
    use storage::PointSelector::Ids;
    match u {
        Update::SetPayload {
            selector: Ids(ids), ..
        }
        | Update::OverwritePayload {
            selector: Ids(ids), ..
        }
        | Update::DeletePayload {
            selector: Ids(ids), ..
        }
        | Update::ClearPayload(Ids(ids))
        | Update::DeleteVectors {
            selector: Ids(ids), ..
        } => Some(ids.clone()),
        Update::UpdateVectors { points, .. } => Some(points.iter().map(|p| p.id).collect()),
        _ => None,
    }
}

/// `u` cut down to the points of `keep`; `None` when none is left.
fn restricted(u: Update, keep: &std::collections::HashSet<index_core::PointId>) -> Option<Update> {
    use storage::PointSelector::Ids;
    let ids = |ids: Vec<index_core::PointId>| {
        let ids: Vec<_> = ids.into_iter().filter(|id| keep.contains(id)).collect();
        (!ids.is_empty()).then_some(Ids(ids))
    };
    Some(match u {
        Update::SetPayload {
            payload,
            selector: Ids(i),
            key,
        } => Update::SetPayload {
            payload,
            selector: ids(i)?,
            key,
        },
        Update::OverwritePayload {
            payload,
            selector: Ids(i),
        } => Update::OverwritePayload {
            payload,
            selector: ids(i)?,
        },
        Update::DeletePayload {
            keys,
            selector: Ids(i),
        } => Update::DeletePayload {
            keys,
            selector: ids(i)?,
        },
        Update::ClearPayload(Ids(i)) => Update::ClearPayload(ids(i)?),
        Update::DeleteVectors {
            selector: Ids(i),
            names,
        } => Update::DeleteVectors {
            selector: ids(i)?,
            names,
        },
        Update::UpdateVectors { points, filter } => {
            let points: Vec<_> = points
                .into_iter()
                .filter(|p| keep.contains(&p.id))
                .collect();
            if points.is_empty() {
                return None;
            }
            Update::UpdateVectors { points, filter }
        }
        other => other,
    })
}

/// Whether an update may create points (so must be placed by a key).
fn creates_points(u: &Update) -> bool {
    match u {
        Update::Upsert(_) | Update::ConditionalUpsert { .. } => true,
        Update::Batch(parts) => parts.iter().any(creates_points),
        _ => false,
    }
}

fn key_error(e: KeyError) -> ShardError {
    ShardError::Refused {
        shard: 0,
        status: 400,
        reason: format!("Bad request: {e}"),
    }
}

/// A selection sent to a collection sharded by hash.
pub fn not_keyed(name: &str, selection: &KeySelection) -> ShardError {
    ShardError::Refused {
        shard: 0,
        status: 400,
        reason: format!(
            "Bad request: shard_key {}: collection `{name}` is sharded automatically \
             (sharding_method: auto), not by key",
            selection.to_json()
        ),
    }
}
