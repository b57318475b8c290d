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
