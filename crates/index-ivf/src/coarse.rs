//! The coarse quantizer: `nlist` centroids, the assignment of a vector to its list and the
//! choice of the lists a query probes.

use index_core::{ScoredOffset, TopK};
use quant::kmeans::PANEL_ROWS;
use quant::{kernels, CentroidPanels, Kernels, Metric, PanelMeasure};
use rayon::prelude::*;

/// Centroids, laid out for blocked distance computation.
#[derive(Debug, Clone)]
pub(crate) struct Coarse {
    pub(crate) dim: usize,
    pub(crate) centroids: Vec<f32>,
    panels: CentroidPanels,
    measure: PanelMeasure,
}

/// How a metric measures closeness to a centroid.
///
/// Inner product and cosine use the negated inner product (the centroids of spherical
/// k-means are unit vectors, so for cosine this is the L2 order too); Euclidean and
/// Manhattan use squared L2, the distance k-means minimises (a Manhattan-optimal partition
/// would need k-medians).
pub(crate) fn coarse_measure(metric: Metric) -> PanelMeasure {
    match metric {
        Metric::InnerProduct | Metric::Cosine => PanelMeasure::NegativeDot,
        Metric::Euclidean | Metric::Manhattan => PanelMeasure::SquaredL2,
    }
}

impl Coarse {
    pub(crate) fn new(centroids: Vec<f32>, dim: usize, metric: Metric) -> Coarse {
        let panels = CentroidPanels::new(&centroids, dim);
        Coarse {
            dim,
            centroids,
            panels,
            measure: coarse_measure(metric),
        }
    }

    pub(crate) fn nlist(&self) -> usize {
        self.panels.k()
    }

    pub(crate) fn centroid(&self, list: usize) -> &[f32] {
        &self.centroids[list * self.dim..(list + 1) * self.dim]
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.centroids.capacity() * 4 + self.panels.memory_bytes()
    }

    /// The list of every vector of `data` (prepared, flat), in parallel.
    pub(crate) fn assign(&self, data: &[f32]) -> Vec<u32> {
        let kern = kernels();
        let mut out = vec![0u32; data.len() / self.dim];
        out.par_chunks_mut(PANEL_ROWS)
            .zip(data.par_chunks(PANEL_ROWS * self.dim))
            .for_each(|(slots, rows)| {
                let mut dist = [0f32; PANEL_ROWS];
                self.panels
                    .nearest(kern, rows, self.measure, slots, &mut dist);
            });
        out
    }

    /// The `nprobe` lists closest to `query`, closest first, with their coarse distances
    /// (`scratch` holds `nlist` values between calls).
    pub(crate) fn probe(
        &self,
        kern: &Kernels,
        query: &[f32],
        nprobe: usize,
        scratch: &mut Vec<f32>,
        out: &mut Vec<(f32, u32)>,
    ) {
        let nlist = self.nlist();
        scratch.resize(nlist, 0.0);
        self.panels.distances(kern, query, self.measure, scratch);
        // A bounded heap: one comparison per list against the worst kept, cheaper than a
        // selection over all of them when `nprobe` is a small part of `nlist`.
        let mut top = TopK::new(nprobe);
        for (i, &d) in scratch.iter().enumerate() {
            if d <= top.threshold() {
                top.push(ScoredOffset::new(i as u32, d));
            }
        }
        // Closest first: the first lists fill the top-k, so later lists are pruned by a
        // tight threshold.
        out.clear();
        out.extend(
            top.into_sorted_vec()
                .into_iter()
                .map(|s| (s.distance, s.offset)),
        );
    }
}
