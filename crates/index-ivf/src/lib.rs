//! Inverted-file (IVF) indexes: the index for collections past what one HNSW graph holds in
//! memory.
//!
//! Vectors are assigned to the nearest of `nlist` centroids (a k-means "coarse quantizer"); a
//! search measures the query against the centroids and scans only the `nprobe` closest lists.
//!
//! * **Training** ([`IvfIndex::train`]): the shared k-means of [`quant`] on at most
//!   `nlist · 256` sampled vectors, parallel over the rayon pool, spherical for inner product
//!   and cosine; `nlist` defaults to `round(4·√n)`. Assignment is blocked (16 centroids a
//!   panel, norms identity), so a thousand lists over a few hundred thousand vectors train in
//!   seconds; the coarse search of a query is the same panel kernel over all centroids.
//! * **List encodings** ([`ListEncoding`]): full `f32` (IVF-Flat); 8-bit scalar codes of the
//!   residual (IVF-SQ8); 8-bit product codes of the residual (IVF-PQ); and 4-bit product codes
//!   in blocks of 32 scanned with in-register table lookups (IVF-PQ fast scan, as FAISS's
//!   `PQ…x4fs`), the fast mode.
//! * **Re-rank** (FAISS's "refine"): lossy encodings keep the full vectors (or leave them in
//!   the memory map of a saved index, [`LoadOptions::vectors_on_disk`]) and re-rank
//!   `limit · oversampling` candidates exactly.
//! * **Writes**: add after training, delete by offset (marked, removed by
//!   [`IvfIndex::compact`]), filtered search by predicate or bitset ([`index_core::PointFilter`]),
//!   every metric.
//! * **Persistence**: [`IvfIndex::save`] and [`IvfIndex::load`], versioned and checksummed;
//!   [`index_core::VectorIndex::memory_usage`] reports bytes per vector.
//!
//! ```
//! use index_ivf::{IvfConfig, IvfIndex, ListEncoding};
//! use index_core::{SearchParams, VectorIndex};
//! use quant::Metric;
//!
//! // 2,000 distinct 8-dimensional vectors.
//! let data: Vec<f32> = (0..16_000).map(|i| ((i * 7919) % 10_007) as f32 / 10_007.0).collect();
//! let config = IvfConfig {
//!     nlist: Some(16),
//!     encoding: ListEncoding::PqFastScan { m: 8 },
//!     ..IvfConfig::default()
//! };
//! let index = IvfIndex::build(8, Metric::Euclidean, config, &data).unwrap();
//! let params = SearchParams { ivf_nprobe: Some(16), ..SearchParams::top(3) };
//! let hits = index.search(&data[80..88], &params, None).unwrap();
//! // Re-ranked with the full vectors: the point itself comes first, at distance 0.
//! assert_eq!((hits[0].offset, hits[0].distance), (10, 0.0));
//! ```

// Unsafe code is confined to the memory map of a loaded index's full vectors.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod coarse;
mod config;
mod fastscan;
mod index;
mod lists;
mod mapped;
mod persist;

pub use config::{IvfConfig, ListEncoding, MAX_NLIST};
pub use index::{IvfIndex, MAX_OFFSET_GAP};
pub use persist::{LoadOptions, FORMAT_VERSION, MAGIC};
