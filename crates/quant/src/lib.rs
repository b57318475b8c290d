//! Distance kernels and vector quantization: the layer every index of vector-router stands on.
//!
//! * [`kernels`]: `f32`, `f16`, 8-bit, bit and lookup-table kernels with one implementation per
//!   instruction set (AVX-512, AVX2, NEON, scalar), chosen once per process.
//! * [`Metric`]: Euclidean, inner product, cosine and Manhattan, with the project's convention
//!   that a smaller distance is closer (see [`metric`]).
//! * [`ScalarQuantizer`]: 8-bit codes with trained bounds, an asymmetric (`f32` query) path and
//!   an integer path (8-bit query, integer dot product, corrected by offsets).
//! * [`ProductQuantizer`]: `M` sub-spaces × 256 centroids, table-driven distance (ADC).
//! * [`BinaryQuantizer`]: one bit per dimension, Hamming distance and an asymmetric estimate.
//! * [`RabitqQuantizer`]: RaBitQ, 1 to 8 bits a dimension after a random rotation, with an
//!   unbiased distance estimate and its error bound ([`rabitq`]).
//! * [`kmeans`]: the one k-means (k-means++ seeding, Lloyd iterations, parallel), reused by IVF.
//! * [`codec`]: the versioned, checksummed binary format every trained model and code array
//!   is saved in.
//!
//! ```
//! use quant::{kernels, Metric, ScalarQuantizer, ScalarQuantizerConfig};
//!
//! let dim = 4;
//! let data: Vec<f32> = (0..400).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
//! let sq = ScalarQuantizer::train(&data, dim, &ScalarQuantizerConfig::default()).unwrap();
//! let codes = sq.encode_all(&data).unwrap();
//!
//! let query = [0.1, 0.5, 0.9, 0.3];
//! let scorer = sq.query(&query, Metric::Euclidean).unwrap();
//! let approx = scorer.distance(codes.code(0), codes.correction(0));
//! let exact = Metric::Euclidean.distance(kernels(), &query, &data[..dim]);
//! assert!((approx - exact).abs() < 0.01);
//! ```

// SIMD intrinsics live in `kernels` only; everything else is safe code.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod binary;
pub mod codec;
mod error;
#[allow(unsafe_code)]
pub mod kernels;
pub mod kmeans;
pub mod metric;
pub mod product;
pub mod rabitq;
pub mod scalar;

pub use binary::{BinaryCodes, BinaryQuantizer, BinaryQuantizerConfig, BinaryQuery};
pub use error::{Error, ErrorKind, Result};
pub use kernels::{kernels, Isa, Kernels, PQ_KSUB};
pub use kmeans::{CentroidPanels, KMeans, KMeansConfig, PanelMeasure};
pub use metric::Metric;
pub use product::{PqCodes, PqTable, ProductQuantizer, ProductQuantizerConfig};
pub use rabitq::{Estimate, RabitqCodes, RabitqConfig, RabitqQuantizer, RabitqQuery};
pub use scalar::{
    Bounds, ScalarCodes, ScalarQuantizer, ScalarQuantizerConfig, ScalarQuery, ScalarQueryInt,
};

/// The largest vector dimension the crate accepts: 65,536, which keeps every integer kernel
/// exact in 32 bits.
pub const MAX_DIMENSION: usize = 65_536;
