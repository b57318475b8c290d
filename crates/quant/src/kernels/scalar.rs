//! Portable kernels: the reference every SIMD path is tested against, and the fallback on CPUs
//! with none of the instruction sets we target.
//!
//! Plain sequential loops on purpose: they are the specification, so they are written to be
//! obviously right, not fast.

use super::{
    check_bits_len, check_len, check_panel, check_pq4, check_table_len, PANEL_WIDTH, PQ4_BLOCK,
    PQ4_KSUB, PQ_KSUB,
};
use half::f16;

/// See [`super::Kernels::dot_f32`].
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// See [`super::Kernels::l2sq_f32`].
pub fn l2sq_f32(a: &[f32], b: &[f32]) -> f32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// See [`super::Kernels::l1_f32`].
pub fn l1_f32(a: &[f32], b: &[f32]) -> f32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

/// See [`super::Kernels::dot_f32_f16`].
pub fn dot_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

/// See [`super::Kernels::l2sq_f32_f16`].
pub fn l2sq_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    check_len(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y.to_f32()) * (x - y.to_f32()))
        .sum()
}

/// See [`super::Kernels::l1_f32_f16`].
pub fn l1_f32_f16(a: &[f32], b: &[f16]) -> f32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y.to_f32()).abs()).sum()
}

/// See [`super::Kernels::dot_f16`].
pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
}

/// See [`super::Kernels::l2sq_f16`].
pub fn l2sq_f16(a: &[f16], b: &[f16]) -> f32 {
    check_len(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x.to_f32() - y.to_f32();
            d * d
        })
        .sum()
}

/// See [`super::Kernels::l1_f16`].
pub fn l1_f16(a: &[f16], b: &[f16]) -> f32 {
    check_len(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.to_f32() - y.to_f32()).abs())
        .sum()
}

/// See [`super::Kernels::dot_f32_u8`].
pub fn dot_f32_u8(a: &[f32], codes: &[u8]) -> f32 {
    check_len(a.len(), codes.len());
    a.iter().zip(codes).map(|(x, &c)| x * c as f32).sum()
}

/// See [`super::Kernels::l1_f32_u8_affine`].
pub fn l1_f32_u8_affine(a: &[f32], scale: &[f32], codes: &[u8]) -> f32 {
    check_len(a.len(), codes.len());
    check_len(a.len(), scale.len());
    a.iter()
        .zip(scale)
        .zip(codes)
        .map(|((x, s), &c)| (x - s * c as f32).abs())
        .sum()
}

/// See [`super::Kernels::dot_i8_u8`].
pub fn dot_i8_u8(query: &[i8], codes: &[u8]) -> i32 {
    check_len(query.len(), codes.len());
    query
        .iter()
        .zip(codes)
        .map(|(&q, &c)| q as i32 * c as i32)
        .sum()
}

/// See [`super::Kernels::sad_u8`].
pub fn sad_u8(a: &[u8], b: &[u8]) -> u32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u32).sum()
}

/// See [`super::Kernels::hamming`].
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    check_len(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// See [`super::Kernels::bitplane_dot`].
pub fn bitplane_dot(code: &[u8], planes: &[u64]) -> u32 {
    let k = super::check_planes(code.len(), planes.len());
    let words = code.len() / 8;
    planes
        .chunks_exact(words)
        .take(k)
        .enumerate()
        .map(|(j, plane)| {
            let ones: u32 = code
                .chunks_exact(8)
                .zip(plane)
                .map(|(a, b)| (u64::from_le_bytes(a.try_into().expect("8 bytes")) & b).count_ones())
                .sum();
            ones << j
        })
        .sum()
}

/// See [`super::Kernels::masked_sum`].
pub fn masked_sum(weights: &[f32], bits: &[u64]) -> f32 {
    check_bits_len(weights.len(), bits.len());
    weights
        .iter()
        .enumerate()
        .filter(|(i, _)| bits[i / 64] >> (i % 64) & 1 == 1)
        .map(|(_, w)| w)
        .sum()
}

/// See [`super::Kernels::pq_adc`].
pub fn pq_adc(table: &[f32], codes: &[u8]) -> f32 {
    check_table_len(table.len(), codes.len());
    codes
        .iter()
        .enumerate()
        .map(|(m, &c)| table[m * PQ_KSUB + c as usize])
        .sum()
}

/// See [`super::Kernels::dot_panel16`].
pub fn dot_panel16(rows: &[f32], panel: &[f32], out: &mut [f32]) {
    check_panel(rows.len(), panel.len(), out.len());
    let dim = panel.len() / PANEL_WIDTH;
    for (row, out) in rows
        .chunks_exact(dim)
        .zip(out.chunks_exact_mut(PANEL_WIDTH))
    {
        for (c, o) in out.iter_mut().enumerate() {
            *o = (0..dim).map(|j| row[j] * panel[j * PANEL_WIDTH + c]).sum();
        }
    }
}

/// See [`super::Kernels::pq4_block`].
pub fn pq4_block(lut: &[u8], codes: &[u8], threshold: u16, out: &mut [u16]) -> u32 {
    check_pq4(lut.len(), codes.len(), out.len());
    const HALF: usize = PQ4_BLOCK / 2;
    out.fill(0);
    for (table, bytes) in lut.chunks_exact(PQ4_KSUB).zip(codes.chunks_exact(HALF)) {
        for (j, &byte) in bytes.iter().enumerate() {
            out[j] = out[j].wrapping_add(table[(byte & 0x0f) as usize] as u16);
            out[j + HALF] = out[j + HALF].wrapping_add(table[(byte >> 4) as usize] as u16);
        }
    }
    out.iter()
        .enumerate()
        .filter(|(_, &s)| s < threshold)
        .fold(0u32, |mask, (v, _)| mask | 1 << v)
}

/// See [`super::Kernels::min_panel16`].
pub fn min_panel16(
    rows: &[f32],
    panel: &[f32],
    scale: f32,
    bias: &[f32],
    group: u32,
    best: &mut [f32],
    best_group: &mut [u32],
) {
    let mut dots = vec![0f32; best.len()];
    dot_panel16(rows, panel, &mut dots);
    for (i, dot) in dots.iter().enumerate() {
        let d = scale * dot + bias[i % PANEL_WIDTH];
        if d < best[i] {
            best[i] = d;
            best_group[i] = group;
        }
    }
}
