//! The plain stats a scrape is built from.

use std::time::Instant;

/// Everything [`Metrics::render`](crate::Metrics::render) turns into gauges
/// and counters at scrape time. The router fills it from the libraries'
/// own stats; nothing here is kept between scrapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// One entry per collection.
    pub collections: Vec<CollectionStats>,
    /// The result cache's counters, if there is a cache.
    pub cache: Option<CacheCounters>,
    /// The process's own figures, if collected (see [`ProcessStats::current`]).
    pub process: Option<ProcessStats>,
    /// In cluster mode, each node's health (empty otherwise).
    pub nodes: Vec<NodeStatus>,
    /// In cluster mode, each resharding under way.
    pub reshardings: Vec<ReshardingStatus>,
    /// The filesystems the router writes to (its storage and snapshot directories).
    pub filesystems: Vec<FilesystemStats>,
}

/// Space on the filesystem holding one of the router's directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesystemStats {
    /// Which directory (the `volume` label: `storage` or `snapshots`; a fixed set).
    pub volume: String,
    /// Bytes an unprivileged writer can still use (`statvfs`'s `f_bavail` blocks).
    pub available_bytes: u64,
    /// The filesystem's size in bytes.
    pub size_bytes: u64,
}

/// A resharding under way on one collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReshardingStatus {
    /// The collection (the `collection` label).
    pub collection: String,
    /// Points moved so far.
    pub points_moved: u64,
    /// Shards still to drain.
    pub shards_left: u64,
    /// Whether its last batch failed (and is retried).
    pub failing: bool,
}

/// One node of a cluster: whether its last call or probe was answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's URL (the `node` label; one per configured node, so bounded).
    pub url: String,
    /// Whether it answers.
    pub up: bool,
    /// When the node is a replica set (more than one replica): each replica as the router
    /// sees it. Empty for a plain node.
    pub replicas: Vec<ReplicaStatus>,
    /// Reads sent to a second replica because the first was slow (a replica set's).
    pub hedged_reads: u64,
}

/// One replica of a node that is a replica set, as the router sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The replica's URL (the `replica` label; configured, so bounded).
    pub url: String,
    /// Whether its last call was answered.
    pub up: bool,
    /// Calls on it now.
    pub outstanding: u64,
    /// Calls sent to it.
    pub calls: u64,
    /// Calls it did not answer (unreachable, or unavailable).
    pub failures: u64,
    /// Reads it was asked first that a second replica answered sooner.
    pub hedges_lost: u64,
    /// Whether the router sends the set's writes to it first (the leader, as far as the
    /// router knows).
    pub write_target: bool,
}

/// One collection's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionStats {
    /// The collection's name (the `collection` label).
    pub name: String,
    /// Live points.
    pub points: u64,
    /// Segments, sealed and appendable.
    pub segments: u64,
    /// Segments waiting for the optimizer (indexing or merging).
    pub optimizer_queue: u64,
    /// Bytes in the write-ahead log.
    pub wal_bytes: u64,
    /// Vectors reachable through an index (not only by exact scan).
    pub indexed_vectors: u64,
    /// Bytes of vectors and codes the indexed segments hold (RAM and memory-mapped).
    pub index_vector_bytes: u64,
}

/// The result cache's counters, as plain numbers so this crate needs no
/// dependency on the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Lookups served from the cache, since start.
    pub hits: u64,
    /// Lookups that found nothing, since start.
    pub misses: u64,
    /// Entries removed for any reason, since start.
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Summed weight of the entries held now, in bytes.
    pub weighted_bytes: u64,
}

/// The process's own figures. Fields this platform cannot report are `None`
/// and are left out of the scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Seconds since the process (or the router) started.
    pub uptime_seconds: f64,
    /// Resident set size in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Operating-system threads.
    pub threads: Option<u64>,
}

impl ProcessStats {
    /// Reads the figures of the running process. On Linux they come from
    /// `/proc/self/status` (`VmRSS`, `Threads`) and `/proc/self/fd` (whose
    /// count includes the descriptor used to list it); elsewhere only the
    /// uptime is known.
    pub fn current(started: Instant) -> ProcessStats {
        let uptime_seconds = started.elapsed().as_secs_f64();
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let field = |name: &str| status.as_deref().and_then(|text| status_field(text, name));
        ProcessStats {
            uptime_seconds,
            resident_memory_bytes: field("VmRSS:").map(|kib| kib.saturating_mul(1024)),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
            threads: field("Threads:"),
        }
    }
}

/// The first number after `name` on its line of `/proc/self/status`
/// (`VmRSS:   1234 kB` gives 1234).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse_and_missing_ones_are_none() {
        let text = "Name:\tx\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(status_field(text, "VmRSS:"), Some(2048));
        assert_eq!(status_field(text, "Threads:"), Some(7));
        assert_eq!(status_field(text, "VmSwap:"), None);
        assert_eq!(status_field("Threads:\tmany\n", "Threads:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn current_reads_this_process_on_linux() {
        let stats = ProcessStats::current(Instant::now());
        assert!(stats.resident_memory_bytes.is_some_and(|bytes| bytes > 0));
        assert!(stats.threads.is_some_and(|threads| threads >= 1));
        // stdin, stdout, stderr at least.
        assert!(stats.open_fds.is_some_and(|fds| fds >= 3));
    }
}
