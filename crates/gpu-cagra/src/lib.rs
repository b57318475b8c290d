//! CAGRA (Ootomo et al., ICDE 2024; NVIDIA cuVS): a fixed-degree proximity graph built for
//! massively parallel search, the third index family beside HNSW and IVF. The CPU path is
//! always built; the GPU path (cargo feature `cuda`) builds and searches through cuVS.
//!
//! * **Build** ([`CagraIndex::build`]): an initial k-NN graph of `intermediate_graph_degree`
//!   (exact by brute force for small sets, NN-descent beyond, both parallel on the rayon
//!   pool), then CAGRA's optimisation down to `graph_degree`: rank-based reordering prunes
//!   detourable edges, reverse edges are added, and every node ends with exactly
//!   `graph_degree` distinct out-links and no self-loop.
//! * **Search** ([`CagraIndex::search_with`], or [`index_core::VectorIndex`]): CAGRA's walk,
//!   an `itopk_size` sorted candidate buffer, `search_width` parents expanded per iteration,
//!   `max_iterations` (0 = automatic), random entry points seeded per query, and a small
//!   visited hash per walk; batches run in parallel over queries.
//! * **Filters**: a predicate or bitset; few passing points are scanned exactly, more are
//!   walked with a buffer widened by the inverse of their share (see [`CagraIndex::plan`]).
//!   Every metric; storage in `f32` or 8-bit codes with rescoring ([`CagraStorage`]).
//! * **No insert.** CAGRA optimises the graph as a whole and has no insert; this index has
//!   none either (it implements [`index_core::VectorIndex`] but not `VectorIndexWrite`).
//!   Deletes are marks: a deleted node stays a waypoint and never comes back as a result.
//! * **Export**: [`CagraIndex::graph`] is the `n · graph_degree` link table that
//!   `index_hnsw::HnswIndex::from_graph` loads as a single-layer graph (as cuVS converts
//!   CAGRA to hnswlib); [`CagraIndex::from_graph`] takes any neighbour lists (HNSW's base
//!   layer) back.
//! * **Persist**: [`CagraIndex::save`] and [`CagraIndex::load`], versioned and checksummed.
//!
//! ```
//! use gpu_cagra::{CagraConfig, CagraIndex};
//! use index_core::{SearchParams, VectorIndex};
//! use quant::Metric;
//!
//! // 500 distinct 4-dimensional vectors (7919 and 2003 are coprime: no value repeats).
//! let data: Vec<f32> = (0..2000).map(|i| ((i * 7919) % 2003) as f32 / 2003.0).collect();
//! let config = CagraConfig { intermediate_graph_degree: 32, graph_degree: 16, ..CagraConfig::default() };
//! let index = CagraIndex::build(4, Metric::Euclidean, config, &data).unwrap();
//! assert!(index.graph().chunks(16).enumerate().all(|(node, links)| !links.contains(&(node as u32))));
//! let hits = index.search(&data[40..44], &SearchParams::top(3), None).unwrap();
//! assert_eq!((hits[0].offset, hits[0].distance), (10, 0.0));
//! ```

// Unsafe code is confined to the FFI of the GPU path.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod index;
mod knn;
mod optimize;
mod persist;
mod visited;

#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
pub mod gpu;

pub use config::{
    BuildAlgo, CagraConfig, CagraSearchParams, CagraStorage, MAX_GRAPH_DEGREE, MAX_ITOPK,
    MAX_SEARCH_WIDTH,
};
pub use index::{CagraIndex, Plan};
pub use persist::{FORMAT_VERSION, MAGIC};
