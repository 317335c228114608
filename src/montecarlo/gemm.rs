//! Matrix products of the Monte Carlo engine, on faer's AVX-512/AVX2 f64 kernels (runtime-detected), except
//! that the Jacobian passes' products below SPLIT_WORK (`mul_into_kernel`) run on the engine's own unpacked
//! kernel (kernel.rs: at 100 x 100 x 100, faer's packing and edge kernels cost a fifth of the product).
//!
//! Why not nalgebra's `*`: it allocates every product, and its `W^T A` goes through dot products at ~5
//! GFLOP/s, which made reverse mode 10x slower than forward mode (measured in `gradscale bench`).
//!
//! Thread-count independence: a large product is cut into column panels whose boundaries depend only on
//! the shape, each panel is one single-threaded faer call, and rayon only decides which thread computes
//! which panel. So the same bits come out on 1 or 64 threads.

use super::kernel;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::DMatrix;
use rayon::prelude::*;
use std::cell::RefCell;

/// Products with fewer multiply-adds than this (6.7e7, ~2 ms at 60 GFLOP/s) run as one call: smaller
/// ones are many per sample and samples already keep the threads busy; splitting them only adds packing
/// and scheduling.
const SPLIT_WORK: usize = 1 << 26;

/// Column panel width of a split product: a multiple of the kernels' register tile, wide enough that each
/// panel re-uses the packed left factor many times.
const PANEL: usize = 128;

fn view(m: &DMatrix<f64>) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(m.as_slice(), m.nrows(), m.ncols())
}

/// dst = op(a) * b with op(a) = a or a^T. `dst` is reshaped (re-using its allocation when it can).
/// On faer throughout: the training engine's per-op gradients (src/train/backward.rs) are pinned bit for
/// bit to its fused step, which calls faer directly.
pub fn mul_into(dst: &mut DMatrix<f64>, a: &DMatrix<f64>, transpose_a: bool, b: &DMatrix<f64>) {
    mul_into_with(dst, a, transpose_a, b, false)
}

/// `mul_into` with products below SPLIT_WORK on the engine's own kernel (kernel.rs): the Jacobian passes'
/// dense products (ops.rs), whose bits nothing outside the Monte Carlo engine compares against.
pub(crate) fn mul_into_kernel(
    dst: &mut DMatrix<f64>,
    a: &DMatrix<f64>,
    transpose_a: bool,
    b: &DMatrix<f64>,
) {
    mul_into_with(dst, a, transpose_a, b, true)
}

fn mul_into_with(
    dst: &mut DMatrix<f64>,
    a: &DMatrix<f64>,
    transpose_a: bool,
    b: &DMatrix<f64>,
    own_kernel: bool,
) {
    let (m, k) = if transpose_a {
        (a.ncols(), a.nrows())
    } else {
        (a.nrows(), a.ncols())
    };
    assert_eq!(k, b.nrows(), "inner dimensions of a product");
    let n = b.ncols();
    if dst.shape() != (m, n) {
        *dst = DMatrix::zeros(m, n);
    }
    let av = if transpose_a {
        view(a).transpose()
    } else {
        view(a)
    };
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst.fill(0.0);
        return;
    }
    let bs = b.as_slice();
    let ds = dst.as_mut_slice();
    if m * n * k < SPLIT_WORK || n <= PANEL {
        if own_kernel {
            small(ds, m, a, transpose_a, b);
        } else {
            let d = MatMut::from_column_major_slice_mut(ds, m, n);
            matmul(d, Accum::Replace, av, view(b), 1.0, Par::Seq);
        }
        return;
    }
    ds.par_chunks_mut(m * PANEL)
        .zip(bs.par_chunks(k * PANEL))
        .for_each(|(dp, bp)| {
            let cols = dp.len() / m;
            let d = MatMut::from_column_major_slice_mut(dp, m, cols);
            let bb = MatRef::from_column_major_slice(bp, k, cols);
            matmul(d, Accum::Replace, av, bb, 1.0, Par::Seq);
        });
}

thread_local! {
    /// a^T of the last transposed small product on this thread (re-used buffer).
    static TRANSPOSED: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// A product below SPLIT_WORK on the engine's kernel (kernel.rs). A transposed left factor is copied
/// out once (O(m k) against the product's O(m n k)), so the kernel always reads columns.
fn small(ds: &mut [f64], m: usize, a: &DMatrix<f64>, transpose_a: bool, b: &DMatrix<f64>) {
    let (k, n) = (b.nrows(), b.ncols());
    if !transpose_a {
        kernel::matmul(m, n, k, a.as_slice(), m, b.as_slice(), k, ds, m);
        return;
    }
    TRANSPOSED.with(|t| {
        let mut t = t.borrow_mut();
        transpose_into(&mut t, a);
        kernel::matmul(m, n, k, &t, m, b.as_slice(), k, ds, m);
    });
}

/// out = a^T (column-major, a.ncols() x a.nrows()), in square tiles so both sides stay in cache.
pub(crate) fn transpose_into(out: &mut Vec<f64>, a: &DMatrix<f64>) {
    const T: usize = 16;
    let (r, c) = (a.nrows(), a.ncols());
    out.clear();
    out.resize(r * c, 0.0);
    let s = a.as_slice();
    for j0 in (0..c).step_by(T) {
        for i0 in (0..r).step_by(T) {
            for j in j0..(j0 + T).min(c) {
                for i in i0..(i0 + T).min(r) {
                    out[i * c + j] = s[j * r + i];
                }
            }
        }
    }
}

/// op(a) * b into a new matrix.
pub fn mul(a: &DMatrix<f64>, transpose_a: bool, b: &DMatrix<f64>) -> DMatrix<f64> {
    let mut out = DMatrix::zeros(0, 0);
    mul_into(&mut out, a, transpose_a, b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(r: usize, c: usize, s: f64) -> DMatrix<f64> {
        DMatrix::from_fn(r, c, |i, j| ((i * 31 + j * 17) % 23) as f64 * s - 1.0)
    }

    #[test]
    fn matches_nalgebra_on_every_path() {
        // Small single call, a split product (m n k above SPLIT_WORK), and degenerate shapes.
        for &(r, k, c) in &[
            (3, 5, 4),
            (100, 100, 100),
            (520, 300, 700),
            (0, 3, 2),
            (2, 0, 3),
        ] {
            let a = m(r, k, 0.1);
            let at = a.transpose();
            let b = m(k, c, 0.07);
            let want = &a * &b;
            for (x, t, own) in [
                (&a, false, false),
                (&at, true, false),
                (&a, false, true),
                (&at, true, true),
            ] {
                let mut got = DMatrix::zeros(0, 0);
                mul_into_with(&mut got, x, t, &b, own);
                assert_eq!(got.shape(), want.shape());
                let err = (&got - &want).abs().max();
                let scale = want.abs().max().max(1.0);
                // Different summation orders: a few ulps per term of a length-k sum.
                assert!(
                    err <= 1e-13 * scale * (k as f64),
                    "{r}x{k}x{c} t={t} own={own}: {err}"
                );
            }
        }
    }

    #[test]
    fn split_products_do_not_depend_on_the_pool() {
        let a = m(520, 300, 0.1);
        let b = m(300, 700, 0.07);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let x = one.install(|| mul(&a, false, &b));
        let y = three.install(|| mul(&a, false, &b));
        assert_eq!(x, y);
    }
}
