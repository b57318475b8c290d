//! AVX-512 kernels (F, BW, VL, DQ, VNNI, VPOPCNTDQ: Ice Lake, Sapphire Rapids, Zen 4 and later).
//!
//! Sixteen float lanes, four accumulators, and masked loads for the tail, so an odd dimension
//! costs one masked iteration rather than a scalar loop. The integer dot product uses VNNI's
//! `vpdpbusd` (unsigned × signed bytes into 32-bit sums, without saturation).

use super::{
    check_bits_len, check_len, check_panel, check_planes, check_pq4, check_table_len, Isa, Kernels,
    PANEL_WIDTH, PQ_KSUB,
};
use half::f16;
use std::arch::x86_64::*;

/// The AVX-512 table.
///
/// Only [`Kernels::for_isa`] calls this, after checking that the CPU supports [`Isa::Avx512`];
/// the safe wrappers below rely on that.
pub(super) fn table() -> Kernels {
    Kernels {
        isa: Isa::Avx512,
        dot_f32,
        l2sq_f32,
        l1_f32,
        dot_f32_f16,
        l2sq_f32_f16,
        l1_f32_f16,
        dot_f16,
        l2sq_f16,
        l1_f16,
        dot_f32_u8,
        l1_f32_u8_affine,
        dot_i8_u8,
        sad_u8,
        hamming,
        masked_sum,
        pq_adc,
        dot_panel16,
        min_panel16,
        pq4_block,
        bitplane_dot,
    }
}

/// Generates a safe wrapper for an `unsafe` AVX-512 kernel that takes two equal-length slices.
macro_rules! safe_pair {
    ($name:ident, $ta:ty, $tb:ty, $out:ty) => {
        fn $name(a: &[$ta], b: &[$tb]) -> $out {
            check_len(a.len(), b.len());
            // SAFETY: reachable only through `table`, which `Kernels::for_isa` calls after
            // checking that the CPU supports every feature of `Isa::Avx512`; the slices have
            // equal lengths (checked above), which is all the kernel needs to stay in bounds.
            unsafe { imp::$name(a, b) }
        }
    };
}

safe_pair!(dot_f32, f32, f32, f32);
safe_pair!(l2sq_f32, f32, f32, f32);
safe_pair!(l1_f32, f32, f32, f32);
safe_pair!(dot_f32_f16, f32, f16, f32);
safe_pair!(l2sq_f32_f16, f32, f16, f32);
safe_pair!(l1_f32_f16, f32, f16, f32);
safe_pair!(dot_f16, f16, f16, f32);
safe_pair!(l2sq_f16, f16, f16, f32);
safe_pair!(l1_f16, f16, f16, f32);
safe_pair!(dot_f32_u8, f32, u8, f32);
safe_pair!(dot_i8_u8, i8, u8, i32);
safe_pair!(sad_u8, u8, u8, u32);
safe_pair!(hamming, u64, u64, u32);

fn l1_f32_u8_affine(a: &[f32], scale: &[f32], codes: &[u8]) -> f32 {
    check_len(a.len(), codes.len());
    check_len(a.len(), scale.len());
    // SAFETY: as in `safe_pair`: the CPU was checked, and the three slices have equal lengths.
    unsafe { imp::l1_f32_u8_affine(a, scale, codes) }
}

fn bitplane_dot(code: &[u8], planes: &[u64]) -> u32 {
    check_planes(code.len(), planes.len());
    // SAFETY: the CPU was checked; `code` is whole words and `planes` whole planes of as many
    // words (checked above), so every (unaligned) load of either stays inside it.
    unsafe { imp::bitplane_dot(code, planes) }
}

fn masked_sum(weights: &[f32], bits: &[u64]) -> f32 {
    check_bits_len(weights.len(), bits.len());
    // SAFETY: the CPU was checked; `bits` has one word per 64 weights (checked above).
    unsafe { imp::masked_sum(weights, bits) }
}

fn pq_adc(table: &[f32], codes: &[u8]) -> f32 {
    check_table_len(table.len(), codes.len());
    // SAFETY: the CPU was checked; `table` has 256 entries per code (checked above), so every
    // gathered index `m·256 + code` is inside it.
    unsafe { imp::pq_adc(table, codes) }
}

fn dot_panel16(rows: &[f32], panel: &[f32], out: &mut [f32]) {
    check_panel(rows.len(), panel.len(), out.len());
    // SAFETY: the CPU was checked; `panel` holds 16 values per dimension, `rows` whole rows
    // of that dimension and `out` 16 values per row (checked above).
    unsafe { imp::dot_panel16(rows, panel, out) }
}

fn min_panel16(
    rows: &[f32],
    panel: &[f32],
    scale: f32,
    bias: &[f32],
    group: u32,
    best: &mut [f32],
    best_group: &mut [u32],
) {
    check_panel(rows.len(), panel.len(), best.len());
    assert!(bias.len() == PANEL_WIDTH && best_group.len() == best.len());
    // SAFETY: the CPU was checked; `panel` holds 16 values per dimension, `rows` whole rows,
    // `bias` 16 values, `best` and `best_group` 16 per row (checked above).
    unsafe { imp::min_panel16(rows, panel, scale, bias, group, best, best_group) }
}

fn pq4_block(lut: &[u8], codes: &[u8], threshold: u16, out: &mut [u16]) -> u32 {
    check_pq4(lut.len(), codes.len(), out.len());
    // SAFETY: the CPU was checked (AVX-512 implies the AVX2 set the finishing step uses);
    // `lut` and `codes` have the same length, a multiple of 32 bytes, and `out` holds 32
    // values (checked above).
    unsafe { imp::pq4_block(lut, codes, threshold, out) }
}

/// The kernels themselves.
///
/// # Safety (every function)
/// The caller guarantees that the CPU supports every feature of [`Isa::Avx512`], and that the
/// slices have the lengths the wrapper checks. Full-width loads happen only while
/// `i + WIDTH <= n`; the tail uses masked loads, which do not touch (or fault on) masked-off
/// elements, with a mask of exactly `n − i` low bits.
mod imp {
    use super::*;

    /// Widens elements of one storage type to 16 `f32` lanes.
    trait Lanes: Copy {
        unsafe fn load16(p: *const Self) -> __m512;
        unsafe fn load16_masked(p: *const Self, mask: __mmask16) -> __m512;
    }

    impl Lanes for f32 {
        #[inline(always)]
        unsafe fn load16(p: *const f32) -> __m512 {
            ld_f32(p)
        }
        #[inline(always)]
        unsafe fn load16_masked(p: *const f32, mask: __mmask16) -> __m512 {
            ld_f32_masked(p, mask)
        }
    }

    impl Lanes for f16 {
        #[inline(always)]
        unsafe fn load16(p: *const f16) -> __m512 {
            ld_f16(p)
        }
        #[inline(always)]
        unsafe fn load16_masked(p: *const f16, mask: __mmask16) -> __m512 {
            ld_f16_masked(p, mask)
        }
    }

    impl Lanes for u8 {
        #[inline(always)]
        unsafe fn load16(p: *const u8) -> __m512 {
            ld_u8(p)
        }
        #[inline(always)]
        unsafe fn load16_masked(p: *const u8, mask: __mmask16) -> __m512 {
            ld_u8_masked(p, mask)
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn ld_f32(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn ld_f32_masked(p: *const f32, mask: __mmask16) -> __m512 {
        _mm512_maskz_loadu_ps(mask, p)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn ld_f16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn ld_f16_masked(p: *const f16, mask: __mmask16) -> __m512 {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p as *const i16))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn ld_u8(p: *const u8) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i)))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn ld_u8_masked(p: *const u8, mask: __mmask16) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(
            mask,
            p as *const i8,
        )))
    }

    /// A mask of the low `count` lanes, `count < 16`.
    #[inline(always)]
    fn tail_mask16(count: usize) -> __mmask16 {
        ((1u32 << count) - 1) as __mmask16
    }

    #[derive(Clone, Copy)]
    enum Op {
        Dot,
        L2sq,
        L1,
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn step(op: Op, x: __m512, y: __m512, acc: __m512) -> __m512 {
        match op {
            Op::Dot => _mm512_fmadd_ps(x, y, acc),
            Op::L2sq => {
                let d = _mm512_sub_ps(x, y);
                _mm512_fmadd_ps(d, d, acc)
            }
            Op::L1 => _mm512_add_ps(acc, _mm512_abs_ps(_mm512_sub_ps(x, y))),
        }
    }

    /// The one body of every float kernel; `op` is a constant at each call site.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn reduce<A: Lanes, B: Lanes>(op: Op, a: &[A], b: &[B]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 16 * j;
                *acc = step(op, A::load16(pa.add(o)), B::load16(pb.add(o)), *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = step(op, A::load16(pa.add(i)), B::load16(pb.add(i)), acc[0]);
            i += 16;
        }
        if i < n {
            let mask = tail_mask16(n - i);
            let x = A::load16_masked(pa.add(i), mask);
            let y = B::load16_masked(pb.add(i), mask);
            acc[1] = step(op, x, y, acc[1]);
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s)
    }

    macro_rules! float_kernel {
        ($name:ident, $op:expr, $ta:ty, $tb:ty) => {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
            pub(super) unsafe fn $name(a: &[$ta], b: &[$tb]) -> f32 {
                reduce($op, a, b)
            }
        };
    }

    float_kernel!(dot_f32, Op::Dot, f32, f32);
    float_kernel!(l2sq_f32, Op::L2sq, f32, f32);
    float_kernel!(l1_f32, Op::L1, f32, f32);
    float_kernel!(dot_f32_f16, Op::Dot, f32, f16);
    float_kernel!(l2sq_f32_f16, Op::L2sq, f32, f16);
    float_kernel!(l1_f32_f16, Op::L1, f32, f16);
    float_kernel!(dot_f16, Op::Dot, f16, f16);
    float_kernel!(l2sq_f16, Op::L2sq, f16, f16);
    float_kernel!(l1_f16, Op::L1, f16, f16);
    float_kernel!(dot_f32_u8, Op::Dot, f32, u8);

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    pub(super) unsafe fn l1_f32_u8_affine(a: &[f32], scale: &[f32], codes: &[u8]) -> f32 {
        let n = a.len();
        let (pa, ps, pc) = (a.as_ptr(), scale.as_ptr(), codes.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 16 * j;
                let d = _mm512_fnmadd_ps(ld_f32(ps.add(o)), ld_u8(pc.add(o)), ld_f32(pa.add(o)));
                *acc = _mm512_add_ps(*acc, _mm512_abs_ps(d));
            }
            i += 32;
        }
        while i < n {
            let mask = if n - i >= 16 {
                0xFFFF
            } else {
                tail_mask16(n - i)
            };
            let d = _mm512_fnmadd_ps(
                ld_f32_masked(ps.add(i), mask),
                ld_u8_masked(pc.add(i), mask),
                ld_f32_masked(pa.add(i), mask),
            );
            acc[0] = _mm512_add_ps(acc[0], _mm512_abs_ps(d));
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }

    /// A mask of the low `count` bytes, `count < 64`.
    #[inline(always)]
    fn tail_mask64(count: usize) -> __mmask64 {
        (1u64 << count) - 1
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
    pub(super) unsafe fn dot_i8_u8(query: &[i8], codes: &[u8]) -> i32 {
        let n = query.len();
        let (pq, pc) = (query.as_ptr(), codes.as_ptr());
        let mut acc = [_mm512_setzero_si512(); 2];
        let mut i = 0;
        while i + 128 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 64 * j;
                let c = _mm512_loadu_epi8(pc.add(o) as *const i8);
                let q = _mm512_loadu_epi8(pq.add(o));
                // Unsigned codes × signed query, four bytes summed into each 32-bit lane.
                *acc = _mm512_dpbusd_epi32(*acc, c, q);
            }
            i += 128;
        }
        while i < n {
            let mask = if n - i >= 64 {
                u64::MAX
            } else {
                tail_mask64(n - i)
            };
            let c = _mm512_maskz_loadu_epi8(mask, pc.add(i) as *const i8);
            let q = _mm512_maskz_loadu_epi8(mask, pq.add(i));
            acc[0] = _mm512_dpbusd_epi32(acc[0], c, q);
            i += 64;
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(acc[0], acc[1]))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    pub(super) unsafe fn sad_u8(a: &[u8], b: &[u8]) -> u32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr() as *const i8, b.as_ptr() as *const i8);
        let mut acc = _mm512_setzero_si512();
        let mut i = 0;
        while i < n {
            let mask = if n - i >= 64 {
                u64::MAX
            } else {
                tail_mask64(n - i)
            };
            let x = _mm512_maskz_loadu_epi8(mask, pa.add(i));
            let y = _mm512_maskz_loadu_epi8(mask, pb.add(i));
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(x, y));
            i += 64;
        }
        _mm512_reduce_add_epi64(acc) as u32
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq")]
    pub(super) unsafe fn hamming(a: &[u64], b: &[u64]) -> u32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr() as *const i64, b.as_ptr() as *const i64);
        let mut acc = _mm512_setzero_si512();
        let mut i = 0;
        while i < n {
            let mask: __mmask8 = if n - i >= 8 {
                0xFF
            } else {
                ((1u32 << (n - i)) - 1) as u8
            };
            let x = _mm512_maskz_loadu_epi64(mask, pa.add(i));
            let y = _mm512_maskz_loadu_epi64(mask, pb.add(i));
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(x, y)));
            i += 8;
        }
        _mm512_reduce_add_epi64(acc) as u32
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq")]
    pub(super) unsafe fn bitplane_dot(code: &[u8], planes: &[u64]) -> u32 {
        // `code` as little-endian words, read unaligned (x86 is little-endian).
        let n = code.len() / 8;
        let k = planes.len() / n;
        let pc = code.as_ptr() as *const i64;
        let mut total = 0u64;
        for j in 0..k {
            let pp = planes.as_ptr().add(j * n) as *const i64;
            let mut acc = _mm512_setzero_si512();
            let mut i = 0;
            while i < n {
                let mask: __mmask8 = if n - i >= 8 {
                    0xFF
                } else {
                    ((1u32 << (n - i)) - 1) as u8
                };
                let x = _mm512_maskz_loadu_epi64(mask, pc.add(i));
                let y = _mm512_maskz_loadu_epi64(mask, pp.add(i));
                acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_and_si512(x, y)));
                i += 8;
            }
            total += (_mm512_reduce_add_epi64(acc) as u64) << j;
        }
        total as u32
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    pub(super) unsafe fn masked_sum(weights: &[f32], bits: &[u64]) -> f32 {
        let n = weights.len();
        let pw = weights.as_ptr();
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 16 * j;
                // The 16 bits of this block are the lane mask itself.
                let mask = (bits[o / 64] >> (o % 64)) as __mmask16;
                *acc = _mm512_mask_add_ps(*acc, mask, *acc, _mm512_loadu_ps(pw.add(o)));
            }
            i += 32;
        }
        while i < n {
            let in_range = if n - i >= 16 {
                0xFFFF
            } else {
                tail_mask16(n - i)
            };
            let mask = (bits[i / 64] >> (i % 64)) as __mmask16 & in_range;
            acc[0] = _mm512_mask_add_ps(
                acc[0],
                mask,
                acc[0],
                _mm512_maskz_loadu_ps(in_range, pw.add(i)),
            );
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    pub(super) unsafe fn pq_adc(table: &[f32], codes: &[u8]) -> f32 {
        let m_total = codes.len();
        let (pt, pc) = (table.as_ptr(), codes.as_ptr());
        let k = PQ_KSUB as i32;
        let row_offsets = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(k),
        );
        let mut acc = _mm512_setzero_ps();
        let mut m = 0;
        while m + 16 <= m_total {
            let c = _mm512_cvtepu8_epi32(_mm_loadu_si128(pc.add(m) as *const __m128i));
            let base = _mm512_set1_epi32((m * PQ_KSUB) as i32);
            let idx = _mm512_add_epi32(c, _mm512_add_epi32(base, row_offsets));
            acc = _mm512_add_ps(acc, _mm512_i32gather_ps::<4>(idx, pt));
            m += 16;
        }
        let mut sum = _mm512_reduce_add_ps(acc);
        while m < m_total {
            sum += table[m * PQ_KSUB + codes[m] as usize];
            m += 1;
        }
        sum
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    pub(super) unsafe fn dot_panel16(rows: &[f32], panel: &[f32], out: &mut [f32]) {
        let dim = panel.len() / PANEL_WIDTH;
        let n = rows.len() / dim;
        let (pr, pp, po) = (rows.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
        let mut r = 0;
        // Eight rows at a time: one panel row is one register, loaded once for eight rows;
        // eight accumulators in flight hide the multiply-add latency.
        while r + 8 <= n {
            let mut acc = [_mm512_setzero_ps(); 8];
            for j in 0..dim {
                let p = _mm512_loadu_ps(pp.add(j * PANEL_WIDTH));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*pr.add((r + i) * dim + j));
                    *acc = _mm512_fmadd_ps(x, p, *acc);
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(po.add((r + i) * PANEL_WIDTH), *acc);
            }
            r += 8;
        }
        while r < n {
            let acc = one_row(pr.add(r * dim), pp, dim);
            _mm512_storeu_ps(po.add(r * PANEL_WIDTH), acc);
            r += 1;
        }
    }

    /// One row against a panel. Four accumulators over alternating dimensions: a single
    /// chain of multiply-adds would wait on each one's latency (a query's coarse search is
    /// exactly this case).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn one_row(row: *const f32, pp: *const f32, dim: usize) -> __m512 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut j = 0;
        while j + 4 <= dim {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*row.add(j + k));
                *acc = _mm512_fmadd_ps(x, _mm512_loadu_ps(pp.add((j + k) * PANEL_WIDTH)), *acc);
            }
            j += 4;
        }
        while j < dim {
            let x = _mm512_set1_ps(*row.add(j));
            acc[0] = _mm512_fmadd_ps(x, _mm512_loadu_ps(pp.add(j * PANEL_WIDTH)), acc[0]);
            j += 1;
        }
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    pub(super) unsafe fn pq4_block(
        lut: &[u8],
        codes: &[u8],
        threshold: u16,
        out: &mut [u16],
    ) -> u32 {
        let (pl, pc) = (lut.as_ptr(), codes.as_ptr());
        let nibble = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_si512(); 4];
        // Four sub-spaces per iteration, one per 128-bit lane (`vpshufb` looks up within lanes).
        let mut i = 0;
        while i + 64 <= lut.len() {
            let table = _mm512_loadu_si512(pl.add(i) as *const __m512i);
            let bytes = _mm512_loadu_si512(pc.add(i) as *const __m512i);
            let lo = _mm512_shuffle_epi8(table, _mm512_and_si512(bytes, nibble));
            let hi = _mm512_shuffle_epi8(
                table,
                _mm512_and_si512(_mm512_srli_epi16::<4>(bytes), nibble),
            );
            // FAISS's trick: add the looked-up bytes as 16-bit lanes whole (`even + 256·odd`)
            // and the odd bytes apart; the even sums are recovered once at the end, which
            // saves a mask per lookup.
            acc[0] = _mm512_add_epi16(acc[0], lo);
            acc[1] = _mm512_add_epi16(acc[1], _mm512_srli_epi16::<8>(lo));
            acc[2] = _mm512_add_epi16(acc[2], hi);
            acc[3] = _mm512_add_epi16(acc[3], _mm512_srli_epi16::<8>(hi));
            i += 64;
        }
        // even = whole − 256·odd, exact in wrapping 16-bit arithmetic.
        acc[0] = _mm512_sub_epi16(acc[0], _mm512_slli_epi16::<8>(acc[1]));
        acc[2] = _mm512_sub_epi16(acc[2], _mm512_slli_epi16::<8>(acc[3]));
        // Fold to 256 bits (sub-space order does not matter to a sum), then finish a last
        // pair of sub-spaces and the block as the AVX2 kernel does.
        let fold = |a: __m512i| {
            _mm256_add_epi16(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64::<1>(a))
        };
        let mut acc = [fold(acc[0]), fold(acc[1]), fold(acc[2]), fold(acc[3])];
        if i < lut.len() {
            let nibble = _mm256_set1_epi8(0x0f);
            let table = _mm256_loadu_si256(pl.add(i) as *const __m256i);
            let bytes = _mm256_loadu_si256(pc.add(i) as *const __m256i);
            let lo = _mm256_shuffle_epi8(table, _mm256_and_si256(bytes, nibble));
            let hi = _mm256_shuffle_epi8(
                table,
                _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), nibble),
            );
            let [a0, a1, a2, a3] = &mut acc;
            super::super::x86_avx2::imp::widen_add(lo, a0, a1);
            super::super::x86_avx2::imp::widen_add(hi, a2, a3);
        }
        super::super::x86_avx2::imp::pq4_finish(acc, threshold, out)
    }

    /// Running minimum of `scale · acc + bias` into row `r` of `best` / `best_group`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    unsafe fn min_store(
        acc: __m512,
        scale: __m512,
        bias: __m512,
        group: __m512i,
        best: *mut f32,
        best_group: *mut u32,
    ) {
        let d = _mm512_fmadd_ps(acc, scale, bias);
        let cur = _mm512_loadu_ps(best);
        let better = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, cur);
        _mm512_storeu_ps(best, _mm512_mask_blend_ps(better, cur, d));
        let g = _mm512_loadu_si512(best_group as *const __m512i);
        _mm512_storeu_si512(
            best_group as *mut __m512i,
            _mm512_mask_blend_epi32(better, g, group),
        );
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,f16c,fma")]
    pub(super) unsafe fn min_panel16(
        rows: &[f32],
        panel: &[f32],
        scale: f32,
        bias: &[f32],
        group: u32,
        best: &mut [f32],
        best_group: &mut [u32],
    ) {
        let dim = panel.len() / PANEL_WIDTH;
        let n = rows.len() / dim;
        let (pr, pp) = (rows.as_ptr(), panel.as_ptr());
        let (pb, pg) = (best.as_mut_ptr(), best_group.as_mut_ptr());
        let (vs, vb, vg) = (
            _mm512_set1_ps(scale),
            _mm512_loadu_ps(bias.as_ptr()),
            _mm512_set1_epi32(group as i32),
        );
        let mut r = 0;
        while r + 8 <= n {
            let mut acc = [_mm512_setzero_ps(); 8];
            for j in 0..dim {
                let p = _mm512_loadu_ps(pp.add(j * PANEL_WIDTH));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*pr.add((r + i) * dim + j));
                    *acc = _mm512_fmadd_ps(x, p, *acc);
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                let o = (r + i) * PANEL_WIDTH;
                min_store(*acc, vs, vb, vg, pb.add(o), pg.add(o));
            }
            r += 8;
        }
        while r < n {
            let acc = one_row(pr.add(r * dim), pp, dim);
            let o = r * PANEL_WIDTH;
            min_store(acc, vs, vb, vg, pb.add(o), pg.add(o));
            r += 1;
        }
    }
}
