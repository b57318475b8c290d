//! Replica mode (`--replica-id`): this node is one replica of a replica set, a Raft group
//! (`crates/replication`, on openraft) whose members hold the same collections.
//!
//! Every write (points, collections, payload indexes, aliases) becomes a [`Command`]: the
//! REST body of the write as the client sent it (a gRPC write is first turned into its REST
//! twin's body, as the gRPC service always does). The command is proposed to the group; once
//! a majority has it in its log and the leader has applied it, the client gets the answer the
//! leader's storage gave. A follower hands a write to the leader (`POST /raft/write`) and
//! relays the answer, so a client may write to any replica. Every replica applies the same
//! commands in the same order through the same code the embedded router runs: a write whose
//! effect depends on the state (a delete by filter, a conditional upsert) does the same on
//! each.
//!
//! Reads are served by the replica asked, from what it has applied (bounded staleness: a
//! follower applies an entry shortly after the leader commits it). A read asking Qdrant's
//! `consistency` of `majority`, `quorum` or `all` (REST's query parameter) is linearizable:
//! it waits until this replica has applied everything the leader had committed when the
//! read arrived, the leader having confirmed with a majority that it still leads.
//!
//! Membership is managed through `/cluster/replica/...` (initialize, add a learner, change
//! the voters), with openraft's joint consensus; a new replica catches up from a snapshot of
//! the whole storage, then the log.

use crate::api::points::WriteKind;
use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use openraft::storage::RaftLogStorage;
use replication::{Blob, Node, NodeId, Raft};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

tokio::task_local! {
    /// The highest log index a write made on this task was committed at: a call's answer
    /// names it (the leader answers a write before its metrics show it applied).
    static WRITTEN_AT: std::cell::Cell<u64>;
}

/// Runs `call`, recording the log index of the writes it makes: its output and that index
/// (0 when it wrote nothing).
pub async fn recording_writes<F: std::future::Future>(call: F) -> (F::Output, u64) {
    WRITTEN_AT
        .scope(std::cell::Cell::new(0), async move {
            let out = call.await;
            (out, WRITTEN_AT.with(std::cell::Cell::get))
        })
        .await
}

fn note_written(index: u64) {
    let _ = WRITTEN_AT.try_with(|c| c.set(c.get().max(index)));
}

/// The header in which the leader tells a follower that handed it a write the log index the
/// write was committed at.
const WRITTEN_AT_HEADER: &str = "x-vector-router-written-at";

/// A write, as replicated.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// A points write: its endpoint and REST body.
    Points {
        /// The collection (or an alias), resolved when applied.
        collection: String,
        /// Which write.
        kind: WriteKind,
        /// The REST body.
        body: Blob,
    },
    /// `PUT /collections/{name}` with its body.
    CreateCollection {
        /// The name.
        name: String,
        /// The REST body.
        body: Blob,
    },
    /// `DELETE /collections/{name}`.
    DeleteCollection {
        /// The name.
        name: String,
    },
    /// `PATCH /collections/{name}` with its body.
    UpdateCollection {
        /// The name.
        name: String,
        /// The REST body.
        body: Blob,
    },
    /// A payload index created (or replaced).
    CreateIndex {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// Its schema, as REST gives it.
        schema: serde_json::Value,
    },
    /// A payload index dropped.
    DeleteIndex {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
    },
    /// A vector added to a collection (`PUT /collections/{name}/vectors/{vector}`).
    CreateVector {
        /// The collection (or an alias).
        collection: String,
        /// The vector's name (`""`: the unnamed one).
        vector: String,
        /// What it is, checked.
        params: crate::api::collections::NewVector,
    },
    /// A vector dropped from a collection and its points.
    DeleteVector {
        /// The collection (or an alias).
        collection: String,
        /// The vector's name.
        vector: String,
    },
    /// `POST /collections/aliases` with its body.
    Aliases {
        /// The REST body.
        body: Blob,
    },
}

/// What applying a command answered: its result, or its error as the client gets it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Ok(serde_json::Value),
    Err { status: u16, message: String },
}

impl Answer {
    fn of(r: Result<serde_json::Value, ApiError>) -> Answer {
        match r {
            Ok(v) => Answer::Ok(v),
            Err(e) => Answer::Err {
                status: e.status.as_u16(),
                message: e.message,
            },
        }
    }

    fn decode(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
        match serde_json::from_slice::<Answer>(bytes) {
            Ok(Answer::Ok(v)) => Ok(v),
            Ok(Answer::Err { status, message }) => Err(ApiError::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                message,
            )),
            Err(e) => Err(internal(format!(
                "an answer from the replica set unreadable: {e}"
            ))),
        }
    }
}

fn internal(message: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Service internal error: {message}"),
    )
}

fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Service unavailable: {}", message.into()),
    )
}

/// Applies commands to the node's storage (the state machine's side).
pub struct StorageApplier {
    storage: Arc<storage::Storage>,
    state: OnceLock<Weak<AppState>>,
    /// Collections written since the last sync.
    touched: Mutex<HashSet<String>>,
}

impl StorageApplier {
    fn new(storage: Arc<storage::Storage>) -> StorageApplier {
        StorageApplier {
            storage,
            state: OnceLock::new(),
            touched: Mutex::new(HashSet::new()),
        }
    }

    /// The server's state, for what it keeps about collections (cached answers, shard
    /// handles, metrics): forgotten when a command changes them.
    fn forget(&self, name: &str, dropped: bool) {
        if let Some(st) = self.state.get().and_then(Weak::upgrade) {
            st.cache.invalidate(name);
            if dropped {
                st.shards.forget(name);
                st.metrics.forget_collection(name);
            }
        }
    }

    fn run(&self, command: Command) -> Result<serde_json::Value, ApiError> {
        use serde_json::json;
        match command {
            Command::Points {
                collection,
                kind,
                body,
            } => {
                let c = self.storage.get(&collection)?;
                let (update, keys) = kind.update(&body.0)?;
                if let Some(k) = keys {
                    return Err(shard_router::remote::not_keyed(c.name(), &k).into());
                }
                self.touched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(c.name().to_string());
                let r = c.update(update, false);
                self.forget(c.name(), false);
                Ok(json!(r?))
            }
            Command::CreateCollection { name, body } => {
                let config = crate::api::collections::parse_create(&body.0, false)?;
                self.storage.create(&name, config)?;
                self.forget(&name, true);
                Ok(json!(true))
            }
            Command::DeleteCollection { name } => {
                let existed = self.storage.delete(&name)?;
                self.forget(&name, true);
                Ok(json!(existed))
            }
            Command::UpdateCollection { name, body } => {
                let c = self.storage.get(&name)?;
                crate::api::collections::apply_collection_update(
                    &c,
                    crate::model::parse(&body.0)?,
                )?;
                self.forget(c.name(), false);
                Ok(json!(true))
            }
            Command::CreateIndex {
                collection,
                field,
                schema,
            } => {
                let c = self.storage.get(&collection)?;
                c.create_payload_index(&field, schema)?;
                self.forget(c.name(), false);
                Ok(json!(true))
            }
            Command::DeleteIndex { collection, field } => {
                let c = self.storage.get(&collection)?;
                c.delete_payload_index(&field)?;
                self.forget(c.name(), false);
                Ok(json!(true))
            }
            Command::CreateVector {
                collection,
                vector,
                params,
            } => {
                let c = self.storage.get(&collection)?;
                let changed = params.create(&c, &vector);
                // Cached answers go whatever the outcome: a change that failed after its
                // commit point took effect.
                self.forget(c.name(), false);
                Ok(json!(changed?))
            }
            Command::DeleteVector { collection, vector } => {
                let c = self.storage.get(&collection)?;
                let changed = c.delete_vector(&vector);
                self.forget(c.name(), false);
                Ok(json!(changed?))
            }
            Command::Aliases { body } => {
                let changes = crate::convert::alias_changes(crate::model::parse(&body.0)?)?;
                self.storage.change_aliases(&changes)?;
                Ok(json!(true))
            }
        }
    }

    /// Drops every alias and collection.
    fn clear(&self) -> storage::Result<()> {
        let aliases: Vec<_> = self
            .storage
            .aliases()
            .into_iter()
            .map(|(alias, _)| storage::AliasChange::Delete { alias })
            .collect();
        self.storage.change_aliases(&aliases)?;
        for name in self.storage.list() {
            self.storage.delete(&name)?;
            self.forget(&name, true);
        }
        Ok(())
    }
}

impl replication::Applier for StorageApplier {
    fn apply(&self, index: u64, command: &[u8]) -> std::io::Result<Vec<u8>> {
        let command = serde_json::from_slice::<Command>(command).map_err(|e| {
            // A newer version's command: this replica cannot apply it, and must not skip it.
            std::io::Error::other(format!(
                "raft entry {index}: a command this version cannot read: {e}"
            ))
        })?;
        let answer = self.run(command);
        // A refusal of what the command asks (4xx) is the same on every replica: its
        // answer. A failure of this replica's own (5xx: a disk error, a full disk) is not:
        // the entry must not count as applied here.
        if let Err(e) = &answer {
            if e.status.is_server_error() {
                tracing::error!(index, error = %e.message, "replica: a raft entry could not be applied here; stopping the replica set's state machine on this node (a restart restores the latest snapshot and applies the log again)");
                return Err(std::io::Error::other(e.message.clone()));
            }
        }
        Ok(serde_json::to_vec(&Answer::of(answer)).expect("answers serialise"))
    }

    fn sync(&self) -> std::io::Result<()> {
        let touched: Vec<String> = self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for name in touched {
            // Deleted meanwhile: nothing to make durable.
            if let Ok(c) = self.storage.get(&name) {
                c.sync().map_err(std::io::Error::other)?;
            }
        }
        Ok(())
    }

    fn snapshot(&self, path: &Path) -> std::io::Result<()> {
        let d = self
            .storage
            .create_full_snapshot()
            .map_err(std::io::Error::other)?;
        let made = self.storage.snapshots_dir().join(&d.name);
        let _ = std::fs::remove_file(made.with_extension("snapshot.sha256"));
        if std::fs::rename(&made, path).is_err() {
            // The snapshots directory on another file system: copied (the caller fsyncs it).
            let copied = std::fs::copy(&made, path);
            let _ = std::fs::remove_file(&made);
            copied?;
        }
        Ok(())
    }

    fn restore(&self, path: Option<&Path>) -> std::io::Result<()> {
        self.clear().map_err(std::io::Error::other)?;
        if let Some(p) = path {
            let restored = self
                .storage
                .recover_full(p, true)
                .map_err(std::io::Error::other)?;
            for name in &restored {
                self.forget(name, true);
            }
        }
        Ok(())
    }
}

/// This node's replica: its Raft handle and how it reaches the others.
pub struct Replica {
    /// The Raft group's handle.
    pub raft: Raft,
    /// This replica's id.
    pub id: NodeId,
    applier: Arc<StorageApplier>,
    http: reqwest::Client,
    api_key: Option<String>,
    /// Reads answered after the read barrier: those asking a level above one replica.
    linearizable_reads: AtomicU64,
    /// Writes this replica handed to its leader (it followed when they came).
    forwarded_writes: AtomicU64,
    /// The log index this replica must hold before it votes again ([`NO_VOTE_GATE`]: none),
    /// after it lost its disk (kept on disk too, by the log).
    vote_gate: AtomicU64,
    /// The log's store (shared with Raft), for the vote gate.
    log: replication::LogStore,
}

/// [`Replica::vote_gate`] when the replica votes freely.
const NO_VOTE_GATE: u64 = u64::MAX;

impl Replica {
    /// Starts this node's replica over `storage` (its log and state under
    /// `<storage>/replica`). A storage holding collections with no replica state is refused.
    pub async fn start(
        settings: &crate::config::ReplicaSettings,
        storage: Arc<storage::Storage>,
        storage_path: &Path,
        api_key: Option<String>,
    ) -> Result<Replica, String> {
        let dir = storage_path.join("replica");
        let applier = Arc::new(StorageApplier::new(storage.clone()));
        let (log_dir, sm_dir, a) = (dir.join("log"), dir.join("state"), applier.clone());
        let fresh = storage.list().is_empty() && storage.aliases().is_empty();
        let (mut log, sm) = tokio::task::spawn_blocking(move || {
            let sm = replication::StateMachine::open(&sm_dir, a, fresh)?;
            let log = replication::LogStore::open(&log_dir, sm.purge_limit())?;
            Ok::<_, std::io::Error>((log, sm))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("replica state in {}: {e}", dir.display()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?;
        // A replica that has never saved a vote is new, or lost its disk. Its initial members
        // tell which: a set that counts it among its voters means the disk was lost.
        let blank = log.read_vote().await.map_err(|e| e.to_string())?.is_none();
        let mut formed_elsewhere = None;
        // A gate left by an earlier start that had not caught up when it stopped.
        let mut vote_gate = log
            .vote_gate()
            .map_err(|e| format!("replica state in {}: {e}", dir.display()))?
            .unwrap_or(NO_VOTE_GATE);
        if let (true, Some(members)) = (blank, &settings.initial_members) {
            let survey = survey_peers(
                &http,
                members,
                settings.id,
                &settings.rejoin_without,
                api_key.as_deref(),
            )
            .await?;
            match survey {
                Survey::NoSet => {}
                Survey::NotAVoter { peer } => formed_elsewhere = Some(peer),
                Survey::Voter {
                    peer,
                    greatest,
                    catch_up_to,
                } => {
                    // It may have granted a vote it no longer remembers, and granting one
                    // below it could elect two leaders whose terms overlap (each overwriting
                    // the other's committed entries). Taking the greatest vote any voter
                    // holds as its own grants nothing below what it may have granted: every
                    // vote it gave is held by the candidate it went to. Not as committed:
                    // it has heard from no leader yet (a committed vote names openraft's
                    // current leader, and this replica would call itself ready, or even the
                    // leader when that vote is its own).
                    let held = openraft::Vote {
                        committed: false,
                        ..greatest
                    };
                    match catch_up_to {
                        None => {
                            tracing::info!(%peer, vote = %held, "the replica set is forming: this replica joins it holding the greatest vote of the others")
                        }
                        Some(index) => {
                            // Its log was part of the majorities that committed entries:
                            // until it holds as much log as the longest it was told of, it
                            // votes for no one (an empty log would elect any candidate,
                            // one missing entries committed with this replica's help).
                            // On disk before the vote: a restart that finds the vote
                            // finds the gate too.
                            log.set_vote_gate(Some(index))
                                .map_err(|e| format!("replica state in {}: {e}", dir.display()))?;
                            vote_gate = index;
                            tracing::warn!(%peer, vote = %held, catch_up_to = index, "this replica's state is gone but its set counts it as a voter: it rejoins holding the greatest vote of the other voters, and votes again once it has caught up from the leader");
                        }
                    }
                    log.save_vote(&held).await.map_err(|e| e.to_string())?;
                    formed_elsewhere = Some(peer);
                }
            }
        }
        let hb = settings.heartbeat.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "vector-router".into(),
            heartbeat_interval: hb,
            // A follower campaigns after the leader's lease (openraft: the maximum) and its
            // own timeout: 6.5 to 8 heartbeats without one. The minimum is also the vote
            // call's time limit (which covers the voter's fsync).
            election_timeout_min: hb * 5 / 2,
            election_timeout_max: hb * 4,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_entries),
            // Keep a little log behind a snapshot (a tenth of the interval, at most 1000): a
            // follower a few entries behind catches up from the log instead of a whole
            // snapshot.
            max_in_snapshot_log_to_keep: (settings.snapshot_entries / 10).min(1000),
            // Entries carry whole write requests: a few per append keep a message bounded
            // (and `Network` asks for fewer when a message grows past its byte bound).
            max_payload_entries: 64,
            snapshot_max_chunk_size: 1 << 20,
            // Per chunk, and the last chunk's answer waits for the whole storage to be
            // restored from it.
            install_snapshot_timeout: 120_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| format!("replica settings: {e}"))?;
        let network = replication::Network::new(settings.id, api_key.clone());
        let log_store = log.clone();
        let raft = Raft::new(settings.id, Arc::new(config), network, log, sm)
            .await
            .map_err(|e| format!("cannot start the replica: {e}"))?;
        // The set forms itself: every first voter proposes the same membership (openraft:
        // safe from several of them, when the same); a replica with state already refuses.
        // Not when another member answers that it has a set already (this replica lost its
        // state, or started after the others formed it): it then waits for the leader's log.
        // A replica the list does not name waits to be added (as a learner, by the leader).
        if let Some(members) = &settings.initial_members {
            if !members.contains_key(&settings.id) {
                tracing::warn!(id = settings.id, "this replica is not among the initial members: it waits to be added to the set, through its leader");
            } else if let Some(peer) = formed_elsewhere {
                tracing::info!(%peer, "the replica set is formed already: this replica waits for its leader");
            } else if !blank {
                // Its own log holds the set it belongs to.
            } else {
                let nodes: BTreeMap<NodeId, Node> = members
                    .iter()
                    .map(|(id, url)| (*id, Node::new(url.clone())))
                    .collect();
                match raft.initialize(nodes).await {
                    Ok(()) => {
                        tracing::info!(?members, "replica set formed with its initial members")
                    }
                    Err(openraft::error::RaftError::APIError(
                        openraft::error::InitializeError::NotAllowed(_),
                    )) => {}
                    Err(e) => return Err(format!("cannot form the replica set: {e}")),
                }
            }
        }
        // A replica whose Raft stopped on an error of its own (a disk failure while applying,
        // a snapshot it could not install) would go on answering reads from a state that no
        // longer follows its set: the process exits instead, and its next start restores the
        // latest snapshot and applies the log again.
        let mut metrics = raft.metrics();
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                let state = metrics.borrow().running_state.clone();
                match state {
                    Ok(()) | Err(openraft::error::Fatal::Stopped) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "replica: raft stopped on an error; exiting (a restart restores the latest snapshot and applies the log again)");
                        std::process::exit(70);
                    }
                }
            }
        });
        Ok(Replica {
            raft,
            id: settings.id,
            applier,
            http,
            api_key,
            linearizable_reads: AtomicU64::new(0),
            forwarded_writes: AtomicU64::new(0),
            vote_gate: AtomicU64::new(vote_gate),
            log: log_store,
        })
    }

    /// The vote gate and whether this replica has caught up with it: `None` when no gate is
    /// set (it votes), else the gate's log index and whether the log it holds reaches it.
    /// Reads only; [`Replica::may_vote`] lifts a gate that is reached.
    fn vote_gate_reached(&self) -> Option<(u64, bool)> {
        let gate = self.vote_gate.load(Ordering::Acquire);
        if gate == NO_VOTE_GATE {
            return None;
        }
        let m = self.raft.metrics().borrow().clone();
        let held = m
            .last_log_index
            .max(m.snapshot.map(|l| l.index))
            .max(m.last_applied.map(|l| l.index));
        Some((gate, held.is_some_and(|i| i >= gate)))
    }

    /// Whether this replica may answer a vote request: not while it rejoins after losing
    /// its disk with less log than the longest its set told it of. Once it has caught up,
    /// the gate is lifted here, on disk first: this is called on the vote path only, so a
    /// status read never writes.
    fn may_vote(&self) -> bool {
        let Some((gate, reached)) = self.vote_gate_reached() else {
            return true;
        };
        if reached {
            // Lifted on disk first; where that fails, the gate stays for the next start
            // (which only delays its votes) and this process votes.
            if let Err(e) = self.log.set_vote_gate(None) {
                tracing::warn!(error = %e, "cannot record that the vote gate is lifted");
            }
            self.vote_gate.store(NO_VOTE_GATE, Ordering::Release);
            tracing::info!(
                log_index = gate,
                "this replica has caught up after losing its disk: it votes again"
            );
            return true;
        }
        false
    }

    /// Lets the applier reach the server's caches.
    pub fn attach(&self, state: &Arc<AppState>) {
        let _ = self.applier.state.set(Arc::downgrade(state));
    }

    /// Proposes `command` and waits for its answer (from the leader, through it when this
    /// replica follows). Retried while the group has no leader, within `deadline`; a write
    /// handed to a leader that then fails to answer is not retried (it may have been
    /// committed): that is a 503 saying so.
    pub async fn propose(
        &self,
        command: &Command,
        deadline: Instant,
    ) -> Result<serde_json::Value, ApiError> {
        let bytes = serde_json::to_vec(command).expect("commands serialise");
        // A tenth of the time is left for the answer to get out before the request's own
        // limit (a 408 would hide why the write failed).
        let now = Instant::now();
        let deadline = now + deadline.saturating_duration_since(now).mul_f32(0.9);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let proposed = tokio::time::timeout(left, self.raft.client_write(Blob(bytes.clone())));
            let Ok(written) = proposed.await else {
                return Err(unavailable(
                    "the write was not committed in time (a majority of the replica set did \
                     not answer); it may or may not be applied later",
                ));
            };
            match written {
                Ok(r) => {
                    note_written(r.log_id.index);
                    return Answer::decode(&r.data.0);
                }
                Err(openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ForwardToLeader(f),
                )) => {
                    if let Some(node) = f.leader_node {
                        match self.forward_write(&node, &bytes, deadline).await {
                            Forwarded::Answer(a) => {
                                self.forwarded_writes.fetch_add(1, Ordering::Relaxed);
                                return a;
                            }
                            Forwarded::NotLeader => {}
                        }
                    }
                }
                Err(e) => return Err(unavailable(format!("the replica set: {e}"))),
            }
            if Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(unavailable(
                    "the replica set has no leader (an election is under way, or a majority \
                     of its replicas is down)",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn forward_write(&self, leader: &Node, bytes: &[u8], deadline: Instant) -> Forwarded {
        let url = format!("{}/raft/write", leader.addr.trim_end_matches('/'));
        let left = deadline.saturating_duration_since(Instant::now());
        let mut r = self
            .http
            .post(&url)
            .timeout(left.max(Duration::from_millis(1)))
            .header(replication::FROM_HEADER, self.id)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec());
        if let Some(k) = &self.api_key {
            r = r.header(replication::API_KEY_HEADER, k);
        }
        match r.send().await {
            // Not sent: safe to try again (after an election, or on the next leader).
            Err(e) if e.is_connect() => Forwarded::NotLeader,
            Err(e) => Forwarded::Answer(Err(unavailable(format!(
                "the leader {url} did not answer ({e}); the write may or may not have been \
                 applied"
            )))),
            Ok(a) if a.status() == StatusCode::MISDIRECTED_REQUEST => Forwarded::NotLeader,
            Ok(a) if a.status().is_success() => {
                if let Some(i) = a
                    .headers()
                    .get(WRITTEN_AT_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                {
                    note_written(i);
                }
                match a.bytes().await {
                    Ok(b) => Forwarded::Answer(Answer::decode(&b)),
                    Err(e) => Forwarded::Answer(Err(unavailable(format!(
                        "the leader's answer was cut ({e}); the write may or may not have been \
                         applied"
                    )))),
                }
            }
            Ok(a) => {
                let status = a.status();
                let text = a.text().await.unwrap_or_default();
                Forwarded::Answer(Err(unavailable(format!(
                    "the leader answered {status}: {text}"
                ))))
            }
        }
    }

    /// Waits until this replica has applied every entry the leader had committed when
    /// called, the leader having confirmed it leads (a linearizable read).
    pub async fn read_barrier(&self, deadline: Instant) -> Result<(), ApiError> {
        let index = loop {
            match self.raft.ensure_linearizable().await {
                Ok(read) => break read.map(|l| l.index),
                Err(openraft::error::RaftError::APIError(
                    openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                )) => {
                    if let Some(node) = f.leader_node {
                        if let Some(i) = self.remote_read_index(&node, deadline).await? {
                            break i;
                        }
                    }
                }
                Err(e) => return Err(unavailable(format!("the replica set: {e}"))),
            }
            if Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(unavailable(
                    "the replica set has no leader to confirm a read",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(i) = index {
            let left = deadline.saturating_duration_since(Instant::now());
            self.raft
                .wait(Some(left))
                .applied_index_at_least(Some(i), "linearizable read")
                .await
                .map_err(|e| unavailable(format!("this replica is behind: {e}")))?;
        }
        self.linearizable_reads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until this replica has applied log entry `index` (a router's last write, as a
    /// replica answered it), at most `limit`; a 503 past it (the router asks another).
    pub async fn wait_applied(&self, index: u64, limit: Duration) -> Result<(), ApiError> {
        let (applied, beyond_the_log) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leads = m.current_leader == Some(m.id);
            (
                m.last_applied.map_or(0, |l| l.index),
                // The leader holds every committed entry: an index past its log was never
                // committed in this set (a router's mark from a set formed anew since).
                leads && index > m.last_log_index.unwrap_or(0),
            )
        };
        if applied >= index || beyond_the_log {
            return Ok(());
        }
        self.raft
            .wait(Some(limit))
            .applied_index_at_least(Some(index), "a router's last write")
            .await
            .map(|_| ())
            .map_err(|e| {
                unavailable(format!(
                    "this replica has not applied entry {index} (the router's last write) yet: {e}"
                ))
            })
    }

    /// The leader's read index; `None` when it no longer leads (ask again).
    async fn remote_read_index(
        &self,
        leader: &Node,
        deadline: Instant,
    ) -> Result<Option<Option<u64>>, ApiError> {
        let url = format!("{}/raft/read-index", leader.addr.trim_end_matches('/'));
        let left = deadline.saturating_duration_since(Instant::now());
        let mut r = self
            .http
            .post(&url)
            .header(replication::FROM_HEADER, self.id)
            .timeout(left.max(Duration::from_millis(1)));
        if let Some(k) = &self.api_key {
            r = r.header(replication::API_KEY_HEADER, k);
        }
        match r.send().await {
            Err(e) if e.is_connect() => Ok(None),
            Err(e) => Err(unavailable(format!("the leader {url}: {e}"))),
            Ok(a) if a.status() == StatusCode::MISDIRECTED_REQUEST => Ok(None),
            Ok(a) if a.status().is_success() => a
                .json::<Option<u64>>()
                .await
                .map(Some)
                .map_err(|e| unavailable(format!("the leader {url}: {e}"))),
            Ok(a) => Err(unavailable(format!(
                "the leader {url} answered {}",
                a.status()
            ))),
        }
    }

    /// Its id, term, the leader it knows, and the index a router's reads must find applied:
    /// what this replica applied, or `written_at` if later (the index of a write this call
    /// made, applied on the leader before it was answered, here or through this replica), as
    /// a router over its set reads them ([`shard_router::remote::replicas::ReplicaView`]).
    pub fn view_header(&self, written_at: u64) -> axum::http::HeaderValue {
        let view = {
            let m = self.raft.metrics();
            let m = m.borrow();
            shard_router::remote::replicas::ReplicaView {
                id: m.id,
                term: m.current_term,
                leader: m.current_leader,
                applied: m.last_applied.map_or(0, |l| l.index).max(written_at),
            }
        };
        axum::http::HeaderValue::from_str(&view.to_header())
            .expect("digits, spaces and a dash are a header value")
    }

    /// Whether it knows a leader of its set (what its `/readyz` asks: a replica with none
    /// takes no write, and may be far behind).
    pub fn knows_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    /// The replica's view of its set, for `GET /cluster/replica` and the metrics.
    pub fn status(&self) -> serde_json::Value {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let nodes: BTreeMap<String, String> = membership
            .nodes()
            .map(|(id, n)| (id.to_string(), n.addr.clone()))
            .collect();
        let replication = m.replication.as_ref().map(|r| {
            r.iter()
                .map(|(id, l)| (id.to_string(), l.map(|l| l.index)))
                .collect::<BTreeMap<_, _>>()
        });
        serde_json::json!({
            "id": m.id,
            "state": format!("{:?}", m.state),
            "term": m.current_term,
            "leader": m.current_leader,
            "last_log_index": m.last_log_index,
            "applied_index": m.last_applied.map(|l| l.index),
            "snapshot_index": m.snapshot.map(|l| l.index),
            "vote": m.vote,
            // What a vote request would be answered now, without lifting the gate.
            "votes": self.vote_gate_reached().is_none_or(|(_, reached)| reached),
            "voters": voters,
            "learners": learners,
            "nodes": nodes,
            "matched_index": replication,
        })
    }

    /// The replica's gauges in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let m = self.raft.metrics().borrow().clone();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, labels: &str, v: f64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {v}\n"
            ));
        };
        gauge(
            "vector_router_replica_term",
            "The Raft term this replica is in.",
            "",
            m.current_term as f64,
        );
        gauge(
            "vector_router_replica_is_leader",
            "1 when this replica leads its set.",
            "",
            (m.current_leader == Some(m.id)) as u8 as f64,
        );
        gauge(
            "vector_router_replica_leader_known",
            "1 when this replica knows a leader of its set.",
            "",
            m.current_leader.is_some() as u8 as f64,
        );
        gauge(
            "vector_router_replica_last_log_index",
            "The index of this replica's last log entry.",
            "",
            m.last_log_index.map_or(-1.0, |i| i as f64),
        );
        gauge(
            "vector_router_replica_applied_index",
            "The index of the last entry this replica applied.",
            "",
            m.last_applied.map_or(-1.0, |l| l.index as f64),
        );
        out.push_str(&format!(
            "# HELP vector_router_replica_linearizable_reads_total Reads answered after the \
             replica set's read barrier (a consistency above one replica).\n\
             # TYPE vector_router_replica_linearizable_reads_total counter\n\
             vector_router_replica_linearizable_reads_total {}\n",
            self.linearizable_reads.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP vector_router_replica_forwarded_writes_total Writes this replica handed \
             to its leader (sent to it while it followed).\n\
             # TYPE vector_router_replica_forwarded_writes_total counter\n\
             vector_router_replica_forwarded_writes_total {}\n",
            self.forwarded_writes.load(Ordering::Relaxed)
        ));
        if let Some(r) = &m.replication {
            let leader_last = m.last_log_index.unwrap_or(0);
            out.push_str(
                "# HELP vector_router_replica_lag_entries On the leader: how many log entries each replica lacks.\n# TYPE vector_router_replica_lag_entries gauge\n",
            );
            for (id, l) in r {
                let matched = l.map_or(0, |l| l.index + 1);
                out.push_str(&format!(
                    "vector_router_replica_lag_entries{{replica=\"{id}\"}} {}\n",
                    (leader_last + 1).saturating_sub(matched)
                ));
            }
        }
        out
    }
}

/// What a replica with no vote on disk learns from its set before it starts.
#[derive(Debug)]
enum Survey {
    /// No other member answers that it has a set: this replica may form one.
    NoSet,
    /// A set exists (`peer` answered so) and does not count this replica among its voters:
    /// it is new and waits for its leader.
    NotAVoter { peer: String },
    /// A set exists and counts this replica among its voters. It is still forming (it has
    /// never had a leader: `catch_up_to` is `None`), or this replica lost its state: every
    /// other voter answered (or was let off by `--replica-rejoin-without`), and
    /// `catch_up_to` is the longest log among theirs. `greatest` is the greatest vote any of
    /// those who answered holds.
    Voter {
        peer: String,
        greatest: openraft::Vote<NodeId>,
        catch_up_to: Option<u64>,
    },
}

/// How long a replica that lost its state waits for every other voter of its set to answer
/// before it gives up starting (it is started again, by its supervisor or by hand).
const LOST_STATE_SURVEY: Duration = Duration::from_secs(10);

/// One replica's `GET /cluster/replica`, as far as the survey reads it. The fields are
/// optional so that an answer without them (a replica of an older version) is told apart
/// from no answer.
#[derive(Deserialize)]
struct PeerView {
    id: NodeId,
    #[serde(default)]
    vote: Option<openraft::Vote<NodeId>>,
    #[serde(default)]
    last_log_index: Option<u64>,
    #[serde(default)]
    voters: BTreeSet<NodeId>,
    #[serde(default)]
    nodes: BTreeMap<String, String>,
}

/// Why a member's view was not had.
enum NoView {
    /// Nothing listens there, or it is not a replica (404): no set is known there.
    Silent,
    /// It answered something else (refused the key, failed, an answer not understood): a
    /// set may exist there.
    Unclear(String),
}

async fn peer_view(
    http: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
) -> Result<PeerView, NoView> {
    let mut r = http
        .get(format!("{}/cluster/replica", url.trim_end_matches('/')))
        .timeout(Duration::from_secs(2));
    if let Some(k) = api_key {
        r = r.header("api-key", k);
    }
    // Refused: nothing listens there. A timeout or a broken answer is not silence: a set
    // may exist there.
    let answer = r.send().await.map_err(|e| {
        if e.is_connect() {
            NoView::Silent
        } else {
            NoView::Unclear(e.to_string())
        }
    })?;
    let status = answer.status();
    if status == StatusCode::NOT_FOUND {
        return Err(NoView::Silent);
    }
    if !status.is_success() {
        return Err(NoView::Unclear(format!("answered {status}")));
    }
    let body: serde_json::Value = answer
        .json()
        .await
        .map_err(|e| NoView::Unclear(e.to_string()))?;
    serde_json::from_value(body["result"].clone()).map_err(|e| NoView::Unclear(e.to_string()))
}

/// Asks the other initial `members` what set they have, for a replica (`own`) that has no
/// vote on disk. When their set counts it as a voter and has had a leader, it asks every
/// other voter (the union of the voters they name, at the addresses they give) for its vote,
/// until all have answered or [`LOST_STATE_SURVEY`] has passed: a voter that does not answer
/// may hold the one vote this replica must not grant twice, so then it refuses to start
/// (voters in `let_off` are not waited for). A set that has never had a leader (no answer
/// shows a committed vote or a log entry past the initial membership) is still forming: its
/// first members start at different times, and those that answered are enough.
async fn survey_peers(
    http: &reqwest::Client,
    members: &BTreeMap<NodeId, String>,
    own: NodeId,
    let_off: &BTreeSet<NodeId>,
    api_key: Option<&str>,
) -> Result<Survey, String> {
    let mut views: BTreeMap<NodeId, PeerView> = BTreeMap::new();
    let mut formed_at = None;
    let mut unclear = Vec::new();
    for (id, url) in members {
        if *id == own {
            continue;
        }
        match peer_view(http, url, api_key).await {
            Ok(v) => {
                if !v.voters.is_empty() && formed_at.is_none() {
                    formed_at = Some(url.clone());
                }
                views.insert(v.id, v);
            }
            Err(NoView::Unclear(why)) => unclear.push(format!("{url} {why}")),
            Err(NoView::Silent) => {}
        }
    }
    let Some(peer) = formed_at else {
        if !unclear.is_empty() {
            return Err(format!(
                "this replica has no state on disk and cannot tell whether its set exists \
                 already, so it does not form one: {}",
                unclear.join("; ")
            ));
        }
        return Ok(Survey::NoSet);
    };
    let deadline = Instant::now() + LOST_STATE_SURVEY;
    loop {
        let voters: BTreeSet<NodeId> = views.values().flat_map(|v| v.voters.clone()).collect();
        if !voters.contains(&own) {
            return Ok(Survey::NotAVoter { peer });
        }
        // Where the set says its members are, before what the flag said.
        let mut addresses: BTreeMap<NodeId, String> = members.clone();
        for v in views.values() {
            for (id, url) in &v.nodes {
                if let Ok(id) = id.parse::<NodeId>() {
                    addresses.insert(id, url.clone());
                }
            }
        }
        let has_led = views.values().any(|v| {
            v.vote.is_some_and(|v| v.committed) || v.last_log_index.is_some_and(|i| i > 0)
        });
        // A voter whose answer names no vote (an older version) has not answered.
        let missing: Vec<NodeId> = voters
            .iter()
            .copied()
            .filter(|id| {
                *id != own
                    && !let_off.contains(id)
                    && views.get(id).is_none_or(|v| v.vote.is_none())
            })
            .collect();
        if missing.is_empty() || !has_led {
            let greatest = views
                .values()
                .filter_map(|v| v.vote)
                .max_by_key(|v| (v.leader_id.term, v.leader_id.node_id, v.committed));
            if let Some(greatest) = greatest {
                return Ok(Survey::Voter {
                    peer,
                    greatest,
                    catch_up_to: has_led
                        .then(|| views.values().filter_map(|v| v.last_log_index).max())
                        .flatten(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "this replica has no state on disk, but its replica set counts it as a voter \
                 (it lost its disk): it rejoins only once every other voter has told it its \
                 vote, so that it never grants a vote below one it gave and forgot, and voters \
                 {missing:?} did not answer in {}s. Start it again once they answer; a voter \
                 gone for good, or that lost its disk too, may be let off with \
                 --replica-rejoin-without (each one let off is a vote this replica may have \
                 given and cannot recover)",
                LOST_STATE_SURVEY.as_secs()
            ));
        }
        for id in &missing {
            if let Some(url) = addresses.get(id) {
                if let Ok(v) = peer_view(http, url, api_key).await {
                    views.insert(v.id, v);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

enum Forwarded {
    Answer(Result<serde_json::Value, ApiError>),
    NotLeader,
}

fn replica(state: &AppState) -> Result<&Arc<Replica>, ApiError> {
    state
        .replica()
        .ok_or_else(|| ApiError::not_found("Not found: this node is not a replica (--replica-id)"))
}

/// openraft's result as JSON (`{"Ok": ...}` / `{"Err": ...}`), as `replication::Network`
/// reads it.
fn raft_json<T: Serialize, E: Serialize>(r: Result<T, E>) -> Response {
    Json(r).into_response()
}

async fn append(
    State(state): State<Arc<AppState>>,
    Json(req): Json<openraft::raft::AppendEntriesRequest<replication::TypeConfig>>,
) -> Result<Response, ApiError> {
    Ok(raft_json(replica(&state)?.raft.append_entries(req).await))
}

async fn vote(
    State(state): State<Arc<AppState>>,
    Json(req): Json<openraft::raft::VoteRequest<NodeId>>,
) -> Result<Response, ApiError> {
    let r = replica(&state)?;
    if !r.may_vote() {
        // An error, not a refusal: the candidate counts no vote from this replica and
        // learns nothing from it.
        return Err(unavailable(
            "this replica lost its disk and has not caught up with its set yet: it does not vote",
        ));
    }
    Ok(raft_json(r.raft.vote(req).await))
}

async fn snapshot(
    State(state): State<Arc<AppState>>,
    Json(req): Json<openraft::raft::InstallSnapshotRequest<replication::TypeConfig>>,
) -> Result<Response, ApiError> {
    Ok(raft_json(replica(&state)?.raft.install_snapshot(req).await))
}

/// A write handed on by a follower: proposed here if this replica leads, else 421.
async fn write(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let r = replica(&state)?;
    let written = tokio::time::timeout(state.timeout, r.raft.client_write(Blob(body.to_vec())))
        .await
        .map_err(|_| {
            unavailable(
                "the write was not committed in time (a majority of the replica set did not \
                 answer); it may or may not be applied later",
            )
        })?;
    match written {
        Ok(answer) => Ok((
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                ),
                (
                    axum::http::HeaderName::from_static(WRITTEN_AT_HEADER),
                    axum::http::HeaderValue::from(answer.log_id.index),
                ),
            ],
            answer.data.0,
        )
            .into_response()),
        Err(openraft::error::RaftError::APIError(
            openraft::error::ClientWriteError::ForwardToLeader(_),
        )) => Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected: this replica does not lead its set",
        )),
        Err(e) => Err(unavailable(format!("the replica set: {e}"))),
    }
}

/// The leader's read index (`null`: nothing committed yet), or 421 on a follower.
async fn read_index(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let r = replica(&state)?;
    match r.raft.ensure_linearizable().await {
        Ok(read) => Ok(Json(read.map(|l| l.index)).into_response()),
        Err(openraft::error::RaftError::APIError(
            openraft::error::CheckIsLeaderError::ForwardToLeader(_),
        )) => Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected: this replica does not lead its set",
        )),
        Err(e) => Err(unavailable(format!("the replica set: {e}"))),
    }
}

/// The calls between replicas (`/raft/...`), served outside the request-size, time and
/// concurrency limits of the API: a heartbeat shed under load would start an election.
pub fn internal_routes(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/write", post(write))
        .route("/raft/read-index", post(read_index))
        .with_state(state)
}

/// `GET /cluster/replica`.
pub async fn status(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let start = Instant::now();
    Ok(crate::api::ok_json(start, &replica(&state)?.status()))
}

/// The body of `POST /cluster/replica/initialize`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitializeBody {
    /// The first voters: id to REST URL.
    members: BTreeMap<NodeId, String>,
}

fn check_url(url: &str) -> Result<(), ApiError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Wrong input: `{url}` is not an http(s)://host:port URL"
        )))
    }
}

fn membership_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Bad request: {e}"))
}

/// `POST /cluster/replica/initialize`: makes a new set of these voters (once, on one of
/// them; the others learn it from the leader).
pub async fn initialize(
    State(state): State<Arc<AppState>>,
    crate::api::Body(body): crate::api::Body<InitializeBody>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let r = replica(&state)?;
    if body.members.is_empty() || body.members.len() > 9 {
        return Err(ApiError::bad_request(
            "Wrong input: members: between 1 and 9 replicas",
        ));
    }
    if !body.members.contains_key(&r.id) {
        return Err(ApiError::bad_request(format!(
            "Wrong input: members: this replica ({}) is not among them",
            r.id
        )));
    }
    let mut nodes = BTreeMap::new();
    for (id, url) in body.members {
        check_url(&url)?;
        nodes.insert(id, Node::new(url));
    }
    r.raft.initialize(nodes).await.map_err(membership_error)?;
    Ok(crate::api::ok_json(start, &true))
}

/// The body of `POST /cluster/replica/learners`: the new replica's id and REST URL.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerBody {
    id: NodeId,
    url: String,
}

/// `POST /cluster/replica/learners`: adds a replica that receives the log without voting,
/// and answers once it has caught up. On the leader.
pub async fn add_learner(
    State(state): State<Arc<AppState>>,
    crate::api::Body(body): crate::api::Body<LearnerBody>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let r = replica(&state)?;
    check_url(&body.url)?;
    r.raft
        .add_learner(body.id, Node::new(body.url), true)
        .await
        .map_err(membership_error)?;
    Ok(crate::api::ok_json(start, &r.status()))
}

/// The body of `POST /cluster/replica/membership`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipBody {
    voters: BTreeSet<NodeId>,
}

/// `POST /cluster/replica/membership`: the set's voters become these (joint consensus;
/// a replica dropped from the voters is removed). On the leader.
pub async fn change_membership(
    State(state): State<Arc<AppState>>,
    crate::api::Body(body): crate::api::Body<MembershipBody>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let r = replica(&state)?;
    if body.voters.is_empty() {
        return Err(ApiError::bad_request("Wrong input: voters: at least one"));
    }
    r.raft
        .change_membership(body.voters, false)
        .await
        .map_err(membership_error)?;
    Ok(crate::api::ok_json(start, &r.status()))
}

/// The admin routes (under the API's limits and keys).
pub fn admin_routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/cluster/replica", get(status))
        .route("/cluster/replica/initialize", post(initialize))
        .route("/cluster/replica/learners", post(add_learner))
        .route("/cluster/replica/membership", post(change_membership))
}
