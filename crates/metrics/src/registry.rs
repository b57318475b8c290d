//! [`Metrics`]: the registered families and the scrape.

use std::sync::Arc;

use parking_lot::RwLock;
use prometheus::proto::MetricType;
use prometheus::{Histogram, HistogramOpts, IntCounter, Opts, Registry, TextEncoder};

use crate::family::{LabeledFamily, SharedFamily};
use crate::labels::{method_label, status_label, CollectionLabels, EndpointLabels, ShardLabel};
use crate::scrape::snapshot_families;
use crate::{MetricsConfig, MetricsError, Snapshot, NAMESPACE};

/// Histogram bucket bounds for every latency family, in seconds: 50 µs (a
/// cached answer or a tiny flat scan) to 10 s (a timeout), about three per
/// decade.
pub const LATENCY_BUCKETS_SECONDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// The router's Prometheus metrics.
///
/// Latencies and request counts are recorded as they happen into families
/// held by a [`prometheus::Registry`]; collection, cache and process figures
/// are not stored here at all but built from a [`Snapshot`] on each
/// [`render`](Self::render). Every name starts with `vector_router_`.
///
/// | family | type | labels |
/// |---|---|---|
/// | `http_requests_total` | counter | `endpoint`, `method`, `status` |
/// | `http_request_duration_seconds` | histogram | `endpoint`, `method` |
/// | `search_duration_seconds` | histogram | `collection` |
/// | `shard_search_duration_seconds` | histogram | `collection`, `shard` |
/// | `collections` | gauge | |
/// | `collection_points`, `collection_segments`, `collection_optimizer_queue_length`, `wal_bytes`, `collection_indexed_vectors`, `collection_index_vector_bytes` | gauge | `collection` |
/// | `cache_hits_total`, `cache_misses_total`, `cache_evictions_total` | counter | |
/// | `cache_entries`, `cache_size_bytes` | gauge | |
/// | `process_uptime_seconds`, `process_resident_memory_bytes`, `process_open_fds`, `process_threads` | gauge | |
///
/// # Label cardinality
///
/// - `endpoint` must be the route **template** the request matched, such as
///   `/collections/{name}/points/query`, never the raw path: a raw path
///   carries collection names and point ids and would make a series per
///   request. As a safety net, values past
///   [`MetricsConfig::max_endpoints`] fold into
///   [`OVERFLOW_LABEL`](crate::OVERFLOW_LABEL).
/// - `method` is one of the standard HTTP methods (any case in, upper case
///   out), else the overflow label; `status` is the code if within
///   100..=599, else the overflow label.
/// - `collection` values past [`MetricsConfig::max_collections`] and
///   `shard` values past [`MetricsConfig::max_shards_per_collection`] fold
///   into the overflow label. [`forget_collection`](Self::forget_collection)
///   frees a collection's value and drops its series.
pub struct Metrics {
    registry: Registry,
    http_requests: Arc<LabeledFamily<IntCounter>>,
    http_request_duration: Arc<LabeledFamily<Histogram>>,
    search_duration: Arc<LabeledFamily<Histogram>>,
    shard_search_duration: Arc<LabeledFamily<Histogram>>,
    /// Held (read) while observing into a collection's series and (write)
    /// while forgetting one, so an observation racing a delete cannot
    /// recreate a series after its collection's label was freed.
    collections: RwLock<CollectionLabels>,
    endpoints: RwLock<EndpointLabels>,
}

impl Metrics {
    /// Metrics with the default limits ([`MetricsConfig::default`]).
    pub fn new() -> Metrics {
        // The default limits are valid and the families are fixed; a failure
        // here is a defect caught by every test that builds `Metrics`.
        Metrics::with_config(&MetricsConfig::default())
            .expect("the default metrics configuration builds")
    }

    /// Metrics with the given label limits.
    pub fn with_config(config: &MetricsConfig) -> Result<Metrics, MetricsError> {
        config.validate()?;
        let http_requests = Arc::new(LabeledFamily::new(
            &format!("{NAMESPACE}_http_requests_total"),
            "HTTP requests answered, by route template, method and status.",
            MetricType::COUNTER,
            &["endpoint", "method", "status"],
            Box::new(|labels| {
                IntCounter::with_opts(
                    Opts::new("http_requests_total", "series").const_labels(labels),
                )
            }),
        )?);
        let http_request_duration = Arc::new(latency_family(
            "http_request_duration_seconds",
            "HTTP request latency in seconds, by route template and method.",
            &["endpoint", "method"],
        )?);
        let search_duration = Arc::new(latency_family(
            "search_duration_seconds",
            "Search latency in seconds per collection, fan-out and merge included.",
            &["collection"],
        )?);
        let shard_search_duration = Arc::new(latency_family(
            "shard_search_duration_seconds",
            "Latency of one shard's part of a search, in seconds.",
            &["collection", "shard"],
        )?);

        let registry = Registry::new();
        registry.register(Box::new(SharedFamily(Arc::clone(&http_requests))))?;
        registry.register(Box::new(SharedFamily(Arc::clone(&http_request_duration))))?;
        registry.register(Box::new(SharedFamily(Arc::clone(&search_duration))))?;
        registry.register(Box::new(SharedFamily(Arc::clone(&shard_search_duration))))?;

        Ok(Metrics {
            registry,
            http_requests,
            http_request_duration,
            search_duration,
            shard_search_duration,
            collections: RwLock::new(CollectionLabels::new(config)),
            endpoints: RwLock::new(EndpointLabels::new(config)),
        })
    }

    /// The registry holding the recorded families. Other components may
    /// register their own collectors here to be part of
    /// [`render`](Self::render); names this crate builds from the snapshot
    /// (see the table above) are taken.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one answered request. `endpoint` is the matched route
    /// template, not the raw path (see the type's documentation). A
    /// negative duration counts as zero; a non-finite one is not recorded
    /// (the request is still counted).
    pub fn observe_request(&self, endpoint: &str, method: &str, status: u16, seconds: f64) {
        let endpoint = {
            let resolved = self.endpoints.read().resolve(endpoint);
            match resolved {
                Some(label) => label,
                None => self.endpoints.write().admit(endpoint),
            }
        };
        let method = method_label(method);
        let status = status_label(status);
        if let Some(counter) = self.http_requests.series(&[endpoint, method, &status]) {
            counter.inc();
        }
        if let Some(seconds) = usable_seconds(seconds) {
            if let Some(histogram) = self.http_request_duration.series(&[endpoint, method]) {
                histogram.observe(seconds);
            }
        }
    }

    /// Records one search's latency on a collection.
    pub fn observe_search(&self, collection: &str, seconds: f64) {
        let Some(seconds) = usable_seconds(seconds) else {
            return;
        };
        self.with_collection_labels(collection, None, |label, _| {
            if let Some(histogram) = self.search_duration.series(&[label]) {
                histogram.observe(seconds);
            }
        });
    }

    /// Records the latency of one shard's part of a search.
    pub fn observe_shard_search(&self, collection: &str, shard: u32, seconds: f64) {
        let Some(seconds) = usable_seconds(seconds) else {
            return;
        };
        self.with_collection_labels(collection, Some(shard), |label, shard| {
            let shard = shard.unwrap_or(ShardLabel::Overflow).as_label();
            if let Some(histogram) = self.shard_search_duration.series(&[label, &shard]) {
                histogram.observe(seconds);
            }
        });
    }

    /// Drops a deleted collection's series and frees its label value for
    /// another collection. A collection that had folded into the overflow
    /// label has no series of its own; nothing changes then.
    pub fn forget_collection(&self, collection: &str) {
        let mut labels = self.collections.write();
        if labels.forget(collection) {
            self.search_duration.remove_where(0, collection);
            self.shard_search_duration.remove_where(0, collection);
        }
    }

    /// Renders the text exposition: the registered families plus
    /// gauges/counters filled from `snapshot` right now, sorted by name.
    /// Collections in the snapshot take label values like observed ones
    /// (past the limit their figures are summed under the overflow label).
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut families = self.registry.gather();
        families.extend(snapshot_families(snapshot, &mut self.collections.write()));
        // The encoder refuses only families without a name or without
        // samples; with those removed it cannot fail writing to a String.
        families.retain(|family| !family.name().is_empty() && !family.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = String::new();
        let _ = TextEncoder::new().encode_utf8(&families, &mut text);
        text
    }

    /// Runs `record` with the label values of `collection` (and `shard`),
    /// admitting them if there is room, while holding the label lock.
    fn with_collection_labels(
        &self,
        collection: &str,
        shard: Option<u32>,
        record: impl FnOnce(&str, Option<ShardLabel>),
    ) {
        {
            let labels = self.collections.read();
            if let Some((label, shard)) = labels.resolve(collection, shard) {
                record(label, shard);
                return;
            }
        }
        let mut labels = self.collections.write();
        let (label, shard) = labels.admit(collection, shard);
        record(label, shard);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "collection_labels",
                &self.collections.read().admitted_count(),
            )
            .finish_non_exhaustive()
    }
}

fn latency_family(
    name: &'static str,
    help: &str,
    label_names: &'static [&'static str],
) -> prometheus::Result<LabeledFamily<Histogram>> {
    LabeledFamily::new(
        &format!("{NAMESPACE}_{name}"),
        help,
        MetricType::HISTOGRAM,
        label_names,
        Box::new(move |labels| {
            Histogram::with_opts(
                HistogramOpts::new(name, "series")
                    .const_labels(labels)
                    .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
            )
        }),
    )
}

/// A duration worth recording: negative clock readings count as zero, and
/// NaN or infinities are dropped because one would poison the sum forever.
fn usable_seconds(seconds: f64) -> Option<f64> {
    seconds.is_finite().then(|| seconds.max(0.0))
}
