//! The CPU kernel against the tensor-op form, and both backwards against autodiff through the
//! tensor-op forward.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::*;
use crate::model::config::HEAD_SIZE as N;

type A = Autodiff<Flex>;

/// Seeded inputs in the ranges the model produces and a random starting state.
fn inputs<B: Backend>(bh: usize, t: usize, seed: u64) -> (WkvInputs<B>, Tensor<B, 3>) {
    let device = Default::default();
    B::seed(&device, seed);
    let inputs = WkvInputs::random(bh, t, &device);
    let state = Tensor::random([bh, N, N], Distribution::Uniform(-0.5, 0.5), &device);
    (inputs, state)
}

impl<B: Backend> WkvInputs<B> {
    /// The six tensors by name (r, w, k, v, a, b).
    fn named(self) -> [(&'static str, Tensor<B, 3>); 6] {
        let WkvInputs { r, w, k, v, a, b } = self;
        [("r", r), ("w", w), ("k", k), ("v", v), ("a", a), ("b", b)]
    }

    /// Each tensor through `f`.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    fn map<C: Backend>(&self, f: impl Fn(&Tensor<B, 3>) -> Tensor<C, 3>) -> WkvInputs<C> {
        WkvInputs {
            r: f(&self.r),
            w: f(&self.w),
            k: f(&self.k),
            v: f(&self.v),
            a: f(&self.a),
            b: f(&self.b),
        }
    }
}

fn max_rel_diff<B: Backend, const D: usize>(x: Tensor<B, D>, reference: Tensor<B, D>) -> f32 {
    let scale = reference
        .clone()
        .abs()
        .max()
        .into_scalar()
        .elem::<f32>()
        .max(1e-6);
    (x - reference).abs().max().into_scalar().elem::<f32>() / scale
}

#[test]
fn cpu_kernel_matches_tensor_ops_forward() {
    // 37 steps: two whole chunks and a partial one.
    let (x, s0) = inputs::<Flex>(3, 37, 1);
    let cpu = cpu::forward_tensors(&x, s0.clone());
    let ops = tensor_ops::forward(&x, s0);
    assert_eq!(cpu.snapshots.dims(), [3, 3, N * N]);
    assert!(max_rel_diff(cpu.y, ops.y) < 1e-5);
    assert!(max_rel_diff(cpu.state, ops.state) < 1e-5);
    assert!(max_rel_diff(cpu.snapshots, ops.snapshots) < 1e-5);
}

#[test]
fn cpu_kernel_matches_tensor_ops_backward() {
    let (x, s0) = inputs::<Flex>(2, 40, 2);
    let dy = Tensor::<Flex, 3>::random([2, 40, N], Distribution::Uniform(-1.0, 1.0), &x.r.device());
    let snapshots = cpu::forward_tensors(&x, s0).snapshots;
    let cpu = cpu::backward_tensors(&x, snapshots.clone(), dy.clone());
    let ops = tensor_ops::backward(&x, snapshots, dy);
    for ((name, got), (_, want)) in cpu.named().into_iter().zip(ops.named()) {
        let d = max_rel_diff(got, want);
        assert!(d < 1e-4, "d{name}: {d}");
    }
}

/// The custom backward equals autodiff through the step-by-step tensor-op forward.
#[test]
fn wide_vectors_give_the_same_bits() {
    // One head of 37 steps through the kernels as compiled (baseline vectors) and through
    // `run_wide` (AVX2 where the CPU has it): every output bit for bit.
    use crate::model::wide::run_wide;
    let (x, s0) = inputs::<Flex>(1, 37, 9);
    let [r, w, k, v, a, b] = x
        .named()
        .map(|(_, t)| t.into_data().to_vec::<f32>().unwrap());
    let head = cpu::HeadInputs {
        r: &r,
        w: &w,
        k: &k,
        v: &v,
        a: &a,
        b: &b,
    };
    let s0: Vec<f32> = s0.into_data().to_vec().unwrap();
    let dy: Vec<f32> = r.iter().map(|x| x * 0.7 - 0.1).collect();
    let run = |wide: bool| {
        let (mut s, mut y, mut snapshots) = (s0.clone(), vec![0f32; 37 * N], vec![0f32; 3 * N * N]);
        let mut g: [Vec<f32>; 6] = std::array::from_fn(|_| vec![0f32; 37 * N]);
        let [gr, gw, gk, gv, ga, gb] = &mut g;
        let grads = cpu::HeadGrads {
            r: gr,
            w: gw,
            k: gk,
            v: gv,
            a: ga,
            b: gb,
        };
        if wide {
            run_wide(|| cpu::head_forward(head, &mut s, &mut y, &mut snapshots));
            run_wide(|| cpu::head_backward(head, &snapshots, &dy, grads));
        } else {
            cpu::head_forward(head, &mut s, &mut y, &mut snapshots);
            cpu::head_backward(head, &snapshots, &dy, grads);
        }
        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        [bits(&s), bits(&y), bits(&snapshots)]
            .into_iter()
            .chain(g.iter().map(|g| bits(g)))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn custom_backward_matches_autodiff() {
    let (x, _) = inputs::<A>(2, 33, 3);
    let device = x.r.device();
    let s0 = Tensor::<A, 3>::zeros([2, N, N], &device);
    let weights = Tensor::<A, 3>::random([2, 33, N], Distribution::Uniform(-1.0, 1.0), &device);
    let leaves = [&x.r, &x.w, &x.k, &x.v, &x.a, &x.b].map(|t| t.clone().detach().require_grad());
    let [r, w, k, v, a, b] = leaves.clone();
    let tracked = WkvInputs { r, w, k, v, a, b };

    let (y, _) = A::wkv(tracked.clone(), s0.clone());
    let custom = (y * weights.clone()).sum().backward();
    let y_ref = tensor_ops::forward(&tracked, s0).y;
    let reference = (y_ref * weights).sum().backward();
    for (i, leaf) in leaves.iter().enumerate() {
        let got = leaf.grad(&custom).expect("a gradient");
        let want = leaf.grad(&reference).expect("a gradient");
        let d = max_rel_diff(got, want);
        assert!(d < 1e-4, "input {i}: {d}");
    }
}

/// A sequence run in two pieces, carrying the state, equals the whole run.
#[test]
fn state_carries_across_calls() {
    let (x, s0) = inputs::<Flex>(1, 32, 4);
    let whole = Flex::wkv(x.clone(), s0.clone());
    let part =
        |t: &Tensor<Flex, 3>, range: std::ops::Range<usize>| t.clone().slice([0..1, range, 0..N]);
    let piece = |range: std::ops::Range<usize>| WkvInputs {
        r: part(&x.r, range.clone()),
        w: part(&x.w, range.clone()),
        k: part(&x.k, range.clone()),
        v: part(&x.v, range.clone()),
        a: part(&x.a, range.clone()),
        b: part(&x.b, range),
    };
    let (y1, s1) = Flex::wkv(piece(0..7), s0);
    let (y2, s2) = Flex::wkv(piece(7..32), s1);
    assert!(max_rel_diff(Tensor::cat(vec![y1, y2], 1), whole.0) < 1e-6);
    assert!(max_rel_diff(s2, whole.1) < 1e-6);
}

/// The CubeCL kernels against the CPU kernel's arithmetic (run on the host from the same
/// tensors) on a GPU backend: forward outputs, final state, snapshots and all six gradients, at
/// lengths with a partial last chunk, whole chunks only, and one step.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn gpu_kernel_matches_cpu_kernel<B: WkvKernel>(device: &B::Device) {
    for (bh, t, seed) in [(3, 37, 5), (4, 64, 6), (2, 1, 7), (6, 130, 8)] {
        let (x, s0) = inputs::<Flex>(bh, t, seed);
        let dy =
            Tensor::<Flex, 3>::random([bh, t, N], Distribution::Uniform(-1.0, 1.0), &x.r.device());
        let to = |x: &Tensor<Flex, 3>| Tensor::<B, 3>::from_data(x.to_data(), device);
        let gpu = x.map(to);
        let host =
            |x: Tensor<B, 3>| Tensor::<Flex, 3>::from_data(x.into_data(), &Default::default());
        let want = cpu::forward_tensors(&x, s0.clone());
        let got = B::wkv_forward(&gpu, to(&s0));
        for (name, got, want) in [
            ("y", got.y, want.y),
            ("state", got.state, want.state),
            ("snapshots", got.snapshots.clone(), want.snapshots.clone()),
        ] {
            let d = max_rel_diff(host(got), want);
            assert!(d < 1e-5, "BH {bh} T {t}: {name} differs by {d}");
        }
        let want = cpu::backward_tensors(&x, want.snapshots, dy.clone());
        let got = B::wkv_backward(&gpu, got.snapshots, to(&dy));
        for ((name, got), (_, want)) in got.named().into_iter().zip(want.named()) {
            let d = max_rel_diff(host(got), want);
            assert!(d < 1e-4, "BH {bh} T {t}: d{name} differs by {d}");
        }
    }
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_kernel_matches_cpu_kernel() {
    gpu_kernel_matches_cpu_kernel::<burn::backend::Cuda>(&burn::backend::cuda::CudaDevice::new(0));
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_kernel_matches_cpu_kernel() {
    gpu_kernel_matches_cpu_kernel::<burn::backend::Wgpu>(
        &burn::backend::wgpu::WgpuDevice::DefaultDevice,
    );
}
