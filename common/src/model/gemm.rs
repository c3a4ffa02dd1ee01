//! Matrix products on raw `f32` slices with the `gemm` crate (the GEMM Burn's CPU backend runs),
//! for the CPU kernels that multiply without building tensors: an operand can be the transpose of
//! a stored matrix without moving it.

use gemm::Parallelism;

/// A row-major matrix, or the transpose of one, as a GEMM operand.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    /// Whether `data` holds the `cols × rows` matrix this is the transpose of.
    transposed: bool,
}

impl<'a> Operand<'a> {
    /// `data` as a row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Operand {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    /// The transpose, without moving anything.
    pub fn t(self) -> Self {
        Operand {
            rows: self.cols,
            cols: self.rows,
            transposed: !self.transposed,
            ..self
        }
    }

    /// (row stride, column stride) in floats.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.rows as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`; `dst` is row-major.
pub fn matmul(dst: &mut [f32], accumulate: bool, lhs: Operand, rhs: Operand) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        rhs.rows == k && dst.len() == m * n && lhs.data.len() == m * k && rhs.data.len() == k * n,
        "matmul of {m}×{k} by {}×{n} into {} floats",
        rhs.rows,
        dst.len()
    );
    let ((lhs_rs, lhs_cs), (rhs_rs, rhs_cs)) = (lhs.strides(), rhs.strides());
    // SAFETY: the assertion above makes every element gemm addresses (row i < rows, column
    // j < cols, at i·row stride + j·column stride) lie inside its slice, and `dst` is borrowed
    // mutably, so it overlaps neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.data.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        )
    }
}
