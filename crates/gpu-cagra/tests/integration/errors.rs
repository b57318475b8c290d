//! Bad parameters and bad input give typed errors naming what is wrong.

use crate::common::*;
use gpu_cagra::{BuildAlgo, CagraConfig, CagraIndex, CagraSearchParams};
use index_core::{IndexError, SearchParams, VectorIndex};
use quant::Metric;

fn refused_param<T: std::fmt::Debug>(r: Result<T, IndexError>, name: &str) {
    match r {
        Err(IndexError::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected `{name}` refused, got {other:?}"),
    }
}

#[test]
fn bad_build_parameters_and_data_are_refused() {
    let data = clustered(500, 8, 5, 0.3, 1);
    let build = |c: CagraConfig| CagraIndex::build(8, Metric::Euclidean, c, &data);
    let d = CagraConfig::default();
    refused_param(
        build(CagraConfig {
            graph_degree: 0,
            ..d.clone()
        }),
        "graph_degree",
    );
    refused_param(
        build(CagraConfig {
            graph_degree: 80,
            ..d.clone()
        }),
        "intermediate_graph_degree",
    );
    refused_param(
        build(CagraConfig {
            intermediate_graph_degree: 5000,
            ..d.clone()
        }),
        "intermediate_graph_degree",
    );
    refused_param(
        build(CagraConfig {
            nn_descent_niter: 0,
            ..d.clone()
        }),
        "nn_descent_niter",
    );
    refused_param(
        build(CagraConfig {
            nn_descent_termination: 1.5,
            ..d.clone()
        }),
        "nn_descent_termination",
    );
    refused_param(
        build(CagraConfig {
            quantile: 0.0,
            ..d.clone()
        }),
        "quantile",
    );
    refused_param(
        build(CagraConfig {
            oversampling: 0.5,
            ..d.clone()
        }),
        "oversampling",
    );
    refused_param(
        build(CagraConfig {
            itopk_size: 0,
            ..d.clone()
        }),
        "itopk_size",
    );
    // Too few points for the degree, ragged data, a NaN, a zero dimension.
    refused_param(
        CagraIndex::build(8, Metric::Euclidean, d.clone(), &data[..64 * 8]),
        "data",
    );
    refused_param(
        CagraIndex::build(8, Metric::Euclidean, d.clone(), &data[..data.len() - 1]),
        "data",
    );
    let mut nan = data.clone();
    nan[99] = f32::NAN;
    refused_param(
        CagraIndex::build(8, Metric::Euclidean, d.clone(), &nan),
        "data",
    );
    refused_param(
        CagraIndex::build(0, Metric::Euclidean, d.clone(), &data),
        "dim",
    );
    // from_graph: wrong list count, a link past the points.
    let lists = vec![vec![1u32, 2]; 499];
    refused_param(
        CagraIndex::from_graph(8, Metric::Euclidean, d.clone(), &data, &lists),
        "lists",
    );
    let mut lists = vec![vec![1u32, 2]; 500];
    lists[3] = vec![500];
    refused_param(
        CagraIndex::from_graph(8, Metric::Euclidean, d, &data, &lists),
        "lists",
    );
}

#[test]
fn bad_queries_and_search_parameters_are_refused() {
    let data = clustered(500, 8, 5, 0.3, 1);
    let index = CagraIndex::build(8, Metric::Euclidean, config(BuildAlgo::Auto), &data).unwrap();
    let q = &data[..8];
    let p = CagraSearchParams::default();
    let search = |p: CagraSearchParams| index.search_with(q, 10, &p, None, None, None);
    refused_param(
        search(CagraSearchParams { itopk_size: 0, ..p }),
        "itopk_size",
    );
    refused_param(
        search(CagraSearchParams {
            itopk_size: 100_000,
            ..p
        }),
        "itopk_size",
    );
    refused_param(
        search(CagraSearchParams {
            search_width: 0,
            ..p
        }),
        "search_width",
    );
    refused_param(
        search(CagraSearchParams {
            max_iterations: 2,
            min_iterations: 5,
            ..p
        }),
        "min_iterations",
    );
    refused_param(
        search(CagraSearchParams {
            num_random_samplings: 0,
            ..p
        }),
        "num_random_samplings",
    );
    refused_param(index.search_with(q, 0, &p, None, None, None), "limit");
    assert!(matches!(
        index.search_with(&q[..7], 10, &p, None, None, None),
        Err(IndexError::DimensionMismatch {
            expected: 8,
            found: 7
        })
    ));
    let mut nan = q.to_vec();
    nan[0] = f32::INFINITY;
    assert!(matches!(
        index.search(&nan, &SearchParams::top(3), None),
        Err(IndexError::NonFinite { component: 0 })
    ));
    assert!(matches!(
        index.delete(500),
        Err(IndexError::OffsetOutOfRange {
            offset: 500,
            limit: 500
        })
    ));
}
