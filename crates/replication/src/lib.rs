//! Replica sets on Raft: a shard group's nodes hold the same state because every write is an
//! entry of one replicated log, committed by a majority and applied in log order on each
//! replica. The consensus itself (elections, terms, log matching, commit, joint-consensus
//! membership changes, snapshot transfer) is `openraft`'s; this crate gives it what it asks
//! of an application:
//!
//! - [`LogStore`]: the Raft log and the vote on disk (checksummed segment files, fsynced
//!   before an append is acknowledged; layout in `log.rs`);
//! - [`StateMachine`]: applies committed entries to the node's storage through an
//!   [`Applier`] (the binary's: a command is a write as its REST twin would make it), and
//!   builds and installs snapshots of the whole storage;
//! - [`Network`]: the three Raft calls (append, vote, snapshot chunks) as HTTP requests to a
//!   peer's REST port, under `/raft/...`, with the cluster's API key.
//!
//! Commands and answers are opaque bytes ([`Blob`]): what a command means is the applier's.
//! Applying must be deterministic: every replica applies the same commands in the same order
//! to the same state, so a write that fails (a missing collection, a vector of the wrong
//! size) fails the same way everywhere, and its answer is an answer, not an error of the
//! state machine.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod frame;
mod log;
mod network;
mod state;

pub use log::LogStore;
pub use network::{Network, API_KEY_HEADER, FROM_HEADER};
pub use state::{Applier, StateMachine};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A replica's id in its group (unique in the group, never reused for another node).
pub type NodeId = u64;

/// A replica's address: the base URL of its REST port (`http://host:port`).
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The Raft types of a replica set.
    pub TypeConfig:
        D = Blob,
        R = Blob,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A replica set's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// Raft's errors with this crate's types.
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;

/// Why a proposed write was not committed.
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;

/// Why a read barrier failed (this replica is not, or no longer, the leader).
pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Node>;

/// A command or an answer: bytes the applier encodes and decodes. In JSON (the log's
/// records and the network's messages) as one base64 string, not an array of numbers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Blob)
            .map_err(serde::de::Error::custom)
    }
}

/// A storage error for openraft, from an I/O error on `what`.
fn io_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::fmt::Display,
) -> openraft::StorageError<NodeId> {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

/// Runs blocking file work from async code: on a multi-threaded runtime the worker hands
/// its other tasks on first (`block_in_place`); on a current-thread runtime (tests) it just
/// runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_travel_as_base64() {
        let b = Blob(vec![0, 1, 2, 250, 255]);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "\"AAEC+v8=\"");
        assert_eq!(serde_json::from_str::<Blob>(&json).unwrap(), b);
        assert!(serde_json::from_str::<Blob>("\"not base64!\"").is_err());
    }
}
