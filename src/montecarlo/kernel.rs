//! The engine's own f64 product C = A B (column-major, no packing) for the small products of the Jacobian
//! passes, where a general-purpose GEMM spends a large share of a 100 x 100 x 100 product on packing,
//! dispatch and edge handling (theory/cost.md, "Session 4: small products").
//!
//! Both operands are read where they lie: A's columns (the `MR`-row slice of column p) are the vectors, B's
//! entries are broadcast straight from its columns (contiguous in p). So any column-major A and B work
//! without a copy, which is what lets one stored weight matrix serve the forward product M T and the
//! reverse product S M of the transposed adjoint (sample.rs).
//!
//! Bits: every output entry is one fused multiply-add chain over p = 0, 1, ..., k-1 starting from 0,
//! whatever the vector width or blocking (a k-block continues the chain from the value stored in C, which
//! is exact). So the AVX-512 kernel, the AVX2 build of the portable kernel and the portable kernel give the
//! same bits, and no thread count enters. Only CPUs without FMA (x86-64 before 2013) take faer's product
//! instead, whose bits differ.

use faer::linalg::matmul::matmul as faer_matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// Inner-dimension block: a 24-row slice of A over `KC` columns is 48 KB, about the L1 data cache, and it
/// is re-used for every column block of B.
const KC: usize = 256;

/// Which kernel this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(crate) enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
    /// No hardware FMA: faer's product (different bits, see the module doc).
    NoFma,
}

pub(crate) fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2Fma;
        }
        Isa::NoFma
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Isa::Portable
    }
}

/// A column-major operand: `rows x cols` with column stride `ld` in `data`.
fn check(data: usize, rows: usize, cols: usize, ld: usize, what: &str) {
    assert!(ld >= rows, "{what}: leading dimension below the row count");
    if rows > 0 && cols > 0 {
        assert!(
            (cols - 1) * ld + rows <= data,
            "{what}: slice too short for its shape"
        );
    }
}

/// C (m x n) = A (m x k) B (k x n), all column-major with column strides lda, ldb, ldc.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    lda: usize,
    b: &[f64],
    ldb: usize,
    c: &mut [f64],
    ldc: usize,
) {
    matmul_with(isa(), m, n, k, a, lda, b, ldb, c, ldc, Extra::default())
}

/// What a product may do besides C = A B.
#[derive(Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    /// C = diag(row_scale) A B: each entry's finished chain times row_scale[i] (one rounding more, the
    /// same as scaling afterwards). Used for phi' after a dense map.
    pub row_scale: Option<&'a [f64]>,
    /// Memory to pull into L2 while the product runs (the next layer's weights, which otherwise come from
    /// memory at the start of the next product).
    pub prefetch: &'a [f64],
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_with(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    lda: usize,
    b: &[f64],
    ldb: usize,
    c: &mut [f64],
    ldc: usize,
    extra: Extra,
) {
    check(a.len(), m, k, lda, "A");
    check(b.len(), k, n, ldb, "B");
    check(c.len(), m, n, ldc, "C");
    if let Some(s) = extra.row_scale {
        assert!(s.len() >= m, "row scale shorter than the product's rows");
    }
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for j in 0..n {
            c[j * ldc..j * ldc + m].fill(0.0);
        }
        return;
    }
    let scale = extra.row_scale.map(|s| &s[..m]);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: chosen only when the CPU has AVX-512F and AVX-512VL (`isa`, or a test that checked
        // it); the shapes were checked against the slices above, and the kernel reads and writes only
        // inside them.
        Isa::Avx512 => unsafe {
            avx512::gemm(
                m,
                n,
                k,
                a.as_ptr(),
                lda,
                b,
                ldb,
                c,
                ldc,
                scale,
                extra.prefetch,
            )
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: chosen only when the CPU has AVX2 and FMA.
        Isa::Avx2Fma => unsafe { portable_fma(m, n, k, a, lda, b, ldb, c, ldc, scale) },
        Isa::NoFma => {
            let av =
                MatRef::from_column_major_slice_with_stride(&a[..(k - 1) * lda + m], m, k, lda);
            let bv =
                MatRef::from_column_major_slice_with_stride(&b[..(n - 1) * ldb + k], k, n, ldb);
            let end = (n - 1) * ldc + m;
            let cv = MatMut::from_column_major_slice_with_stride_mut(&mut c[..end], m, n, ldc);
            faer_matmul(cv, Accum::Replace, av, bv, 1.0, Par::Seq);
            if let Some(s) = scale {
                for j in 0..n {
                    for (x, f) in c[j * ldc..j * ldc + m].iter_mut().zip(s) {
                        *x *= f;
                    }
                }
            }
        }
        _ => portable(m, n, k, a, lda, b, ldb, c, ldc, scale),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn portable_fma(
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    lda: usize,
    b: &[f64],
    ldb: usize,
    c: &mut [f64],
    ldc: usize,
    scale: Option<&[f64]>,
) {
    portable(m, n, k, a, lda, b, ldb, c, ldc, scale)
}

/// Register tile of the portable kernel (vectorised by the compiler when built for AVX2).
const PM: usize = 8;
const PN: usize = 4;

/// The portable kernel: the same chains as the vector kernel (one `mul_add` per p, in order, from 0).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn portable(
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    lda: usize,
    b: &[f64],
    ldb: usize,
    c: &mut [f64],
    ldc: usize,
    scale: Option<&[f64]>,
) {
    let mut j0 = 0;
    while j0 < n {
        let nr = PN.min(n - j0);
        let mut i0 = 0;
        while i0 < m {
            let mr = PM.min(m - i0);
            if mr == PM && nr == PN {
                let mut acc = [[0.0f64; PM]; PN];
                for p in 0..k {
                    let ap = &a[p * lda + i0..p * lda + i0 + PM];
                    for (jj, accj) in acc.iter_mut().enumerate() {
                        let bv = b[(j0 + jj) * ldb + p];
                        for (x, av) in accj.iter_mut().zip(ap) {
                            *x = av.mul_add(bv, *x);
                        }
                    }
                }
                for (jj, accj) in acc.iter().enumerate() {
                    let o = (j0 + jj) * ldc + i0;
                    c[o..o + PM].copy_from_slice(accj);
                    if let Some(s) = scale {
                        for (x, f) in c[o..o + PM].iter_mut().zip(&s[i0..i0 + PM]) {
                            *x *= f;
                        }
                    }
                }
            } else {
                for jj in 0..nr {
                    for ii in 0..mr {
                        let mut x = 0.0f64;
                        for p in 0..k {
                            x = a[p * lda + i0 + ii].mul_add(b[(j0 + jj) * ldb + p], x);
                        }
                        c[(j0 + jj) * ldc + i0 + ii] = match scale {
                            Some(s) => x * s[i0 + ii],
                            None => x,
                        };
                    }
                }
            }
            i0 += mr;
        }
        j0 += nr;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::KC;
    use std::arch::x86_64::*;

    /// Rows per register tile: three 8-lane vectors.
    const MR: usize = 24;
    /// Columns per register tile: 3 x 8 = 24 accumulators, 3 A vectors and a broadcast fit the 32
    /// registers; per p, 3 vector loads and 8 broadcasts feed 24 FMAs (12 cycles on two FMA pipes).
    const NR: usize = 8;

    /// One register tile: C[0..mr, 0..NRC] = (first ? 0 : C) + A[0..mr, 0..kc] B[0..kc, 0..NRC], with
    /// MV 8-lane vectors of rows and, if H, a 4-lane tail. Without H the last 8-lane vector is masked by
    /// `mask`; with H the MV vectors are full and the tail is masked by `mask`. A remainder of 1-4 rows
    /// (100 = 4 x 24 + 4) runs on 256-bit FMAs: the same lane-wise fused chains (same bits), but where
    /// 512-bit FMAs issue at half the 256-bit rate (AMD Zen 4) a masked 512-bit vector wastes half its
    /// cycle on the empty lanes.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const MV: usize, const H: bool, const NRC: usize>(
        kc: usize,
        a: *const f64,
        lda: usize,
        b: *const f64,
        ldb: usize,
        c: *mut f64,
        ldc: usize,
        mask: __mmask8,
        first: bool,
        scale: *const f64,
    ) {
        // The mask of 8-lane vector v.
        let zmask = |v: usize| if v + 1 == MV && !H { mask } else { 0xff };
        let mut acc = [[_mm512_setzero_pd(); MV]; NRC];
        let mut acc_t = [_mm256_setzero_pd(); NRC];
        if !first {
            for (j, accj) in acc.iter_mut().enumerate() {
                for (v, x) in accj.iter_mut().enumerate() {
                    *x = _mm512_maskz_loadu_pd(zmask(v), c.add(j * ldc + 8 * v));
                }
            }
            if H {
                for (j, x) in acc_t.iter_mut().enumerate() {
                    *x = _mm256_maskz_loadu_pd(mask, c.add(j * ldc + 8 * MV));
                }
            }
        }
        let mut bp = [b; NRC];
        for (j, x) in bp.iter_mut().enumerate() {
            *x = b.add(j * ldb);
        }
        let mut ap = a;
        for p in 0..kc {
            let mut av = [_mm512_setzero_pd(); MV];
            for (v, x) in av.iter_mut().enumerate() {
                *x = if v + 1 == MV && !H {
                    _mm512_maskz_loadu_pd(mask, ap.add(8 * v))
                } else {
                    _mm512_loadu_pd(ap.add(8 * v))
                };
            }
            let at = if H {
                _mm256_maskz_loadu_pd(mask, ap.add(8 * MV))
            } else {
                _mm256_setzero_pd()
            };
            for j in 0..NRC {
                let bj = _mm512_set1_pd(*bp[j].add(p));
                for v in 0..MV {
                    acc[j][v] = _mm512_fmadd_pd(av[v], bj, acc[j][v]);
                }
                if H {
                    acc_t[j] = _mm256_fmadd_pd(at, _mm512_castpd512_pd256(bj), acc_t[j]);
                }
            }
            ap = ap.add(lda);
        }
        let mut sv = [_mm512_setzero_pd(); MV];
        let mut st = _mm256_setzero_pd();
        if !scale.is_null() {
            for (v, x) in sv.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_pd(zmask(v), scale.add(8 * v));
            }
            if H {
                st = _mm256_maskz_loadu_pd(mask, scale.add(8 * MV));
            }
        }
        for (j, accj) in acc.iter().enumerate() {
            for (v, x) in accj.iter().enumerate() {
                let y = if scale.is_null() {
                    *x
                } else {
                    _mm512_mul_pd(*x, sv[v])
                };
                _mm512_mask_storeu_pd(c.add(j * ldc + 8 * v), zmask(v), y);
            }
            if H {
                let y = if scale.is_null() {
                    acc_t[j]
                } else {
                    _mm256_mul_pd(acc_t[j], st)
                };
                _mm256_mask_storeu_pd(c.add(j * ldc + 8 * MV), mask, y);
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_rows<const MV: usize, const H: bool>(
        nr: usize,
        kc: usize,
        a: *const f64,
        lda: usize,
        b: *const f64,
        ldb: usize,
        c: *mut f64,
        ldc: usize,
        mask: __mmask8,
        first: bool,
        scale: *const f64,
    ) {
        match nr {
            8 => tile::<MV, H, 8>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
            7 => tile::<MV, H, 7>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
            6 => tile::<MV, H, 6>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
            5 => tile::<MV, H, 5>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
            4 => tile::<MV, H, 4>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
            3 => tile::<MV, H, 3>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
            2 => tile::<MV, H, 2>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
            _ => tile::<MV, H, 1>(kc, a, lda, b, ldb, c, ldc, mask, first, scale),
        }
    }

    /// # Safety
    /// The CPU has AVX-512F and AVX-512VL; `a` holds an m x k column-major matrix with stride lda, and
    /// `b`, `c` (checked by the caller) hold k x n and m x n.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: *const f64,
        lda: usize,
        b: &[f64],
        ldb: usize,
        c: &mut [f64],
        ldc: usize,
        scale: Option<&[f64]>,
        prefetch: &[f64],
    ) {
        let (b, c) = (b.as_ptr(), c.as_mut_ptr());
        // The prefetch lines spread evenly over the tiles.
        let tiles = m.div_ceil(MR) * n.div_ceil(NR) * k.div_ceil(KC);
        let lines = prefetch.len().div_ceil(8);
        let per_tile = lines.div_ceil(tiles);
        let mut line = 0;
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            let first = p0 == 0;
            let last = p0 + kc == k;
            let mut i0 = 0;
            while i0 < m {
                let mr = MR.min(m - i0);
                // A remainder of 1-4 rows is a 4-lane tail (H), of 5-7 rows a masked 8-lane vector.
                let rem = mr % 8;
                let half = (1..=4).contains(&rem);
                let mv = if half { mr / 8 } else { mr.div_ceil(8) };
                let mask: __mmask8 = if half {
                    (1u8 << rem) - 1
                } else {
                    (0xffu16 >> (8 * mv - mr)) as u8
                };
                let at = a.add(i0 + p0 * lda);
                let sc = match scale {
                    Some(s) if last => s.as_ptr().add(i0),
                    _ => std::ptr::null(),
                };
                let mut j0 = 0;
                while j0 < n {
                    let nr = NR.min(n - j0);
                    let bt = b.add(p0 + j0 * ldb);
                    let ct = c.add(i0 + j0 * ldc);
                    for _ in 0..per_tile {
                        if line < lines {
                            _mm_prefetch::<_MM_HINT_T1>(
                                prefetch.as_ptr().add(8 * line) as *const i8
                            );
                            line += 1;
                        }
                    }
                    match (mv, half) {
                        (3, _) => tile_rows::<3, false>(
                            nr, kc, at, lda, bt, ldb, ct, ldc, mask, first, sc,
                        ),
                        (2, false) => tile_rows::<2, false>(
                            nr, kc, at, lda, bt, ldb, ct, ldc, mask, first, sc,
                        ),
                        (1, false) => tile_rows::<1, false>(
                            nr, kc, at, lda, bt, ldb, ct, ldc, mask, first, sc,
                        ),
                        (2, true) => {
                            tile_rows::<2, true>(nr, kc, at, lda, bt, ldb, ct, ldc, mask, first, sc)
                        }
                        (1, true) => {
                            tile_rows::<1, true>(nr, kc, at, lda, bt, ldb, ct, ldc, mask, first, sc)
                        }
                        _ => {
                            tile_rows::<0, true>(nr, kc, at, lda, bt, ldb, ct, ldc, mask, first, sc)
                        }
                    }
                    j0 += nr;
                }
                i0 += mr;
            }
            p0 += kc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive triple loop the kernels are pinned to, in the same chain order (so equal up to FMA
    /// rounding: 1e-13 relative).
    fn naive(
        m: usize,
        n: usize,
        k: usize,
        a: &[f64],
        lda: usize,
        b: &[f64],
        ldb: usize,
    ) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for j in 0..n {
            for i in 0..m {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[p * lda + i] * b[j * ldb + p];
                }
                c[j * m + i] = s;
            }
        }
        c
    }

    fn data(len: usize, seed: u64) -> Vec<f64> {
        let mut v = vec![0.0; len];
        super::super::normal::fill_normal(&mut v, seed, 1.0);
        v
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                v.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(Isa::Avx2Fma);
            }
        }
        v
    }

    /// Every shape class (1, 7, 33, 100, 129 in each dimension, k beyond one KC block, padded leading
    /// dimensions) on every kernel this CPU runs: within 1e-13 relative of the naive loop (the sum of
    /// |a||b| bounds the rounding), and bit-identical across kernels. The rows also take 4, 14 and 20,
    /// so that every AVX-512 row tile occurs: a masked 8-lane vector after 0, 1 or 2 full ones (7, 14, 129
    /// = 5 x 24 + 9 is not one: 9 = 8 + 1), and a 4-lane tail after 0, 1 or 2 full ones (1, 4, 100; 33,
    /// 129; 20). The tail's reload of C across KC blocks (k = 300) is what fails if the tail starts every
    /// block from zero (`_mm256_setzero_pd()` for the reload: checked).
    #[test]
    fn kernels_match_the_naive_loop_and_each_other() {
        let sizes = [1, 7, 33, 100, 129];
        let mut seed = 0;
        for &m in sizes.iter().chain(&[4, 14, 20]) {
            for &n in &sizes {
                for &k in sizes.iter().chain([300].iter()) {
                    seed += 1;
                    let (lda, ldb, ldc) = (m + 3, k + 1, m + 2);
                    let a = data(lda * k, seed);
                    let b = data(ldb * n, seed + 1000);
                    // Every other shape with a row scale (phi' fused into the store).
                    let scale = (seed % 2 == 0).then(|| data(m, seed + 2000));
                    let mut want = naive(m, n, k, &a, lda, &b, ldb);
                    let mut abs = naive(
                        m,
                        n,
                        k,
                        &a.iter().map(|x| x.abs()).collect::<Vec<_>>(),
                        lda,
                        &b.iter().map(|x| x.abs()).collect::<Vec<_>>(),
                        ldb,
                    );
                    if let Some(sc) = &scale {
                        for j in 0..n {
                            for i in 0..m {
                                want[j * m + i] *= sc[i];
                                abs[j * m + i] *= sc[i].abs();
                            }
                        }
                    }
                    let extra = Extra {
                        row_scale: scale.as_deref(),
                        prefetch: &b,
                    };
                    let mut first: Option<Vec<f64>> = None;
                    for isa in isas() {
                        // NaN in the padding rows would show if the kernel wrote there.
                        let mut c = vec![f64::NAN; ldc * n];
                        matmul_with(isa, m, n, k, &a, lda, &b, ldb, &mut c, ldc, extra);
                        let mut got = Vec::with_capacity(m * n);
                        for j in 0..n {
                            got.extend_from_slice(&c[j * ldc..j * ldc + m]);
                            assert!(c[j * ldc + m..(j * ldc + ldc).min(c.len())]
                                .iter()
                                .all(|x| x.is_nan()));
                        }
                        for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - w).abs() <= 1e-13 * abs[idx],
                                "{isa:?} {m}x{n}x{k} entry {idx}: {g} vs {w}"
                            );
                        }
                        match &first {
                            None => first = Some(got),
                            Some(f) => assert!(
                                f.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()),
                                "{isa:?} {m}x{n}x{k}: bits differ from the portable kernel"
                            ),
                        }
                    }
                }
            }
        }
    }
}
