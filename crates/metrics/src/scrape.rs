//! Families built from a [`Snapshot`] at scrape time.
//!
//! These are plain protocol structures, made fresh on each scrape: no state
//! is kept, so a deleted collection's gauges vanish with it.

use std::collections::BTreeMap;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::labels::CollectionLabels;
use crate::{Snapshot, NAMESPACE};

/// The summed figures of one `collection` label value.
#[derive(Default)]
struct CollectionSums {
    points: u64,
    segments: u64,
    optimizer_queue: u64,
    wal_bytes: u64,
    indexed_vectors: u64,
    index_vector_bytes: u64,
}

/// All families for `snapshot`. Collection names pass through `labels`, so
/// they get the same label values as the latency histograms, and
/// collections past the limit are summed under the overflow label.
pub(crate) fn snapshot_families(
    snapshot: &Snapshot,
    labels: &mut CollectionLabels,
) -> Vec<MetricFamily> {
    let mut families = Vec::new();

    families.push(family(
        "collections",
        "Collections the router serves.",
        MetricType::GAUGE,
        vec![gauge(&[], snapshot.collections.len() as f64)],
    ));

    let mut sums: BTreeMap<&str, CollectionSums> = BTreeMap::new();
    for stats in &snapshot.collections {
        let (label, _) = labels.admit(&stats.name, None);
        let entry = sums.entry(label).or_default();
        entry.points = entry.points.saturating_add(stats.points);
        entry.segments = entry.segments.saturating_add(stats.segments);
        entry.optimizer_queue = entry.optimizer_queue.saturating_add(stats.optimizer_queue);
        entry.wal_bytes = entry.wal_bytes.saturating_add(stats.wal_bytes);
        entry.indexed_vectors = entry.indexed_vectors.saturating_add(stats.indexed_vectors);
        entry.index_vector_bytes = entry
            .index_vector_bytes
            .saturating_add(stats.index_vector_bytes);
    }
    if !sums.is_empty() {
        let per_collection = |pick: fn(&CollectionSums) -> u64| -> Vec<Metric> {
            sums.iter()
                .map(|(name, sums)| gauge(&[("collection", name)], pick(sums) as f64))
                .collect()
        };
        families.push(family(
            "collection_points",
            "Live points per collection.",
            MetricType::GAUGE,
            per_collection(|s| s.points),
        ));
        families.push(family(
            "collection_segments",
            "Segments per collection, sealed and appendable.",
            MetricType::GAUGE,
            per_collection(|s| s.segments),
        ));
        families.push(family(
            "collection_optimizer_queue_length",
            "Segments waiting for the optimizer per collection.",
            MetricType::GAUGE,
            per_collection(|s| s.optimizer_queue),
        ));
        families.push(family(
            "wal_bytes",
            "Bytes in the write-ahead log per collection.",
            MetricType::GAUGE,
            per_collection(|s| s.wal_bytes),
        ));
        families.push(family(
            "collection_indexed_vectors",
            "Vectors reachable through an index per collection.",
            MetricType::GAUGE,
            per_collection(|s| s.indexed_vectors),
        ));
        families.push(family(
            "collection_index_vector_bytes",
            "Bytes of vectors and codes held by indexed segments per collection.",
            MetricType::GAUGE,
            per_collection(|s| s.index_vector_bytes),
        ));
    }

    if let Some(cache) = &snapshot.cache {
        families.push(family(
            "cache_hits_total",
            "Result-cache lookups answered from the cache.",
            MetricType::COUNTER,
            vec![counter(cache.hits)],
        ));
        families.push(family(
            "cache_misses_total",
            "Result-cache lookups that found nothing.",
            MetricType::COUNTER,
            vec![counter(cache.misses)],
        ));
        families.push(family(
            "cache_evictions_total",
            "Result-cache entries removed (size, expiry or explicit).",
            MetricType::COUNTER,
            vec![counter(cache.evictions)],
        ));
        families.push(family(
            "cache_entries",
            "Result-cache entries held.",
            MetricType::GAUGE,
            vec![gauge(&[], cache.entries as f64)],
        ));
        families.push(family(
            "cache_size_bytes",
            "Summed weight of the result-cache entries held, in bytes.",
            MetricType::GAUGE,
            vec![gauge(&[], cache.weighted_bytes as f64)],
        ));
    }

    if !snapshot.nodes.is_empty() {
        families.push(family(
            "cluster_node_up",
            "Whether a cluster node answered its last call or health probe (1) or not (0).",
            MetricType::GAUGE,
            snapshot
                .nodes
                .iter()
                .map(|n| gauge(&[("node", &n.url)], if n.up { 1.0 } else { 0.0 }))
                .collect(),
        ));
        let sets: Vec<&crate::NodeStatus> = snapshot
            .nodes
            .iter()
            .filter(|n| n.replicas.len() > 1)
            .collect();
        if !sets.is_empty() {
            let each = |f: &dyn Fn(&crate::ReplicaStatus) -> Metric| {
                sets.iter()
                    .flat_map(|n| {
                        n.replicas.iter().map(move |r| {
                            with_labels(f(r), &[("node", &n.url), ("replica", &r.url)])
                        })
                    })
                    .collect()
            };
            families.push(family(
                "cluster_replica_up",
                "Whether a replica of a node that is a replica set answered its last call (1) \
                 or not (0).",
                MetricType::GAUGE,
                each(&|r| gauge(&[], if r.up { 1.0 } else { 0.0 })),
            ));
            families.push(family(
                "cluster_replica_write_target",
                "1 for the replica a set's writes are sent to first: the leader of the highest \
                 term its replicas reported, or the one tried next after a write failed (for \
                 a set that reports no leader, the replica that took the last write).",
                MetricType::GAUGE,
                each(&|r| gauge(&[], if r.write_target { 1.0 } else { 0.0 })),
            ));
            families.push(family(
                "cluster_replica_outstanding_calls",
                "Calls on a replica now (what the power of two choices compares).",
                MetricType::GAUGE,
                each(&|r| gauge(&[], r.outstanding as f64)),
            ));
            families.push(family(
                "cluster_replica_calls_total",
                "Calls sent to a replica.",
                MetricType::COUNTER,
                each(&|r| counter(r.calls)),
            ));
            families.push(family(
                "cluster_replica_failures_total",
                "Calls a replica did not answer (unreachable, or unavailable): each moved a \
                 read to another replica, or a write to the next one.",
                MetricType::COUNTER,
                each(&|r| counter(r.failures)),
            ));
            families.push(family(
                "cluster_replica_hedges_lost_total",
                "Reads a replica was asked first that a second replica answered sooner (one \
                 that loses three in a row, answering nothing, leaves the draw for a second).",
                MetricType::COUNTER,
                each(&|r| counter(r.hedges_lost)),
            ));
            families.push(family(
                "cluster_hedged_reads_total",
                "Reads sent to a second replica because the first had not answered in time.",
                MetricType::COUNTER,
                sets.iter()
                    .map(|n| with_labels(counter(n.hedged_reads), &[("node", &n.url)]))
                    .collect(),
            ));
        }
    }

    if !snapshot.reshardings.is_empty() {
        let each = |f: &dyn Fn(&crate::ReshardingStatus) -> f64| {
            snapshot
                .reshardings
                .iter()
                .map(|r| gauge(&[("collection", &r.collection)], f(r)))
                .collect()
        };
        families.push(family(
            "resharding_points_moved",
            "Points a resharding under way has moved so far.",
            MetricType::GAUGE,
            each(&|r| r.points_moved as f64),
        ));
        families.push(family(
            "resharding_shards_left",
            "Shards a resharding under way has still to drain.",
            MetricType::GAUGE,
            each(&|r| r.shards_left as f64),
        ));
        families.push(family(
            "resharding_failing",
            "Whether a resharding's last batch failed and is being retried (1) or not (0).",
            MetricType::GAUGE,
            each(&|r| if r.failing { 1.0 } else { 0.0 }),
        ));
    }

    if !snapshot.filesystems.is_empty() {
        let each = |f: fn(&crate::FilesystemStats) -> u64| {
            snapshot
                .filesystems
                .iter()
                .map(|fs| gauge(&[("volume", &fs.volume)], f(fs) as f64))
                .collect()
        };
        families.push(family(
            "filesystem_available_bytes",
            "Bytes still free for the router on the filesystem of its storage or snapshot directory.",
            MetricType::GAUGE,
            each(|fs| fs.available_bytes),
        ));
        families.push(family(
            "filesystem_size_bytes",
            "Size in bytes of the filesystem of the router's storage or snapshot directory.",
            MetricType::GAUGE,
            each(|fs| fs.size_bytes),
        ));
    }

    if let Some(process) = &snapshot.process {
        families.push(family(
            "process_uptime_seconds",
            "Seconds since the router started.",
            MetricType::GAUGE,
            vec![gauge(&[], process.uptime_seconds)],
        ));
        let optional = [
            (
                "process_resident_memory_bytes",
                "Resident memory of the process, in bytes.",
                process.resident_memory_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors of the process.",
                process.open_fds,
            ),
            (
                "process_threads",
                "Operating-system threads of the process.",
                process.threads,
            ),
        ];
        for (name, help, value) in optional {
            if let Some(value) = value {
                families.push(family(
                    name,
                    help,
                    MetricType::GAUGE,
                    vec![gauge(&[], value as f64)],
                ));
            }
        }
    }

    families
}

fn family(name: &str, help: &str, metric_type: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(format!("{NAMESPACE}_{name}"));
    family.set_help(help.to_owned());
    family.set_field_type(metric_type);
    family.set_metric(metrics);
    family
}

fn gauge(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    with_labels(Metric::from_gauge(gauge), labels)
}

/// `metric` with `labels` (replacing any it had).
fn with_labels(mut metric: Metric, labels: &[(&str, &str)]) -> Metric {
    metric.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect(),
    );
    metric
}

fn counter(value: u64) -> Metric {
    let mut counter = Counter::default();
    // Counters are f64 in the exposition; exact up to 2^53.
    counter.set_value(value as f64);
    let mut metric = Metric::default();
    metric.set_counter(counter);
    metric
}
