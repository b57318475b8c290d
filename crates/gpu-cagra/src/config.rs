//! Build and search parameters, named as cuVS names them.

use index_core::{IndexError, Result};
use serde::{Deserialize, Serialize};

/// The largest graph degree (either one) a build accepts: cuVS's own upper bound for the
/// intermediate graph, and far past where a degree stops paying.
pub const MAX_GRAPH_DEGREE: usize = 1024;
/// The largest `itopk_size` a search accepts.
pub const MAX_ITOPK: usize = 4096;
/// The largest `search_width` a search accepts.
pub const MAX_SEARCH_WIDTH: usize = 64;

/// How the initial k-NN graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BuildAlgo {
    /// Exact k-NN by brute force up to [`CagraConfig::brute_force_max`] points, NN-descent
    /// beyond.
    #[default]
    Auto,
    /// Exact k-NN by brute force: `n²` distances, for small sets.
    BruteForce,
    /// NN-descent (Dong, Moses and Li, 2011): local joins of neighbours' neighbours.
    NnDescent,
}

/// What the walk measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CagraStorage {
    /// Full-precision vectors.
    #[default]
    F32,
    /// 8-bit scalar codes (`quant`'s), a quarter of the bytes; the best candidates are
    /// measured again with the full vectors kept beside them (rescoring).
    Sq8,
}

/// Parameters of a CAGRA build, and the search defaults an index keeps. Field names are
/// cuVS's (`cagra::index_params`, `cagra::search_params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CagraConfig {
    /// Degree of the initial k-NN graph, pruned down to `graph_degree`. Default 64.
    pub intermediate_graph_degree: usize,
    /// Out-degree of every node of the final graph. Default 32.
    pub graph_degree: usize,
    /// How the initial graph is built. Default [`BuildAlgo::Auto`].
    pub build_algo: BuildAlgo,
    /// [`BuildAlgo::Auto`] builds exactly up to this many points. Default 10,000.
    pub brute_force_max: usize,
    /// NN-descent: iterations at most. Default 20.
    pub nn_descent_niter: usize,
    /// NN-descent: new and old neighbours of a node sampled into one local join (its
    /// reverse neighbours as many again). Default 16: on glove-50 (390,000 points) it
    /// reaches the same search recall as 32 within 0.002, in 12 cheaper iterations instead
    /// of 8, a quarter less build time.
    pub nn_descent_max_candidates: usize,
    /// NN-descent: stop once an iteration improves fewer than this fraction of the graph's
    /// `n · intermediate_graph_degree` entries. Default 0.001.
    pub nn_descent_termination: f32,
    /// What the walk measures. Default [`CagraStorage::F32`].
    pub storage: CagraStorage,
    /// SQ8: the central fraction of values the codes' bounds keep. Default 0.99.
    pub quantile: f32,
    /// SQ8: candidates rescored with full vectors, as a multiple of `limit`. Default 3.
    pub oversampling: f32,
    /// Search default: the candidate buffer, `itopk_size` (a search's `hnsw_ef` overrides
    /// it). Default 64.
    pub itopk_size: usize,
    /// Search default: parents expanded per iteration. Default 1.
    pub search_width: usize,
    /// A filter that lets through at most this many points is answered by an exact scan of
    /// them. Default 1,000 (the walk decides past it; see `CagraIndex::plan`).
    pub full_scan_threshold: usize,
    /// Entry points a search measures first: nodes nearest the centroids of a k-means of
    /// the data, so that a walk starts in the query's region even when the graph's regions
    /// are far apart (clustered data). 0 starts from random nodes only, as cuVS does.
    /// Default 256 (at most a quarter of the points).
    pub entry_points: usize,
    /// Seed of the build's and the walks' random choices.
    pub seed: u64,
}

impl Default for CagraConfig {
    fn default() -> Self {
        CagraConfig {
            intermediate_graph_degree: 64,
            graph_degree: 32,
            build_algo: BuildAlgo::Auto,
            brute_force_max: 10_000,
            nn_descent_niter: 20,
            nn_descent_max_candidates: 16,
            nn_descent_termination: 0.001,
            storage: CagraStorage::F32,
            quantile: 0.99,
            oversampling: 3.0,
            itopk_size: 64,
            search_width: 1,
            full_scan_threshold: 1_000,
            entry_points: 256,
            seed: 0x00C0_FFEE,
        }
    }
}

fn invalid(name: &'static str, reason: String) -> IndexError {
    IndexError::InvalidParameter { name, reason }
}

impl CagraConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_GRAPH_DEGREE).contains(&self.graph_degree) {
            return Err(invalid(
                "graph_degree",
                format!(
                    "{} is not between 1 and {MAX_GRAPH_DEGREE}",
                    self.graph_degree
                ),
            ));
        }
        if self.intermediate_graph_degree < self.graph_degree
            || self.intermediate_graph_degree > MAX_GRAPH_DEGREE
        {
            return Err(invalid(
                "intermediate_graph_degree",
                format!(
                    "{} is not between graph_degree ({}) and {MAX_GRAPH_DEGREE}",
                    self.intermediate_graph_degree, self.graph_degree
                ),
            ));
        }
        if self.nn_descent_niter == 0 || self.nn_descent_niter > 1_000 {
            return Err(invalid(
                "nn_descent_niter",
                format!("{} is not between 1 and 1000", self.nn_descent_niter),
            ));
        }
        if self.nn_descent_max_candidates == 0 || self.nn_descent_max_candidates > MAX_GRAPH_DEGREE
        {
            return Err(invalid(
                "nn_descent_max_candidates",
                format!(
                    "{} is not between 1 and {MAX_GRAPH_DEGREE}",
                    self.nn_descent_max_candidates
                ),
            ));
        }
        if !(self.nn_descent_termination >= 0.0 && self.nn_descent_termination < 1.0) {
            return Err(invalid(
                "nn_descent_termination",
                format!("{} is not in [0, 1)", self.nn_descent_termination),
            ));
        }
        if !(self.quantile > 0.0 && self.quantile <= 1.0) {
            return Err(invalid(
                "quantile",
                format!("{} is not in (0, 1]", self.quantile),
            ));
        }
        if !(self.oversampling.is_finite() && self.oversampling >= 1.0) {
            return Err(invalid(
                "oversampling",
                format!("{} is not a number of at least 1", self.oversampling),
            ));
        }
        if self.entry_points > 65_536 {
            return Err(invalid(
                "entry_points",
                format!("{} is more than 65536", self.entry_points),
            ));
        }
        CagraSearchParams {
            itopk_size: self.itopk_size,
            search_width: self.search_width,
            ..CagraSearchParams::default()
        }
        .validate()
    }
}

/// Parameters of one search (cuVS's `cagra::search_params`, those that apply on a CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CagraSearchParams {
    /// Length of the sorted candidate buffer the walk keeps; results are its best `limit`.
    /// At least `limit` (raised to it). Default 64.
    pub itopk_size: usize,
    /// Parents expanded per iteration. Default 1.
    pub search_width: usize,
    /// Iterations at most; 0 chooses from `itopk_size` and `search_width`.
    pub max_iterations: usize,
    /// Iterations at least, even when every buffered candidate has been expanded.
    pub min_iterations: usize,
    /// Rounds of random entry points: each measures `search_width · graph_degree` random
    /// nodes. Default 1.
    pub num_random_samplings: usize,
    /// Mixed into the random entry points (cuVS's `rand_xor_mask`).
    pub rand_xor_mask: u64,
}

impl Default for CagraSearchParams {
    fn default() -> Self {
        CagraSearchParams {
            itopk_size: 64,
            search_width: 1,
            max_iterations: 0,
            min_iterations: 0,
            num_random_samplings: 1,
            rand_xor_mask: 0x1288_8128_4A00_0C37,
        }
    }
}

impl CagraSearchParams {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_ITOPK).contains(&self.itopk_size) {
            return Err(invalid(
                "itopk_size",
                format!("{} is not between 1 and {MAX_ITOPK}", self.itopk_size),
            ));
        }
        if !(1..=MAX_SEARCH_WIDTH).contains(&self.search_width) {
            return Err(invalid(
                "search_width",
                format!(
                    "{} is not between 1 and {MAX_SEARCH_WIDTH}",
                    self.search_width
                ),
            ));
        }
        if self.max_iterations > 100_000 || self.min_iterations > 100_000 {
            return Err(invalid(
                "max_iterations",
                "iterations are limited to 100000".into(),
            ));
        }
        if self.max_iterations != 0 && self.min_iterations > self.max_iterations {
            return Err(invalid(
                "min_iterations",
                format!(
                    "{} is more than max_iterations ({})",
                    self.min_iterations, self.max_iterations
                ),
            ));
        }
        if !(1..=16).contains(&self.num_random_samplings) {
            return Err(invalid(
                "num_random_samplings",
                format!("{} is not between 1 and 16", self.num_random_samplings),
            ));
        }
        Ok(())
    }

    /// The iteration cap: `max_iterations`, or when 0 enough for every buffered candidate to
    /// be expanded once, and half as many again for the buffer's turnover (cuVS sizes it the
    /// same way: `itopk_size / search_width` plus a margin).
    pub fn iteration_cap(&self) -> usize {
        if self.max_iterations != 0 {
            return self.max_iterations;
        }
        let per_pass = self.itopk_size.div_ceil(self.search_width);
        per_pass
            .saturating_add(per_pass / 2 + 16)
            .max(self.min_iterations)
    }
}
