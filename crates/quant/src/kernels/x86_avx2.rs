//! AVX2 + FMA + F16C + POPCNT kernels (Haswell, Zen 1 and later).
//!
//! Float kernels keep four 8-lane accumulators (32 values an iteration) to hide the latency of
//! the fused multiply-add, then finish the tail with scalar code. Integer kernels widen to 16
//! bits and use `vpmaddwd`, which cannot saturate, unlike `vpmaddubsw`.

use super::{
    check_bits_len, check_len, check_panel, check_planes, check_pq4, check_table_len, Isa, Kernels,
    PANEL_WIDTH, PQ_KSUB,
};
use half::f16;
use std::arch::x86_64::*;

/// The AVX2 table.
///
/// Only [`Kernels::for_isa`] calls this, after it has checked that the CPU supports
/// [`Isa::Avx2`]; the safe wrappers below rely on that.
pub(super) fn table() -> Kernels {
    Kernels {
        isa: Isa::Avx2,
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

/// Generates a safe wrapper for an `unsafe` AVX2 kernel that takes two equal-length slices.
macro_rules! safe_pair {
    ($name:ident, $ta:ty, $tb:ty, $out:ty) => {
        fn $name(a: &[$ta], b: &[$tb]) -> $out {
            check_len(a.len(), b.len());
            // SAFETY: reachable only through `table`, which `Kernels::for_isa` calls after
            // checking that the CPU supports AVX2, FMA, F16C and POPCNT; the slices have equal
            // lengths (checked above), which is all the kernel needs to stay in bounds.
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
    // SAFETY: the CPU was checked; `lut` and `codes` have the same length, a multiple of 32
    // bytes, and `out` holds 32 values (checked above).
    unsafe { imp::pq4_block(lut, codes, threshold, out) }
}

/// The kernels themselves.
///
/// # Safety (every function)
/// The caller guarantees that the CPU supports AVX2, FMA, F16C and POPCNT, and that the slices
/// passed have the lengths the wrapper checks. Every pointer read is at an index below the
/// length of the slice it came from: full-width loads only while `i + WIDTH <= n`, then scalar
/// code for the tail.
pub(super) mod imp {
    use super::*;

    /// Widens elements of one storage type to `f32`, eight at a time or one at a time.
    trait Lanes: Copy {
        /// Loads 8 elements from `p` as 8 `f32` lanes.
        unsafe fn load8(p: *const Self) -> __m256;
        fn to_f32(self) -> f32;
    }

    impl Lanes for f32 {
        #[inline(always)]
        unsafe fn load8(p: *const f32) -> __m256 {
            load8_f32(p)
        }
        #[inline(always)]
        fn to_f32(self) -> f32 {
            self
        }
    }

    impl Lanes for f16 {
        #[inline(always)]
        unsafe fn load8(p: *const f16) -> __m256 {
            load8_f16(p)
        }
        #[inline(always)]
        fn to_f32(self) -> f32 {
            f16::to_f32(self)
        }
    }

    impl Lanes for u8 {
        #[inline(always)]
        unsafe fn load8(p: *const u8) -> __m256 {
            load8_u8(p)
        }
        #[inline(always)]
        fn to_f32(self) -> f32 {
            self as f32
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8_f32(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8_f16(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8_u8(p: *const u8) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum_ps(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum_epi32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// How one pair of 8-lane vectors adds into an accumulator.
    #[derive(Clone, Copy)]
    enum Op {
        Dot,
        L2sq,
        L1,
    }

    #[inline(always)]
    unsafe fn step(op: Op, x: __m256, y: __m256, acc: __m256) -> __m256 {
        match op {
            Op::Dot => fmadd(x, y, acc),
            Op::L2sq => {
                let d = sub(x, y);
                fmadd(d, d, acc)
            }
            Op::L1 => add(acc, abs(sub(x, y))),
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn fmadd(x: __m256, y: __m256, acc: __m256) -> __m256 {
        _mm256_fmadd_ps(x, y, acc)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sub(x: __m256, y: __m256) -> __m256 {
        _mm256_sub_ps(x, y)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn add(x: __m256, y: __m256) -> __m256 {
        _mm256_add_ps(x, y)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn abs(x: __m256) -> __m256 {
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), x)
    }

    #[inline(always)]
    fn step_scalar(op: Op, x: f32, y: f32) -> f32 {
        match op {
            Op::Dot => x * y,
            Op::L2sq => (x - y) * (x - y),
            Op::L1 => (x - y).abs(),
        }
    }

    /// The one body of every float kernel; `op` is a constant at each call site, so the
    /// `match` inside `step` folds away.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn reduce<A: Lanes, B: Lanes>(op: Op, a: &[A], b: &[B]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 8 * j;
                *acc = step(op, A::load8(pa.add(o)), B::load8(pb.add(o)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = step(op, A::load8(pa.add(i)), B::load8(pb.add(i)), acc[0]);
            i += 8;
        }
        let mut sum = hsum_ps(add(add(acc[0], acc[1]), add(acc[2], acc[3])));
        while i < n {
            sum += step_scalar(op, a[i].to_f32(), b[i].to_f32());
            i += 1;
        }
        sum
    }

    macro_rules! float_kernel {
        ($name:ident, $op:expr, $ta:ty, $tb:ty) => {
            #[target_feature(enable = "avx2,fma,f16c")]
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

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn l1_f32_u8_affine(a: &[f32], scale: &[f32], codes: &[u8]) -> f32 {
        let n = a.len();
        let (pa, ps, pc) = (a.as_ptr(), scale.as_ptr(), codes.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        while i + 16 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 8 * j;
                // a − s·c, then its absolute value.
                let d = _mm256_fnmadd_ps(
                    load8_f32(ps.add(o)),
                    load8_u8(pc.add(o)),
                    load8_f32(pa.add(o)),
                );
                *acc = add(*acc, abs(d));
            }
            i += 16;
        }
        let mut sum = hsum_ps(add(acc[0], acc[1]));
        while i < n {
            sum += (a[i] - scale[i] * codes[i] as f32).abs();
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_i8_u8(query: &[i8], codes: &[u8]) -> i32 {
        let n = query.len();
        let (pq, pc) = (query.as_ptr(), codes.as_ptr());
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 16 * j;
                let q = _mm256_cvtepi8_epi16(_mm_loadu_si128(pq.add(o) as *const __m128i));
                let c = _mm256_cvtepu8_epi16(_mm_loadu_si128(pc.add(o) as *const __m128i));
                // Pairs of 16-bit products summed into 32 bits: |q·c| ≤ 128·255, no saturation.
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(q, c));
            }
            i += 64;
        }
        while i + 16 <= n {
            let q = _mm256_cvtepi8_epi16(_mm_loadu_si128(pq.add(i) as *const __m128i));
            let c = _mm256_cvtepu8_epi16(_mm_loadu_si128(pc.add(i) as *const __m128i));
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(q, c));
            i += 16;
        }
        let sums = _mm256_add_epi32(
            _mm256_add_epi32(acc[0], acc[1]),
            _mm256_add_epi32(acc[2], acc[3]),
        );
        let mut sum = hsum_epi32(sums);
        while i < n {
            sum += query[i] as i32 * codes[i] as i32;
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn sad_u8(a: &[u8], b: &[u8]) -> u32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 32 <= n {
            let x = _mm256_loadu_si256(pa.add(i) as *const __m256i);
            let y = _mm256_loadu_si256(pb.add(i) as *const __m256i);
            acc = _mm256_add_epi64(acc, _mm256_sad_epu8(x, y));
            i += 32;
        }
        let mut lanes = [0u64; 4];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
        let mut sum = lanes.iter().sum::<u64>() as u32;
        while i < n {
            sum += a[i].abs_diff(b[i]) as u32;
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c,popcnt")]
    pub(super) unsafe fn hamming(a: &[u64], b: &[u64]) -> u32 {
        // Four words at a time: a nibble lookup table in registers (`vpshufb`) counts the bits
        // of 32 bytes at once and `vpsadbw` sums the byte counts into 64-bit lanes (Muła,
        // Kurz and Lemire, "Faster population counts using AVX2 instructions").
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let lut = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
        );
        let low = _mm256_set1_epi8(0x0f);
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i + 4 <= n {
            let x = _mm256_xor_si256(
                _mm256_loadu_si256(pa.add(i) as *const __m256i),
                _mm256_loadu_si256(pb.add(i) as *const __m256i),
            );
            let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low));
            let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(x), low));
            acc = _mm256_add_epi64(
                acc,
                _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256()),
            );
            i += 4;
        }
        let mut lanes = [0u64; 4];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
        let mut sum = lanes.iter().sum::<u64>();
        while i < n {
            sum += (a[i] ^ b[i]).count_ones() as u64;
            i += 1;
        }
        sum as u32
    }

    #[target_feature(enable = "avx2,fma,f16c,popcnt")]
    pub(super) unsafe fn bitplane_dot(code: &[u8], planes: &[u64]) -> u32 {
        // Per plane, four words at a time: the nibble-table count of `hamming` on `code & plane`.
        // `code` as little-endian words, read unaligned (x86 is little-endian).
        let n = code.len() / 8;
        let k = planes.len() / n;
        let lut = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
        );
        let low = _mm256_set1_epi8(0x0f);
        let pc = code.as_ptr() as *const u64;
        let mut total = 0u64;
        for j in 0..k {
            let pp = planes.as_ptr().add(j * n);
            let mut acc = _mm256_setzero_si256();
            let mut i = 0;
            while i + 4 <= n {
                let x = _mm256_and_si256(
                    _mm256_loadu_si256(pc.add(i) as *const __m256i),
                    _mm256_loadu_si256(pp.add(i) as *const __m256i),
                );
                let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low));
                let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(x), low));
                acc = _mm256_add_epi64(
                    acc,
                    _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256()),
                );
                i += 4;
            }
            let mut lanes = [0u64; 4];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
            let mut ones = lanes.iter().sum::<u64>();
            while i < n {
                ones += (pc.add(i).read_unaligned() & *pp.add(i)).count_ones() as u64;
                i += 1;
            }
            total += ones << j;
        }
        total as u32
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn masked_sum(weights: &[f32], bits: &[u64]) -> f32 {
        let n = weights.len();
        let pw = weights.as_ptr();
        // Lane j keeps its weight when bit j of the current byte is set.
        let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        while i + 16 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 8 * j;
                let byte = (bits[o / 64] >> (o % 64)) as i32 & 0xFF;
                let sel = _mm256_and_si256(_mm256_set1_epi32(byte), lane_bits);
                let mask = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sel, lane_bits));
                *acc = add(*acc, _mm256_and_ps(load8_f32(pw.add(o)), mask));
            }
            i += 16;
        }
        if i + 8 <= n {
            let byte = (bits[i / 64] >> (i % 64)) as i32 & 0xFF;
            let sel = _mm256_and_si256(_mm256_set1_epi32(byte), lane_bits);
            let mask = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sel, lane_bits));
            acc[0] = add(acc[0], _mm256_and_ps(load8_f32(pw.add(i)), mask));
            i += 8;
        }
        let mut sum = hsum_ps(add(acc[0], acc[1]));
        while i < n {
            if bits[i / 64] >> (i % 64) & 1 == 1 {
                sum += weights[i];
            }
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn pq_adc(table: &[f32], codes: &[u8]) -> f32 {
        let m_total = codes.len();
        let (pt, pc) = (table.as_ptr(), codes.as_ptr());
        let k = PQ_KSUB as i32;
        let row_offsets = _mm256_setr_epi32(0, k, 2 * k, 3 * k, 4 * k, 5 * k, 6 * k, 7 * k);
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut m = 0;
        while m + 16 <= m_total {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = m + 8 * j;
                let c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(pc.add(o) as *const __m128i));
                let base = _mm256_set1_epi32((o * PQ_KSUB) as i32);
                let idx = _mm256_add_epi32(c, _mm256_add_epi32(base, row_offsets));
                *acc = add(*acc, _mm256_i32gather_ps::<4>(pt, idx));
            }
            m += 16;
        }
        let mut sum = hsum_ps(add(acc[0], acc[1]));
        while m < m_total {
            sum += table[m * PQ_KSUB + codes[m] as usize];
            m += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_panel16(rows: &[f32], panel: &[f32], out: &mut [f32]) {
        let dim = panel.len() / PANEL_WIDTH;
        let n = rows.len() / dim;
        let (pr, pp, po) = (rows.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
        let mut r = 0;
        // Four rows at a time: each panel row (two registers) is loaded once for four rows,
        // eight accumulators in flight hide the multiply-add latency.
        while r + 4 <= n {
            let mut acc = [_mm256_setzero_ps(); 8];
            for j in 0..dim {
                let p0 = _mm256_loadu_ps(pp.add(j * PANEL_WIDTH));
                let p1 = _mm256_loadu_ps(pp.add(j * PANEL_WIDTH + 8));
                for i in 0..4 {
                    let x = _mm256_set1_ps(*pr.add((r + i) * dim + j));
                    acc[2 * i] = _mm256_fmadd_ps(x, p0, acc[2 * i]);
                    acc[2 * i + 1] = _mm256_fmadd_ps(x, p1, acc[2 * i + 1]);
                }
            }
            for i in 0..4 {
                _mm256_storeu_ps(po.add((r + i) * PANEL_WIDTH), acc[2 * i]);
                _mm256_storeu_ps(po.add((r + i) * PANEL_WIDTH + 8), acc[2 * i + 1]);
            }
            r += 4;
        }
        while r < n {
            let (a0, a1) = one_row(pr.add(r * dim), pp, dim);
            _mm256_storeu_ps(po.add(r * PANEL_WIDTH), a0);
            _mm256_storeu_ps(po.add(r * PANEL_WIDTH + 8), a1);
            r += 1;
        }
    }

    /// One row against a panel (both halves). Two accumulators a half over alternating
    /// dimensions: a single chain of multiply-adds would wait on each one's latency (a
    /// query's coarse search is exactly this case).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn one_row(row: *const f32, pp: *const f32, dim: usize) -> (__m256, __m256) {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut j = 0;
        while j + 2 <= dim {
            for k in 0..2 {
                let x = _mm256_set1_ps(*row.add(j + k));
                let p = pp.add((j + k) * PANEL_WIDTH);
                acc[2 * k] = _mm256_fmadd_ps(x, _mm256_loadu_ps(p), acc[2 * k]);
                acc[2 * k + 1] = _mm256_fmadd_ps(x, _mm256_loadu_ps(p.add(8)), acc[2 * k + 1]);
            }
            j += 2;
        }
        if j < dim {
            let x = _mm256_set1_ps(*row.add(j));
            let p = pp.add(j * PANEL_WIDTH);
            acc[0] = _mm256_fmadd_ps(x, _mm256_loadu_ps(p), acc[0]);
            acc[1] = _mm256_fmadd_ps(x, _mm256_loadu_ps(p.add(8)), acc[1]);
        }
        (_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]))
    }

    /// Adds the bytes of `lookups` into 16-bit accumulators: even bytes (vectors 0, 2, ...)
    /// into `even`, odd bytes into `odd`. Widening this way costs two instructions and cannot
    /// overflow a byte.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels) unsafe fn widen_add(
        lookups: __m256i,
        even: &mut __m256i,
        odd: &mut __m256i,
    ) {
        *even = _mm256_add_epi16(*even, _mm256_and_si256(lookups, _mm256_set1_epi16(0xff)));
        *odd = _mm256_add_epi16(*odd, _mm256_srli_epi16::<8>(lookups));
    }

    /// Finishes a 4-bit block from its four accumulators (each: the sums of 8 vectors in
    /// each 128-bit half, over different sub-spaces): adds the halves, puts the 32 sums in
    /// vector order into `out`, returns the mask of sums below `threshold`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels) unsafe fn pq4_finish(
        acc: [__m256i; 4],
        threshold: u16,
        out: &mut [u16],
    ) -> u32 {
        let fold =
            |a: __m256i| _mm_add_epi16(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
        let (lo_even, lo_odd, hi_even, hi_odd) =
            (fold(acc[0]), fold(acc[1]), fold(acc[2]), fold(acc[3]));
        let parts = [
            _mm_unpacklo_epi16(lo_even, lo_odd),
            _mm_unpackhi_epi16(lo_even, lo_odd),
            _mm_unpacklo_epi16(hi_even, hi_odd),
            _mm_unpackhi_epi16(hi_even, hi_odd),
        ];
        let po = out.as_mut_ptr() as *mut __m128i;
        for (i, p) in parts.iter().enumerate() {
            _mm_storeu_si128(po.add(i), *p);
        }
        if threshold == 0 {
            return 0;
        }
        // x < t  <=>  min(x, t − 1) == x, in unsigned 16-bit arithmetic.
        let limit = _mm_set1_epi16((threshold - 1) as i16);
        let below = |x: __m128i| _mm_cmpeq_epi16(_mm_min_epu16(x, limit), x);
        let low = _mm_movemask_epi8(_mm_packs_epi16(below(parts[0]), below(parts[1]))) as u32;
        let high = _mm_movemask_epi8(_mm_packs_epi16(below(parts[2]), below(parts[3]))) as u32;
        low | high << 16
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn pq4_block(
        lut: &[u8],
        codes: &[u8],
        threshold: u16,
        out: &mut [u16],
    ) -> u32 {
        let (pl, pc) = (lut.as_ptr(), codes.as_ptr());
        let nibble = _mm256_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_si256(); 4];
        // Two sub-spaces per iteration: their tables fill the two 128-bit halves of one
        // register, their 16 code bytes the halves of another, and `vpshufb` looks up 32
        // entries in registers at once.
        let mut i = 0;
        while i + 32 <= lut.len() {
            let table = _mm256_loadu_si256(pl.add(i) as *const __m256i);
            let bytes = _mm256_loadu_si256(pc.add(i) as *const __m256i);
            let lo = _mm256_shuffle_epi8(table, _mm256_and_si256(bytes, nibble));
            let hi = _mm256_shuffle_epi8(
                table,
                _mm256_and_si256(_mm256_srli_epi16::<4>(bytes), nibble),
            );
            // Bytes added as 16-bit lanes whole (`even + 256·odd`) and odd bytes apart; the
            // even sums are recovered once after the loop (FAISS's trick, one mask fewer
            // per lookup).
            acc[0] = _mm256_add_epi16(acc[0], lo);
            acc[1] = _mm256_add_epi16(acc[1], _mm256_srli_epi16::<8>(lo));
            acc[2] = _mm256_add_epi16(acc[2], hi);
            acc[3] = _mm256_add_epi16(acc[3], _mm256_srli_epi16::<8>(hi));
            i += 32;
        }
        // even = whole − 256·odd, exact in wrapping 16-bit arithmetic.
        acc[0] = _mm256_sub_epi16(acc[0], _mm256_slli_epi16::<8>(acc[1]));
        acc[2] = _mm256_sub_epi16(acc[2], _mm256_slli_epi16::<8>(acc[3]));
        pq4_finish(acc, threshold, out)
    }

    /// Running minimum of `scale · acc + bias` into 8 lanes of `best` / `best_group`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn min_store(
        acc: __m256,
        scale: __m256,
        bias: __m256,
        group: __m256,
        best: *mut f32,
        best_group: *mut u32,
    ) {
        let d = _mm256_fmadd_ps(acc, scale, bias);
        let cur = _mm256_loadu_ps(best);
        let better = _mm256_cmp_ps::<_CMP_LT_OQ>(d, cur);
        _mm256_storeu_ps(best, _mm256_blendv_ps(cur, d, better));
        let g = _mm256_loadu_ps(best_group as *const f32);
        _mm256_storeu_ps(best_group as *mut f32, _mm256_blendv_ps(g, group, better));
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
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
        let vs = _mm256_set1_ps(scale);
        let (b0, b1) = (
            _mm256_loadu_ps(bias.as_ptr()),
            _mm256_loadu_ps(bias.as_ptr().add(8)),
        );
        // The group id travels as the bits of a float lane: blends move bits unchanged.
        let vg = _mm256_castsi256_ps(_mm256_set1_epi32(group as i32));
        let mut r = 0;
        while r + 4 <= n {
            let mut acc = [_mm256_setzero_ps(); 8];
            for j in 0..dim {
                let p0 = _mm256_loadu_ps(pp.add(j * PANEL_WIDTH));
                let p1 = _mm256_loadu_ps(pp.add(j * PANEL_WIDTH + 8));
                for i in 0..4 {
                    let x = _mm256_set1_ps(*pr.add((r + i) * dim + j));
                    acc[2 * i] = _mm256_fmadd_ps(x, p0, acc[2 * i]);
                    acc[2 * i + 1] = _mm256_fmadd_ps(x, p1, acc[2 * i + 1]);
                }
            }
            for i in 0..4 {
                let o = (r + i) * PANEL_WIDTH;
                min_store(acc[2 * i], vs, b0, vg, pb.add(o), pg.add(o));
                min_store(acc[2 * i + 1], vs, b1, vg, pb.add(o + 8), pg.add(o + 8));
            }
            r += 4;
        }
        while r < n {
            let (a0, a1) = one_row(pr.add(r * dim), pp, dim);
            let o = r * PANEL_WIDTH;
            min_store(a0, vs, b0, vg, pb.add(o), pg.add(o));
            min_store(a1, vs, b1, vg, pb.add(o + 8), pg.add(o + 8));
            r += 1;
        }
    }
}
