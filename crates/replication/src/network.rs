//! The Raft calls between replicas, as HTTP requests to a peer's REST port.
//!
//! `POST {peer}/raft/append`, `/raft/vote` and `/raft/snapshot` carry openraft's request as
//! JSON and answer `{"Ok": response}` or `{"Err": raft error}` (the serde form of a
//! `Result`); the binary serves them with [`openraft::Raft`]'s handlers. A snapshot travels in
//! chunks of `snapshot_max_chunk_size` bytes (base64 in the JSON). Every call carries the
//! cluster's API key, when there is one, and gives up after openraft's time-to-live for it.

use crate::{Node, NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{de::DeserializeOwned, Serialize};

/// The commands an append message carries at most, in bytes (a single larger command is
/// sent alone).
const MAX_APPEND_BYTES: usize = 4 << 20;

/// The header carrying the API key (Qdrant's).
pub const API_KEY_HEADER: &str = "api-key";

/// The header naming the replica a call comes from (for logs, and for the fault-injecting
/// proxies of the tests, which cut a replica off by it).
pub const FROM_HEADER: &str = "x-vector-router-replica-from";

/// Reaches the other replicas of a group.
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    api_key: Option<String>,
    from: NodeId,
}

impl Network {
    /// Replica `from`'s network, sending `api_key` with every call.
    pub fn new(from: NodeId, api_key: Option<String>) -> Network {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(1))
            .tcp_nodelay(true)
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("an HTTP client without TLS settings builds");
        Network {
            client,
            api_key,
            from,
        }
    }
}

/// One peer.
pub struct Peer {
    network: Network,
    target: NodeId,
    node: Node,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            network: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/raft/{path}", self.node.addr.trim_end_matches('/'));
        let mut r = self
            .network
            .client
            .post(&url)
            .timeout(option.hard_ttl())
            .header(FROM_HEADER, self.network.from)
            .json(req);
        if let Some(k) = &self.network.api_key {
            r = r.header(API_KEY_HEADER, k);
        }
        let answer = r.send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let status = answer.status();
        if !status.is_success() {
            let text = answer.text().await.unwrap_or_default();
            let e = std::io::Error::other(format!("{url}: HTTP {status}: {text}"));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<NodeId, E>> = answer
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        // openraft 0.9 gives an append one heartbeat interval: a message of many large writes
        // is split (Raft sends fewer entries at once after `PayloadTooLarge`).
        let n = rpc.entries.len() as u64;
        if n > 1 {
            let bytes: usize = rpc
                .entries
                .iter()
                .map(|e| match &e.payload {
                    openraft::EntryPayload::Normal(b) => b.0.len(),
                    _ => 64,
                })
                .sum();
            if bytes > MAX_APPEND_BYTES {
                let fit = (n * MAX_APPEND_BYTES as u64 / bytes as u64).clamp(1, n - 1);
                return Err(RPCError::PayloadTooLarge(
                    openraft::error::PayloadTooLarge::new_entries_hint(fit),
                ));
            }
        }
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
