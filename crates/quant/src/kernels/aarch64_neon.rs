//! AArch64 Advanced SIMD (NEON) kernels for `f32` vectors.
//!
//! Only the `f32` kernels have NEON bodies so far; the `f16`, 8-bit, bit and table kernels use
//! the scalar reference on AArch64 (see the crate's README for what is measured where).

use super::{check_len, Isa, Kernels};
use std::arch::aarch64::*;

/// The NEON table, falling back to `base` for kernels without a NEON body.
///
/// Only [`Kernels::for_isa`] calls this, after checking that the CPU supports NEON.
pub(super) fn table(base: Kernels) -> Kernels {
    Kernels {
        isa: Isa::Neon,
        dot_f32,
        l2sq_f32,
        l1_f32,
        ..base
    }
}

macro_rules! safe_pair {
    ($name:ident) => {
        fn $name(a: &[f32], b: &[f32]) -> f32 {
            check_len(a.len(), b.len());
            // SAFETY: reachable only through `table`, called after the CPU was checked for
            // NEON; the slices have equal lengths (checked above).
            unsafe { imp::$name(a, b) }
        }
    };
}

safe_pair!(dot_f32);
safe_pair!(l2sq_f32);
safe_pair!(l1_f32);

/// # Safety (every function)
/// The CPU supports NEON and both slices have the same length; full-width loads happen only
/// while `i + 16 <= n` (or `i + 4 <= n`), the tail is scalar.
mod imp {
    use super::*;

    #[derive(Clone, Copy)]
    enum Op {
        Dot,
        L2sq,
        L1,
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn step(op: Op, x: float32x4_t, y: float32x4_t, acc: float32x4_t) -> float32x4_t {
        match op {
            Op::Dot => vfmaq_f32(acc, x, y),
            Op::L2sq => {
                let d = vsubq_f32(x, y);
                vfmaq_f32(acc, d, d)
            }
            Op::L1 => vaddq_f32(acc, vabdq_f32(x, y)),
        }
    }

    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn reduce(op: Op, a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 4 * j;
                *acc = step(op, vld1q_f32(pa.add(o)), vld1q_f32(pb.add(o)), *acc);
            }
            i += 16;
        }
        while i + 4 <= n {
            acc[0] = step(op, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)), acc[0]);
            i += 4;
        }
        let mut sum = vaddvq_f32(vaddq_f32(
            vaddq_f32(acc[0], acc[1]),
            vaddq_f32(acc[2], acc[3]),
        ));
        while i < n {
            let (x, y) = (a[i], b[i]);
            sum += match op {
                Op::Dot => x * y,
                Op::L2sq => (x - y) * (x - y),
                Op::L1 => (x - y).abs(),
            };
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        reduce(Op::Dot, a, b)
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn l2sq_f32(a: &[f32], b: &[f32]) -> f32 {
        reduce(Op::L2sq, a, b)
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn l1_f32(a: &[f32], b: &[f32]) -> f32 {
        reduce(Op::L1, a, b)
    }
}
