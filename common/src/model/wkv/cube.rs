//! The WKV-7 recurrence as CubeCL kernels, for the GPU backends (CUDA and wgpu).
//!
//! One cube per `(batch, head)` pair, one unit per value row `i` of the `N × N` state; the time
//! loop runs inside the kernel, so a layer's recurrence is one launch forward and one backward
//! (the tensor-op form needs a dozen launches per time step). As in the official CUDA kernel,
//! every step's `r, w, k, a, b` go through shared memory so each unit reads all `N` of them.
//!
//! - **Forward**: unit `i` keeps row `i` of the state in registers: `sa = S_i · a`,
//!   `S_ij ← S_ij w_j + sa b_j + v_i k_j`, `y_i = S_i · r`; the state at the start of every chunk
//!   of [`CHUNK`] steps goes to the snapshots, the last one to `state`.
//! - **Backward**: the chunks run last to first. For each, the units recompute the chunk's
//!   states from its snapshot, writing them transposed into a scratch buffer (`[BH, CHUNK + 1,
//!   N, N]`, so unit `i` later reads column `i` of each state contiguously) and each step's
//!   `sa` into shared memory. Then they walk the chunk backwards with the gradient of the state
//!   held twice, row `i` (`G_i·`) and column `i` (`G_·i`), so that every input's gradient is a
//!   sum over one unit's registers: `dv_i, du_i` over the row, `dr_i, dk_i, dw_i, db_i, da_i`
//!   over the column. The recompute is exact (no division by `w`), so the gradients equal the CPU
//!   kernel's up to summation order.

// The kernels take every tensor they touch.
#![allow(clippy::too_many_arguments)]

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime};
use cubecl::prelude::{CubeCount, CubeDim};

use super::{CHUNK, WkvForward, WkvInputs, chunks};
use crate::model::config::HEAD_SIZE as N;
use kernels::{backward_kernel, forward_kernel};

/// The CubeCL backends the model runs on (f32 floats).
type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;

/// The kernels, in CubeCL's dialect of Rust (its `Tensor` is a plain device array; it has no
/// `div_ceil`).
#[allow(clippy::manual_div_ceil)]
mod kernels {
    use cubecl::prelude::*;

    /// Index of `[a, b, c]` in a rank-3 tensor, through its strides.
    #[cube]
    fn at(x: &Tensor<f32>, a: usize, b: usize, c: usize) -> usize {
        a * x.stride(0) + b * x.stride(1) + c * x.stride(2)
    }

    /// One step of row `i` of the state `s`: `sa = S_i · a`, then
    /// `S_ij ← S_ij w_j + sa b_j + v_i k_j`. Returns `sa`.
    #[cube]
    fn step_row(
        s: &mut Array<f32>,
        w: &SharedMemory<f32>,
        k: &SharedMemory<f32>,
        a: &SharedMemory<f32>,
        b: &SharedMemory<f32>,
        v_i: f32,
        #[comptime] n: usize,
    ) -> f32 {
        let mut sa = 0.0f32;
        #[unroll]
        for j in 0..n {
            sa += s[j] * a[j];
        }
        #[unroll]
        for j in 0..n {
            s[j] = s[j] * w[j] + sa * b[j] + v_i * k[j];
        }
        sa
    }

    /// The forward recurrence: `y`, the final state and the chunk snapshots.
    #[cube(launch)]
    pub fn forward_kernel(
        r: &Tensor<f32>,
        w: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        a: &Tensor<f32>,
        b: &Tensor<f32>,
        state_in: &Tensor<f32>,
        y: &mut Tensor<f32>,
        state_out: &mut Tensor<f32>,
        snapshots: &mut Tensor<f32>,
        #[comptime] n: usize,
        #[comptime] chunk: usize,
    ) {
        let bh = CUBE_POS_X as usize;
        let i = UNIT_POS_X as usize;
        let t_len = r.shape(1);
        let mut s = Array::<f32>::new(n);
        #[unroll]
        for j in 0..n {
            s[j] = state_in[at(state_in, bh, i, j)];
        }
        let mut r_shared = SharedMemory::<f32>::new(n);
        let mut w_shared = SharedMemory::<f32>::new(n);
        let mut k_shared = SharedMemory::<f32>::new(n);
        let mut a_shared = SharedMemory::<f32>::new(n);
        let mut b_shared = SharedMemory::<f32>::new(n);
        for t in 0..t_len {
            if t % chunk == 0 {
                let c = t / chunk;
                #[unroll]
                for j in 0..n {
                    snapshots[at(snapshots, bh, c, i * n + j)] = s[j];
                }
            }
            sync_cube();
            r_shared[i] = r[at(r, bh, t, i)];
            w_shared[i] = w[at(w, bh, t, i)];
            k_shared[i] = k[at(k, bh, t, i)];
            a_shared[i] = a[at(a, bh, t, i)];
            b_shared[i] = b[at(b, bh, t, i)];
            let v_i = v[at(v, bh, t, i)];
            sync_cube();
            step_row(&mut s, &w_shared, &k_shared, &a_shared, &b_shared, v_i, n);
            let mut y_i = 0.0f32;
            #[unroll]
            for j in 0..n {
                y_i += s[j] * r_shared[j];
            }
            y[at(y, bh, t, i)] = y_i;
        }
        #[unroll]
        for j in 0..n {
            state_out[at(state_out, bh, i, j)] = s[j];
        }
    }

    /// The backward recurrence: the six inputs' gradients given `dy`, recomputing each chunk's
    /// states from its snapshot into `scratch` (`[BH, chunk + 1, N·N]`).
    #[cube(launch)]
    pub fn backward_kernel(
        r: &Tensor<f32>,
        w: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        a: &Tensor<f32>,
        b: &Tensor<f32>,
        snapshots: &Tensor<f32>,
        dy: &Tensor<f32>,
        scratch: &mut Tensor<f32>,
        dr: &mut Tensor<f32>,
        dw: &mut Tensor<f32>,
        dk: &mut Tensor<f32>,
        dv: &mut Tensor<f32>,
        da: &mut Tensor<f32>,
        db: &mut Tensor<f32>,
        #[comptime] n: usize,
        #[comptime] chunk: usize,
    ) {
        let bh = CUBE_POS_X as usize;
        let i = UNIT_POS_X as usize;
        let t_len = r.shape(1);
        let chunk_count = (t_len + chunk - 1) / chunk;
        // G_ij over j (row i) and G_ji over j (column i) of the state's gradient.
        let mut g_row = Array::<f32>::new(n);
        let mut g_col = Array::<f32>::new(n);
        // Row i of the state while recomputing; column i of S_{t-1} while going back.
        let mut s = Array::<f32>::new(n);
        #[unroll]
        for j in 0..n {
            g_row[j] = 0.0f32;
            g_col[j] = 0.0f32;
        }
        let mut r_shared = SharedMemory::<f32>::new(n);
        let mut w_shared = SharedMemory::<f32>::new(n);
        let mut k_shared = SharedMemory::<f32>::new(n);
        let mut v_shared = SharedMemory::<f32>::new(n);
        let mut a_shared = SharedMemory::<f32>::new(n);
        let mut b_shared = SharedMemory::<f32>::new(n);
        let mut dy_shared = SharedMemory::<f32>::new(n);
        let mut du_shared = SharedMemory::<f32>::new(n);
        let mut sa_shared = SharedMemory::<f32>::new(chunk * n);
        for c_back in 0..chunk_count {
            let c = chunk_count - 1 - c_back;
            let t0 = c * chunk;
            let mut len = t_len - t0;
            if len > chunk {
                len = chunk;
            }
            // Recompute S_{t0-1} … S_{t0+len-1}: slot 0 is the snapshot, slot tt + 1 the state
            // after step t0 + tt; stored as scratch[slot][j][i] = S_ij.
            #[unroll]
            for j in 0..n {
                s[j] = snapshots[at(snapshots, bh, c, i * n + j)];
                scratch[at(scratch, bh, 0, j * n + i)] = s[j];
            }
            for tt in 0..len {
                let t = t0 + tt;
                sync_cube();
                w_shared[i] = w[at(w, bh, t, i)];
                k_shared[i] = k[at(k, bh, t, i)];
                a_shared[i] = a[at(a, bh, t, i)];
                b_shared[i] = b[at(b, bh, t, i)];
                let v_i = v[at(v, bh, t, i)];
                sync_cube();
                let sa = step_row(&mut s, &w_shared, &k_shared, &a_shared, &b_shared, v_i, n);
                sa_shared[tt * n + i] = sa;
                #[unroll]
                for j in 0..n {
                    scratch[at(scratch, bh, tt + 1, j * n + i)] = s[j];
                }
            }
            sync_storage();
            sync_cube();
            for tt_back in 0..len {
                let tt = len - 1 - tt_back;
                let t = t0 + tt;
                sync_cube();
                r_shared[i] = r[at(r, bh, t, i)];
                w_shared[i] = w[at(w, bh, t, i)];
                k_shared[i] = k[at(k, bh, t, i)];
                v_shared[i] = v[at(v, bh, t, i)];
                a_shared[i] = a[at(a, bh, t, i)];
                b_shared[i] = b[at(b, bh, t, i)];
                dy_shared[i] = dy[at(dy, bh, t, i)];
                sync_cube();
                let r_i = r_shared[i];
                let w_i = w_shared[i];
                let a_i = a_shared[i];
                let dy_i = dy_shared[i];
                // dr_i = Σ_row S_t[row, i] dy_row, with column i of S_t from the scratch.
                let mut dr_i = 0.0f32;
                #[unroll]
                for j in 0..n {
                    dr_i += scratch[at(scratch, bh, tt + 1, i * n + j)] * dy_shared[j];
                }
                // G += dy rᵀ, then the sums over row i and column i.
                let mut dv_i = 0.0f32;
                let mut du_i = 0.0f32;
                let mut dk_i = 0.0f32;
                let mut db_i = 0.0f32;
                let mut dw_i = 0.0f32;
                #[unroll]
                for j in 0..n {
                    g_row[j] += dy_i * r_shared[j];
                    g_col[j] += dy_shared[j] * r_i;
                    s[j] = scratch[at(scratch, bh, tt, i * n + j)];
                    dv_i += g_row[j] * k_shared[j];
                    du_i += g_row[j] * b_shared[j];
                    dk_i += g_col[j] * v_shared[j];
                    db_i += g_col[j] * sa_shared[tt * n + j];
                    dw_i += g_col[j] * s[j];
                }
                du_shared[i] = du_i;
                sync_cube();
                let mut da_i = 0.0f32;
                #[unroll]
                for j in 0..n {
                    da_i += s[j] * du_shared[j];
                    g_row[j] = g_row[j] * w_shared[j] + du_i * a_shared[j];
                    g_col[j] = g_col[j] * w_i + du_shared[j] * a_i;
                }
                dr[at(dr, bh, t, i)] = dr_i;
                dw[at(dw, bh, t, i)] = dw_i;
                dk[at(dk, bh, t, i)] = dk_i;
                dv[at(dv, bh, t, i)] = dv_i;
                da[at(da, bh, t, i)] = da_i;
                db[at(db, bh, t, i)] = db_i;
            }
            // Every unit is done reading this chunk's scratch before the next chunk overwrites it.
            sync_storage();
            sync_cube();
        }
    }
}

/// A tensor's primitive, laid out contiguously.
fn primitive<R: CubeRuntime, BT: BoolElement>(x: &Tensor<Cube<R, BT>, 3>) -> CubeTensor<R> {
    into_contiguous(x.clone().into_primitive().tensor())
}

/// A new uninitialized contiguous tensor on `like`'s device.
fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: [usize; 3]) -> CubeTensor<R> {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        like.dtype,
    )
}

/// A primitive as a tensor.
fn tensor<R: CubeRuntime, BT: BoolElement>(x: CubeTensor<R>) -> Tensor<Cube<R, BT>, 3> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

/// One cube of `N` units per `(batch, head)` row.
fn grid(bh: usize) -> (CubeCount, CubeDim) {
    (
        CubeCount::Static(bh as u32, 1, 1),
        CubeDim::new_1d(N as u32),
    )
}

/// The forward on a CubeCL backend (see the module docs).
pub fn forward<R: CubeRuntime, BT: BoolElement>(
    x: &WkvInputs<Cube<R, BT>>,
    state: Tensor<Cube<R, BT>, 3>,
) -> WkvForward<Cube<R, BT>> {
    let [bh, t_len, _] = x.r.dims();
    let [r, w, k, v, a, b] = [&x.r, &x.w, &x.k, &x.v, &x.a, &x.b].map(primitive);
    let state_in = primitive(&state);
    let y = empty(&r, [bh, t_len, N]);
    let state_out = empty(&r, [bh, N, N]);
    let snapshots = empty(&r, [bh, chunks(t_len), N * N]);
    let client = r.client.clone();
    let (count, dim) = grid(bh);
    forward_kernel::launch::<R>(
        &client,
        count,
        dim,
        r.into_tensor_arg(),
        w.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        a.into_tensor_arg(),
        b.into_tensor_arg(),
        state_in.into_tensor_arg(),
        y.clone().into_tensor_arg(),
        state_out.clone().into_tensor_arg(),
        snapshots.clone().into_tensor_arg(),
        N,
        CHUNK,
    );
    WkvForward {
        y: tensor(y),
        state: tensor(state_out),
        snapshots: tensor(snapshots),
    }
}

/// The backward on a CubeCL backend (see the module docs).
pub fn backward<R: CubeRuntime, BT: BoolElement>(
    x: &WkvInputs<Cube<R, BT>>,
    snapshots: Tensor<Cube<R, BT>, 3>,
    dy: Tensor<Cube<R, BT>, 3>,
) -> WkvInputs<Cube<R, BT>> {
    let [bh, t_len, _] = x.r.dims();
    let [r, w, k, v, a, b] = [&x.r, &x.w, &x.k, &x.v, &x.a, &x.b].map(primitive);
    let (snapshots, dy) = (primitive(&snapshots), primitive(&dy));
    let scratch = empty(&r, [bh, CHUNK + 1, N * N]);
    let grads = [(); 6].map(|()| empty(&r, [bh, t_len, N]));
    let client = r.client.clone();
    let (count, dim) = grid(bh);
    let [dr, dw, dk, dv, da, db] = grads.clone().map(|g| g.into_tensor_arg());
    backward_kernel::launch::<R>(
        &client,
        count,
        dim,
        r.into_tensor_arg(),
        w.into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        a.into_tensor_arg(),
        b.into_tensor_arg(),
        snapshots.into_tensor_arg(),
        dy.into_tensor_arg(),
        scratch.into_tensor_arg(),
        dr,
        dw,
        dk,
        dv,
        da,
        db,
        N,
        CHUNK,
    );
    let [r, w, k, v, a, b] = grads.map(tensor);
    WkvInputs { r, w, k, v, a, b }
}
