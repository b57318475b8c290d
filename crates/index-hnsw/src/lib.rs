//! A hierarchical navigable small-world (HNSW) graph index (Malkov and Yashunin, 2018): the
//! default index of vector-router.
//!
//! * **Build** with the usual parameters ([`HnswConfig`]: `m`, layer 0 keeping `2·m` links,
//!   `ef_construct`), seeded levels, and the paper's neighbour-selection heuristic: a new
//!   node chooses `m` links on each of its levels, and its level-0 list fills towards `2·m`
//!   with backlinks from the nodes inserted after it (as hnswlib does). A batch
//!   of 1,000 vectors or more ([`HnswIndex::build`], [`HnswIndex::insert_all`]) walks 8-bit
//!   codes of its vectors and measures each walk's candidates exactly before choosing links.
//! * **Concurrent**: every method takes `&self`. Inserts from many threads (a bulk
//!   [`HnswIndex::build`] runs on the rayon pool) while searches go on. Node records are
//!   written once and published with release/acquire ordering; link lists are atomics updated
//!   under striped locks; the record store grows in buckets that never move.
//! * **Storage** ([`StorageKind`]): `f32`, `f16`, 8-bit scalar codes, bits, product codes or
//!   RaBitQ codes for the walk; quantized walks rescore `limit · oversampling` candidates with
//!   full vectors, which can stay on disk after a load while codes stay in memory. RaBitQ's
//!   estimates carry an error bound, so its walks re-rank (unless a search fixes an
//!   oversampling) only the candidates whose bound reaches below the `limit`-th exact
//!   distance so far ([`HnswIndex::reranked`] counts them).
//! * **Filters**: a predicate or bitset of allowed offsets, and a planner that chooses per
//!   search from the filter's count (a bitset's own, or a sample of a predicate) and the
//!   asked `ef`: allowed points below `full_scan_threshold`, or too sparse for the walk to
//!   keep its recall, are scanned; so are they where a cost model, in bytes of memory
//!   traffic, says the scan costs less than the walk (a quantized storage scans their codes
//!   and re-ranks the best, where that costs less than their full vectors); otherwise, when under a fifth
//!   of the points pass, the walk moves through allowed nodes only, looking through disallowed
//!   neighbours to theirs (two hops, as ACORN-1 does), with `ef` raised as the share falls so
//!   that its recall holds; from a fifth on, the walk goes through every node and keeps the
//!   allowed ones. [`HnswIndex::filter_plan`] says which path a search takes, and
//!   [`HnswIndex::search_with_plan`] runs a given one. A bitset filter is tested inline.
//! * **Every point findable**: an insert writes its own lists on every level before any node
//!   links to it, so a concurrent insert never descends onto a node with empty lists; after a
//!   build (or a batch, [`HnswIndex::link_unreachable`]) every node is searched for with its
//!   own vector, and one the walk misses gets a link from where the walk ends. The check walks
//!   the stored vectors (`f32`, or `f16`) with the default `ef` (a narrower walk first, which
//!   spares that one when it finds the node); quantized storages walk their
//!   codes at search time, so for them it holds for the graph, not for every code walk.
//! * **No graph** (`m` 0, as Qdrant allows): vectors are stored without links and every
//!   search is an exact scan of the live points that pass its filter.
//! * **Delete** marks a node; [`HnswIndex::repair`] relinks its neighbours so the graph stays
//!   navigable without it.
//! * **Persist**: [`HnswIndex::save`] and [`HnswIndex::load`], versioned and checksummed.
//!
//! ```
//! use index_hnsw::{HnswConfig, HnswIndex};
//! use index_core::{SearchParams, VectorIndex};
//! use quant::Metric;
//!
//! // 500 distinct 4-dimensional vectors (7919 and 2003 are coprime: no value repeats).
//! let data: Vec<f32> = (0..2000).map(|i| ((i * 7919) % 2003) as f32 / 2003.0).collect();
//! let index = HnswIndex::build(4, Metric::Euclidean, HnswConfig::default(), &data).unwrap();
//! // The graph walk finds the point itself (every point finds itself with the default `ef`,
//! // see `HnswIndex::link_unreachable`).
//! let hits = index.search(&data[40..44], &SearchParams::top(3), None).unwrap();
//! assert_eq!((hits[0].offset, hits[0].distance), (10, 0.0));
//! assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
//! // An exact scan agrees.
//! let exact = SearchParams { exact: true, ..SearchParams::top(3) };
//! assert_eq!(index.search(&data[40..44], &exact, None).unwrap(), hits);
//! ```

// Unsafe code is confined to the memory maps of the record store.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
mod arena;
mod config;
mod index;
mod persist;
mod visited;

pub use config::{HnswConfig, StorageKind, EF_CONSTRUCT_RANGE, M_RANGE};
pub use index::{BaseLayer, FilterPlan, HnswIndex};
pub use persist::LoadOptions;
