//! Every SIMD kernel against an `f64` reference, for every dimension from 1 to 2048, on slices
//! at unaligned offsets, on every instruction-set level this CPU runs.

use half::f16;
use quant::kernels::PQ_KSUB;
use quant::{Isa, Kernels};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MAX_DIM: usize = 2048;
/// Relative error allowed against the `f64` reference.
const TOL: f64 = 1e-4;

fn tables() -> Vec<Kernels> {
    let isas = Isa::supported();
    assert!(isas.contains(&Isa::Scalar));
    eprintln!("testing kernel levels: {:?}", isas);
    isas.into_iter()
        .map(|isa| Kernels::for_isa(isa).expect("supported"))
        .collect()
}

/// Checks `got` against `want` within `TOL` of `magnitude` (for sums of non-negative terms
/// the magnitude is the value itself; for dot products the sum of absolute terms, the
/// standard condition-aware bound).
#[track_caller]
fn close(got: f32, want: f64, magnitude: f64, what: &str, isa: Isa, dim: usize, offset: usize) {
    let err = (got as f64 - want).abs();
    assert!(
        err <= TOL * magnitude.max(1e-30),
        "{what} on {isa:?}, dim {dim}, offset {offset}: got {got}, want {want} (error {err:e}, magnitude {magnitude:e})"
    );
}

struct Buffers {
    a: Vec<f32>,
    b: Vec<f32>,
    pos_a: Vec<f32>,
    pos_b: Vec<f32>,
    ha: Vec<f16>,
    hb: Vec<f16>,
    codes: Vec<u8>,
    codes_b: Vec<u8>,
    signed: Vec<i8>,
    scale: Vec<f32>,
}

fn buffers(seed: u64) -> Buffers {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = MAX_DIM + 8;
    let mut f = |lo: f32, hi: f32| {
        (0..len)
            .map(|_| rng.random_range(lo..hi))
            .collect::<Vec<f32>>()
    };
    let a = f(-2.0, 2.0);
    let b = f(-2.0, 2.0);
    let pos_a = f(0.0, 1.0);
    let pos_b = f(0.0, 1.0);
    let scale = f(0.001, 0.1);
    let ha = a.iter().map(|&x| f16::from_f32(x)).collect();
    let hb = b.iter().map(|&x| f16::from_f32(x)).collect();
    let codes = (0..len).map(|_| rng.random::<u8>()).collect();
    let codes_b = (0..len).map(|_| rng.random::<u8>()).collect();
    let signed = (0..len).map(|_| rng.random::<i8>()).collect();
    Buffers {
        a,
        b,
        pos_a,
        pos_b,
        ha,
        hb,
        codes,
        codes_b,
        signed,
        scale,
    }
}

fn dot64(a: impl Iterator<Item = f64>, b: impl Iterator<Item = f64>) -> (f64, f64) {
    a.zip(b)
        .fold((0.0, 0.0), |(s, m), (x, y)| (s + x * y, m + (x * y).abs()))
}

#[test]
fn float_kernels_match_reference() {
    let buf = buffers(11);
    for k in tables() {
        let isa = k.isa();
        for dim in 1..=MAX_DIM {
            // Offsets 0..3 put the slices at every alignment modulo 16 bytes.
            let offset = dim % 4;
            let a = &buf.a[offset..offset + dim];
            let b = &buf.b[3 - offset..3 - offset + dim];
            let (dot, mag) = dot64(a.iter().map(|&x| x as f64), b.iter().map(|&x| x as f64));
            close(k.dot_f32(a, b), dot, mag, "dot_f32", isa, dim, offset);
            let l2: f64 = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
                .sum();
            close(k.l2sq_f32(a, b), l2, l2, "l2sq_f32", isa, dim, offset);
            let l1: f64 = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (x as f64 - y as f64).abs())
                .sum();
            close(k.l1_f32(a, b), l1, l1, "l1_f32", isa, dim, offset);

            // Positive data: the dot product is a sum of positive terms, plain relative error.
            let pa = &buf.pos_a[offset..offset + dim];
            let pb = &buf.pos_b[offset + 1..offset + 1 + dim];
            let (pdot, _) = dot64(pa.iter().map(|&x| x as f64), pb.iter().map(|&x| x as f64));
            close(
                k.dot_f32(pa, pb),
                pdot,
                pdot,
                "dot_f32 (positive)",
                isa,
                dim,
                offset,
            );
        }
    }
}

#[test]
fn f16_kernels_match_reference() {
    let buf = buffers(12);
    for k in tables() {
        let isa = k.isa();
        for dim in 1..=MAX_DIM {
            let offset = dim % 5;
            let a = &buf.a[offset..offset + dim];
            let ha = &buf.ha[offset..offset + dim];
            let hb = &buf.hb[1..1 + dim];
            let a64 = || a.iter().map(|&x| x as f64);
            let ha64 = || ha.iter().map(|x| x.to_f32() as f64);
            let hb64 = || hb.iter().map(|x| x.to_f32() as f64);

            let (dot, mag) = dot64(a64(), hb64());
            close(
                k.dot_f32_f16(a, hb),
                dot,
                mag,
                "dot_f32_f16",
                isa,
                dim,
                offset,
            );
            let l2: f64 = a64().zip(hb64()).map(|(x, y)| (x - y).powi(2)).sum();
            close(
                k.l2sq_f32_f16(a, hb),
                l2,
                l2,
                "l2sq_f32_f16",
                isa,
                dim,
                offset,
            );
            let l1: f64 = a64().zip(hb64()).map(|(x, y)| (x - y).abs()).sum();
            close(k.l1_f32_f16(a, hb), l1, l1, "l1_f32_f16", isa, dim, offset);

            let (dot, mag) = dot64(ha64(), hb64());
            close(k.dot_f16(ha, hb), dot, mag, "dot_f16", isa, dim, offset);
            let l2: f64 = ha64().zip(hb64()).map(|(x, y)| (x - y).powi(2)).sum();
            close(k.l2sq_f16(ha, hb), l2, l2, "l2sq_f16", isa, dim, offset);
            let l1: f64 = ha64().zip(hb64()).map(|(x, y)| (x - y).abs()).sum();
            close(k.l1_f16(ha, hb), l1, l1, "l1_f16", isa, dim, offset);
        }
    }
}

#[test]
fn byte_kernels_match_reference() {
    let buf = buffers(13);
    for k in tables() {
        let isa = k.isa();
        for dim in 1..=MAX_DIM {
            let offset = dim % 7;
            let a = &buf.a[offset..offset + dim];
            let scale = &buf.scale[..dim];
            let codes = &buf.codes[offset + 1..offset + 1 + dim];
            let codes_b = &buf.codes_b[..dim];
            let signed = &buf.signed[offset..offset + dim];

            let (dot, mag) = dot64(a.iter().map(|&x| x as f64), codes.iter().map(|&c| c as f64));
            close(
                k.dot_f32_u8(a, codes),
                dot,
                mag,
                "dot_f32_u8",
                isa,
                dim,
                offset,
            );

            let l1: f64 = a
                .iter()
                .zip(scale)
                .zip(codes)
                .map(|((&x, &s), &c)| (x as f64 - s as f64 * c as f64).abs())
                .sum();
            close(
                k.l1_f32_u8_affine(a, scale, codes),
                l1,
                l1,
                "l1_f32_u8_affine",
                isa,
                dim,
                offset,
            );

            let idot: i64 = signed
                .iter()
                .zip(codes)
                .map(|(&q, &c)| q as i64 * c as i64)
                .sum();
            assert_eq!(
                k.dot_i8_u8(signed, codes) as i64,
                idot,
                "dot_i8_u8 on {isa:?}, dim {dim}"
            );

            let sad: u64 = codes
                .iter()
                .zip(codes_b)
                .map(|(&x, &y)| (x as i64 - y as i64).unsigned_abs())
                .sum();
            assert_eq!(
                k.sad_u8(codes, codes_b) as u64,
                sad,
                "sad_u8 on {isa:?}, dim {dim}"
            );
        }
    }
}

#[test]
fn integer_dot_does_not_overflow_at_the_largest_dimension() {
    let dim = quant::MAX_DIMENSION;
    let codes = vec![255u8; dim];
    for k in tables() {
        let low = vec![-128i8; dim];
        assert_eq!(
            k.dot_i8_u8(&low, &codes) as i64,
            -128 * 255 * dim as i64,
            "{:?}",
            k.isa()
        );
        let high = vec![127i8; dim];
        assert_eq!(
            k.dot_i8_u8(&high, &codes) as i64,
            127 * 255 * dim as i64,
            "{:?}",
            k.isa()
        );
        let zeros = vec![0u8; dim];
        assert_eq!(
            k.sad_u8(&codes, &zeros) as u64,
            255 * dim as u64,
            "{:?}",
            k.isa()
        );
    }
}

/// Hamming distance by testing every bit, one at a time.
fn naive_hamming(a: &[u64], b: &[u64]) -> u32 {
    let mut count = 0;
    for (x, y) in a.iter().zip(b) {
        for bit in 0..64 {
            if (x >> bit) & 1 != (y >> bit) & 1 {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn bit_kernels_match_reference() {
    let mut rng = StdRng::seed_from_u64(14);
    let words_a: Vec<u64> = (0..40).map(|_| rng.random()).collect();
    let words_b: Vec<u64> = (0..40).map(|_| rng.random()).collect();
    let weights: Vec<f32> = (0..MAX_DIM + 3)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let bits: Vec<u64> = (0..MAX_DIM.div_ceil(64) + 1)
        .map(|_| rng.random())
        .collect();
    for k in tables() {
        let isa = k.isa();
        for words in 0..=32 {
            let (a, b) = (&words_a[words % 3..words % 3 + words], &words_b[..words]);
            assert_eq!(
                k.hamming(a, b),
                naive_hamming(a, b),
                "hamming on {isa:?}, {words} words"
            );
        }
        for dim in 1..=MAX_DIM {
            let offset = dim % 3;
            let w = &weights[offset..offset + dim];
            let b = &bits[..dim.div_ceil(64)];
            let want: f64 = (0..dim)
                .filter(|&i| b[i / 64] >> (i % 64) & 1 == 1)
                .map(|i| w[i] as f64)
                .sum();
            close(
                k.masked_sum(w, b),
                want,
                want,
                "masked_sum",
                isa,
                dim,
                offset,
            );
        }
    }
}

/// `Σⱼ 2ʲ · |code ∧ planeⱼ|` by unpacking every value: the integer each dimension's planes
/// spell, times the code's bit there.
fn naive_bitplane_dot(code: &[u8], planes: &[u64]) -> u32 {
    let words = code.len() / 8;
    let k = planes.len() / words;
    let mut sum = 0;
    for d in 0..words * 64 {
        if code[d / 8] >> (d % 8) & 1 == 1 {
            let value: u32 = (0..k)
                .map(|j| ((planes[j * words + d / 64] >> (d % 64) & 1) as u32) << j)
                .sum();
            sum += value;
        }
    }
    sum
}

#[test]
fn bitplane_dot_matches_reference() {
    let mut rng = StdRng::seed_from_u64(15);
    let code: Vec<u8> = (0..40 * 8).map(|_| rng.random()).collect();
    let planes: Vec<u64> = (0..40 * 8).map(|_| rng.random()).collect();
    for k in tables() {
        let isa = k.isa();
        // Word counts across every SIMD width and tail, one to eight planes.
        for words in 1..=19 {
            for p in 1..=8 {
                // Codes start anywhere in a byte array: unaligned by `words % 3` bytes.
                let c = &code[words % 3..words % 3 + 8 * words];
                let pl = &planes[..p * words];
                assert_eq!(
                    k.bitplane_dot(c, pl),
                    naive_bitplane_dot(c, pl),
                    "bitplane_dot on {isa:?}, {words} words, {p} planes"
                );
            }
        }
        // All ones: the largest sum, 255 per dimension.
        let ones = vec![u8::MAX; 16 * 8];
        let all = vec![u64::MAX; 16 * 8];
        assert_eq!(k.bitplane_dot(&ones, &all), 255 * 16 * 64, "{isa:?}");
    }
}

#[test]
#[should_panic(expected = "bit planes of the wrong length")]
fn bitplane_dot_refuses_a_partial_plane() {
    quant::kernels().bitplane_dot(&[1; 16], &[1, 2, 3]);
}

#[test]
fn masked_sum_ignores_bits_past_the_dimension() {
    for k in tables() {
        let w = vec![1.0f32; 70];
        let bits = [u64::MAX, u64::MAX];
        assert_eq!(k.masked_sum(&w, &bits), 70.0, "{:?}", k.isa());
    }
}

#[test]
fn pq_adc_matches_reference() {
    let mut rng = StdRng::seed_from_u64(15);
    let table: Vec<f32> = (0..200 * PQ_KSUB)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let codes: Vec<u8> = (0..200).map(|_| rng.random()).collect();
    for k in tables() {
        for m in 1..=200 {
            let t = &table[..m * PQ_KSUB];
            let c = &codes[200 - m..];
            let want: f64 = c
                .iter()
                .enumerate()
                .map(|(i, &code)| t[i * PQ_KSUB + code as usize] as f64)
                .sum();
            close(k.pq_adc(t, c), want, want, "pq_adc", k.isa(), m, 0);
        }
    }
}

#[test]
#[should_panic(expected = "different lengths")]
fn mismatched_lengths_panic_instead_of_reading_out_of_bounds() {
    let k = quant::kernels();
    k.dot_f32(&[1.0, 2.0, 3.0], &[1.0, 2.0]);
}

#[test]
fn isa_names_round_trip() {
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
    }
    assert_eq!(Isa::from_name("AVX2"), Some(Isa::Avx2));
    assert_eq!(Isa::from_name("sse9"), None);
    // The process-wide table is one of the supported levels.
    assert!(Isa::supported().contains(&quant::kernels().isa()));
}

#[test]
fn dot_panel16_matches_reference() {
    use quant::kernels::PANEL_WIDTH;
    let mut rng = StdRng::seed_from_u64(16);
    for k in tables() {
        for dim in (1..=70).chain([128, 384]) {
            for rows in [1usize, 3, 4, 5, 8, 9, 17] {
                let x: Vec<f32> = (0..rows * dim)
                    .map(|_| rng.random_range(-2.0..2.0))
                    .collect();
                let panel: Vec<f32> = (0..dim * PANEL_WIDTH)
                    .map(|_| rng.random_range(-2.0..2.0))
                    .collect();
                let mut out = vec![f32::NAN; rows * PANEL_WIDTH];
                k.dot_panel16(&x, &panel, &mut out);
                for r in 0..rows {
                    for c in 0..PANEL_WIDTH {
                        let (want, mag) = dot64(
                            (0..dim).map(|j| x[r * dim + j] as f64),
                            (0..dim).map(|j| panel[j * PANEL_WIDTH + c] as f64),
                        );
                        close(
                            out[r * PANEL_WIDTH + c],
                            want,
                            mag,
                            "dot_panel16",
                            k.isa(),
                            dim,
                            r,
                        );
                    }
                }
            }
        }
    }
}

/// The 4-bit lookup read straight from its definition: vector `v`'s code in sub-space `m` is
/// a nibble of byte `v % 16` of that sub-space's 16 bytes.
fn pq4_reference(lut: &[u8], codes: &[u8]) -> Vec<u32> {
    (0..32)
        .map(|v| {
            (0..lut.len() / 16)
                .map(|m| {
                    let byte = codes[m * 16 + v % 16];
                    let code = if v < 16 { byte & 15 } else { byte >> 4 };
                    lut[m * 16 + code as usize] as u32
                })
                .sum()
        })
        .collect()
}

#[test]
fn pq4_block_matches_reference_and_scalar() {
    let mut rng = StdRng::seed_from_u64(17);
    let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
    for k in tables() {
        for m in (2..=130).step_by(2) {
            for trial in 0..4 {
                // Entries small enough that no sum overflows 16 bits, as callers scale them;
                // trial 3 uses the full byte range where it still fits.
                let max = if trial == 3 {
                    (65_535 / m).min(255)
                } else {
                    40
                };
                let lut: Vec<u8> = (0..m * 16)
                    .map(|_| rng.random_range(0..=max) as u8)
                    .collect();
                let codes: Vec<u8> = (0..m * 16).map(|_| rng.random()).collect();
                let want = pq4_reference(&lut, &codes);
                let threshold = match trial {
                    0 => 0,
                    1 => u16::MAX,
                    _ => want[rng.random_range(0..32)] as u16,
                };
                let mut out = [0u16; 32];
                let mask = k.pq4_block(&lut, &codes, threshold, &mut out);
                let mut scalar_out = [0u16; 32];
                let scalar_mask = scalar.pq4_block(&lut, &codes, threshold, &mut scalar_out);
                let want_mask = want
                    .iter()
                    .enumerate()
                    .filter(|(_, &s)| s < threshold as u32)
                    .fold(0u32, |acc, (v, _)| acc | 1 << v);
                let got: Vec<u32> = out.iter().map(|&x| x as u32).collect();
                assert_eq!(got, want, "pq4_block sums on {:?}, m {m}", k.isa());
                assert_eq!(mask, want_mask, "pq4_block mask on {:?}, m {m}", k.isa());
                assert_eq!((scalar_out, scalar_mask), (out, mask), "scalar, m {m}");
            }
        }
    }
}

#[test]
#[should_panic(expected = "4-bit table")]
fn pq4_block_refuses_an_odd_number_of_sub_spaces() {
    let mut out = [0u16; 32];
    quant::kernels().pq4_block(&[0; 16], &[0; 16], 1, &mut out);
}

#[test]
fn min_panel16_keeps_the_running_minimum_like_scalar() {
    use quant::kernels::PANEL_WIDTH;
    let mut rng = StdRng::seed_from_u64(18);
    let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
    for k in tables() {
        for dim in [1usize, 7, 16, 50, 129] {
            for rows in [1usize, 4, 5, 8, 13, 32] {
                let x: Vec<f32> = (0..rows * dim)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let mut best = vec![f32::INFINITY; rows * PANEL_WIDTH];
                let mut group = vec![u32::MAX; rows * PANEL_WIDTH];
                let (mut sbest, mut sgroup) = (best.clone(), group.clone());
                for g in 0..5u32 {
                    let panel: Vec<f32> = (0..dim * PANEL_WIDTH)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect();
                    let mut bias: Vec<f32> = (0..PANEL_WIDTH)
                        .map(|_| rng.random_range(0.0..2.0))
                        .collect();
                    bias[15] = f32::INFINITY;
                    k.min_panel16(&x, &panel, -2.0, &bias, g, &mut best, &mut group);
                    scalar.min_panel16(&x, &panel, -2.0, &bias, g, &mut sbest, &mut sgroup);
                }
                for i in 0..best.len() {
                    let tol = 1e-4 * (1.0 + sbest[i].abs());
                    assert!(
                        (best[i] - sbest[i]).abs() <= tol
                            || (best[i].is_infinite() && sbest[i].is_infinite()),
                        "{:?} dim {dim}: {} vs {}",
                        k.isa(),
                        best[i],
                        sbest[i]
                    );
                    // Groups agree unless two panels' values differ by rounding only.
                    assert!(group[i] == sgroup[i] || (best[i] - sbest[i]).abs() <= tol);
                    if i % PANEL_WIDTH == 15 {
                        assert_eq!(group[i], u32::MAX, "a padding column never wins");
                    }
                }
            }
        }
    }
}
