//! k-means: finds separated clusters, is deterministic, repairs empty clusters.

use crate::common::clustered;
use quant::kmeans::KMeansInit;
use quant::{KMeans, KMeansConfig};

#[test]
fn recovers_well_separated_clusters() {
    // Eight tight clusters at the corners of a cube.
    let dim = 3;
    let mut data = Vec::new();
    for i in 0..8000 {
        let corner = i % 8;
        for d in 0..dim {
            let base = if corner >> d & 1 == 1 { 10.0 } else { -10.0 };
            data.push(base + ((i * 7 + d * 13) % 17) as f32 / 17.0 - 0.5);
        }
    }
    for init in [KMeansInit::PlusPlus, KMeansInit::Random] {
        let km = KMeans::train(
            &data,
            dim,
            &KMeansConfig {
                init,
                ..KMeansConfig::new(8)
            },
        )
        .unwrap();
        let mut corners: Vec<u32> = (0..8)
            .map(|j| {
                km.centroid(j)
                    .iter()
                    .enumerate()
                    .map(|(d, &x)| ((x > 0.0) as u32) << d)
                    .sum()
            })
            .collect();
        corners.sort_unstable();
        if init == KMeansInit::PlusPlus {
            assert_eq!(
                corners,
                (0..8).collect::<Vec<_>>(),
                "k-means++ must find every corner"
            );
        }
        // Per-point inertia of the right answer is about the within-cluster variance (3 dims).
        assert!(
            km.inertia() / 8000.0 < 0.5 || init == KMeansInit::Random,
            "inertia {}",
            km.inertia()
        );
    }
}

#[test]
fn same_seed_same_centroids() {
    let data = clustered(3000, 16, 20, 0.2, 41);
    let a = KMeans::train(&data, 16, &KMeansConfig::new(20)).unwrap();
    let b = KMeans::train(&data, 16, &KMeansConfig::new(20)).unwrap();
    assert_eq!(a.centroids(), b.centroids());
}

#[test]
fn no_centroid_is_left_empty() {
    // 1,000 copies of 3 points plus 97 distinct ones, 64 centroids: seeding lands several
    // centroids on duplicates, and repair must still spread them over distinct points.
    let mut data = Vec::new();
    for i in 0..1000 {
        data.extend_from_slice(&[(i % 3) as f32, 0.0]);
    }
    for i in 0..97 {
        data.extend_from_slice(&[i as f32 * 0.37 + 5.0, (i * i % 11) as f32]);
    }
    let km = KMeans::train(&data, 2, &KMeansConfig::new(64)).unwrap();
    let assignment = km.assign(&data).unwrap();
    let mut used = [false; 64];
    assignment.iter().for_each(|&a| used[a as usize] = true);
    let used = used.iter().filter(|&&u| u).count();
    assert!(used >= 60, "only {used} of 64 centroids have points");
}

#[test]
fn assignment_is_the_nearest_centroid() {
    let data = clustered(2000, 8, 10, 0.3, 42);
    let km = KMeans::train(&data, 8, &KMeansConfig::new(10)).unwrap();
    let assignment = km.assign(&data).unwrap();
    for (i, v) in data.chunks_exact(8).enumerate() {
        let (best, _) = km.nearest(v).unwrap();
        assert_eq!(assignment[i] as usize, best);
    }
}

#[test]
fn centroid_panels_agree_with_brute_force() {
    use quant::{kernels, CentroidPanels, PanelMeasure};
    let kern = kernels();
    for (dim, k) in [(9usize, 16usize), (50, 100), (33, 1), (128, 47)] {
        let centroids = clustered(k, dim, 7, 0.5, dim as u64);
        let rows = clustered(75, dim, 7, 0.5, 1000 + dim as u64);
        let panels = CentroidPanels::new(&centroids, dim);
        assert_eq!((panels.k(), panels.dim()), (k, dim));
        for chunk in rows.chunks(quant::kmeans::PANEL_ROWS * dim) {
            let n = chunk.len() / dim;
            for measure in [PanelMeasure::SquaredL2, PanelMeasure::NegativeDot] {
                let mut index = vec![0u32; n];
                let mut dist = vec![0f32; n];
                panels.nearest(kern, chunk, measure, &mut index, &mut dist);
                for (i, row) in chunk.chunks_exact(dim).enumerate() {
                    let exact = |c: usize| {
                        let v = &centroids[c * dim..(c + 1) * dim];
                        match measure {
                            PanelMeasure::SquaredL2 => kern.l2sq_f32(row, v),
                            PanelMeasure::NegativeDot => -kern.dot_f32(row, v),
                        }
                    };
                    let best = (0..k).map(exact).fold(f32::INFINITY, f32::min);
                    let tol = 1e-4 * (1.0 + best.abs());
                    assert!(
                        (exact(index[i] as usize) - best).abs() <= tol,
                        "{measure:?} dim {dim} k {k}: picked {} at {}, best {best}",
                        index[i],
                        exact(index[i] as usize)
                    );
                    assert!(
                        (dist[i] - best).abs() <= tol,
                        "{measure:?}: {} vs {best}",
                        dist[i]
                    );
                    let mut all = vec![0f32; k];
                    panels.distances(kern, row, measure, &mut all);
                    for (c, &d) in all.iter().enumerate() {
                        assert!(
                            (d - exact(c)).abs() <= 1e-4 * (1.0 + d.abs()),
                            "{measure:?}"
                        );
                    }
                }
            }
        }
    }
}
