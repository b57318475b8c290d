//! A cluster: collections whose shards are the same-named collections on a fixed list of
//! nodes, one shard per node, points placed by jump consistent hashing of their ids.

use super::{split_update, wire, EncodedQuery, Node, NodeOptions, Placement, RemoteShard};
use crate::{Shard, ShardError};
use quant::Metric;
use std::collections::HashMap;
use std::sync::Arc;
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

/// Why a collection on the nodes cannot be served by this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// A node does not hold it or cannot describe it.
    Unreadable(String),
    /// A node holds it as another shard than its place in the list says, or without a
    /// marker: serving it would place writes where no read looks.
    Misplaced(String),
}

impl std::fmt::Display for PlacementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlacementError::Unreadable(m) | PlacementError::Misplaced(m) => f.write_str(m),
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

/// The nodes of a cluster, in shard order: node `k` holds shard `k` of every collection.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Arc<Node>>,
}

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
        Ok(Cluster { nodes })
    }

    /// The nodes, in shard order.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// Probes every node at once; the first that does not answer is an error naming it.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let answers = futures::future::join_all(self.nodes.iter().map(|n| n.probe(timeout))).await;
        for (node, answer) in self.nodes.iter().zip(answers) {
            if let Err(e) = answer {
                return Err(format!("node {} does not answer: {e}", node.url()));
            }
        }
        Ok(())
    }

    /// The shards of collection `name`, whose dense vectors are measured by `metrics`.
    pub fn shards(&self, name: &str, metrics: HashMap<String, Metric>) -> Arc<[Arc<dyn Shard>]> {
        let metrics = Arc::new(metrics);
        let encoded = Arc::new(EncodedQuery::default());
        self.nodes
            .iter()
            .enumerate()
            .map(|(k, n)| {
                Arc::new(RemoteShard::new(
                    n.clone(),
                    name,
                    k as u32,
                    metrics.clone(),
                    encoded.clone(),
                )) as Arc<dyn Shard>
            })
            .collect()
    }

    /// Creates collection `name` on every node. When one refuses, the ones already created
    /// are deleted again and the refusal is the answer.
    pub async fn create_collection(
        &self,
        name: &str,
        config: &CollectionConfig,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        let message = wire::create_collection(name, config).map_err(|e| ShardError::Refused {
            shard: 0,
            status: 400,
            reason: format!("Bad request: {e}"),
        })?;
        let n = self.nodes.len();
        let answers = futures::future::join_all(self.nodes.iter().enumerate().map(|(k, node)| {
            let mut m = message.clone();
            m.metadata
                .insert(SHARD_MARKER.to_string(), shard_marker(k, n));
            node.create_collection(m, deadline)
        }))
        .await;
        let mut failure = None;
        for (k, a) in answers.iter().enumerate() {
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
        let undo_deadline = Instant::now() + UNDO_TIME;
        let created = answers
            .iter()
            .enumerate()
            .filter(|(_, a)| !matches!(a, Err(ShardError::Refused { .. })))
            .map(|(k, _)| self.nodes[k].delete_collection(name, undo_deadline));
        let undone = futures::future::join_all(created).await;
        if let Some(e) = undone.into_iter().find_map(Result::err) {
            // The collection is left on some nodes: say so, so that the operator can delete
            // it (a delete through the router removes it wherever it is).
            return Err(ShardError::Unavailable {
                shard: 0,
                reason: format!(
                    "{failure}; the collection could not be removed again from every node \
                     ({e}): delete it through the router"
                ),
            });
        }
        Err(failure)
    }

    /// Deletes collection `name` from every node; whether any held it.
    pub async fn delete_collection(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<bool, ShardError> {
        let answers = futures::future::try_join_all(
            self.nodes
                .iter()
                .map(|n| n.delete_collection(name, deadline)),
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
        let infos = futures::future::try_join_all(
            self.nodes.iter().map(|n| n.collection_info(name, deadline)),
        )
        .await?;
        let mut state = ClusterCollectionState::default();
        for (node, info) in self.nodes.iter().zip(infos) {
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

    /// Collection `name` as every node describes it, checked to be laid out as this cluster
    /// places points: node k must hold shard k of n (its marker). Node 0's description, or
    /// why the collection cannot be served by this cluster.
    pub async fn placed_collection(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<qdrant_client::qdrant::CollectionInfo, PlacementError> {
        let n = self.nodes.len();
        let infos = futures::future::join_all(
            self.nodes
                .iter()
                .map(|node| node.collection_info(name, deadline)),
        )
        .await;
        let mut first = None;
        for (k, (node, info)) in self.nodes.iter().zip(infos).enumerate() {
            let info = info.map_err(|e| {
                PlacementError::Unreadable(format!("node {} cannot describe it: {e}", node.url()))
            })?;
            let marker = info
                .config
                .as_ref()
                .and_then(|c| c.metadata.get(SHARD_MARKER))
                .map(wire::value_json);
            let expected = wire::value_json(&shard_marker(k, n));
            match marker {
                Some(m) if m == expected => {}
                Some(m) => {
                    return Err(PlacementError::Misplaced(format!(
                        "node {} holds shard {m} of it, but is listed as shard {k} of {n}: \
                         list the nodes in the order (and number) the collection was created with",
                        node.url()
                    )))
                }
                None => {
                    return Err(PlacementError::Misplaced(format!(
                        "node {} holds it without a shard marker: it was not created through a \
                         cluster router, so its points are not placed as this cluster reads them",
                        node.url()
                    )))
                }
            }
            first.get_or_insert(info);
        }
        first.ok_or_else(|| PlacementError::Unreadable("the cluster has no nodes".into()))
    }

    /// Creates a payload index on every node.
    pub async fn create_field_index(
        &self,
        name: &str,
        field: &str,
        field_type: qdrant_client::qdrant::FieldType,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        futures::future::try_join_all(
            self.nodes
                .iter()
                .map(|n| n.create_field_index(name, field, field_type, deadline)),
        )
        .await
        .map(|_| ())
    }

    /// Drops a payload index on every node.
    pub async fn delete_field_index(
        &self,
        name: &str,
        field: &str,
        deadline: Instant,
    ) -> Result<(), ShardError> {
        futures::future::try_join_all(
            self.nodes
                .iter()
                .map(|n| n.delete_field_index(name, field, deadline)),
        )
        .await
        .map(|_| ())
    }

    /// Sends each shard its part of `update`, all at once; the largest operation id the
    /// nodes answered. The parts are applied independently: when one node refuses or cannot
    /// be reached, the others' parts stay applied (an update is atomic per node, not across
    /// nodes), and the error is the answer.
    pub async fn write(
        &self,
        name: &str,
        update: Update,
        wait: bool,
        deadline: Instant,
    ) -> Result<u64, ShardError> {
        let parts = split_update(update, self.nodes.len(), Placement::Jump);
        let sends = parts
            .into_iter()
            .enumerate()
            .filter_map(|(k, part)| Some((k, part?)))
            .map(|(k, part)| {
                let shard = RemoteShard::new(
                    self.nodes[k].clone(),
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
}
