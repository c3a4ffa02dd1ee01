//! The CPU kernel against the tensor-op form, and both backwards against autodiff through the
//! tensor-op forward.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::*;
use crate::model::RwkvBackend;
use crate::model::config::HEAD_SIZE as N;

type A = Autodiff<Flex>;

/// Seeded layer inputs `[b, t, heads·N]` in the ranges the model produces and a random
/// starting state.
fn inputs<B: Backend>(
    b: usize,
    t: usize,
    heads: usize,
    seed: u64,
) -> (WkvLayerInputs<B>, Tensor<B, 4>) {
    let device = Default::default();
    B::seed(&device, seed);
    let inputs = WkvLayerInputs::random(b, t, heads, &device);
    let state = Tensor::random([b, heads, N, N], Distribution::Uniform(-0.5, 0.5), &device);
    (inputs, state)
}

impl<B: Backend> WkvLayerInputs<B> {
    /// The six tensors by name.
    fn named(self) -> [(&'static str, Tensor<B, 3>); 6] {
        let WkvLayerInputs {
            r,
            w_logit,
            k,
            v,
            kk,
            a,
        } = self;
        [
            ("r", r),
            ("w_logit", w_logit),
            ("k", k),
            ("v", v),
            ("kk", kk),
            ("a", a),
        ]
    }

    /// Each tensor through `f`.
    fn map<C: Backend>(&self, f: impl Fn(&Tensor<B, 3>) -> Tensor<C, 3>) -> WkvLayerInputs<C> {
        WkvLayerInputs {
            r: f(&self.r),
            w_logit: f(&self.w_logit),
            k: f(&self.k),
            v: f(&self.v),
            kk: f(&self.kk),
            a: f(&self.a),
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
    // 37 steps: two whole chunks and a partial one; 2 sequences of 3 heads.
    let (x, s0) = inputs::<Flex>(2, 37, 3, 1);
    let cpu = Flex::wkv_layer_forward(&x, s0.clone());
    let ops = layer::forward(&x, s0);
    assert_eq!(cpu.y.dims(), [2, 37, 3 * N]);
    assert_eq!(cpu.snapshots.dims(), [6, 3, N * N]);
    assert!(max_rel_diff(cpu.y, ops.y) < 1e-5);
    assert!(max_rel_diff(cpu.state, ops.state) < 1e-5);
    assert!(max_rel_diff(cpu.snapshots, ops.snapshots) < 1e-5);
}

#[test]
fn cpu_kernel_matches_tensor_ops_backward() {
    let (mut x, s0) = inputs::<Flex>(2, 40, 3, 2);
    // One head's removal key below the norm's clamp for a step.
    let tiny = Tensor::full([1, 1, N], 1e-13, &s0.device());
    x.kk = x.kk.slice_assign([1..2, 5..6, N..2 * N], tiny);
    let dy = Tensor::<Flex, 3>::random(
        [2, 40, 3 * N],
        Distribution::Uniform(-1.0, 1.0),
        &s0.device(),
    );
    let snapshots = Flex::wkv_layer_forward(&x, s0).snapshots;
    let cpu = Flex::wkv_layer_backward(&x, snapshots.clone(), dy.clone());
    let ops = layer::backward(&x, snapshots, dy);
    for ((name, got), (_, want)) in cpu.named().into_iter().zip(ops.named()) {
        let d = max_rel_diff(got, want);
        assert!(d < 1e-4, "d{name}: {d}");
    }
}

#[test]
fn wide_vectors_give_the_same_bits() {
    // One head of 37 steps through the kernels as compiled (baseline vectors) and through
    // `run_wide` (AVX2 where the CPU has it): every output bit for bit.
    use crate::model::wide::run_wide;
    let (x, s0) = inputs::<Flex>(1, 37, 1, 9);
    let core = layer::core_inputs(&x);
    let [r, w, k, v, a, b] = [core.r, core.w, core.k, core.v, core.a, core.b]
        .map(|t| t.into_data().to_vec::<f32>().unwrap());
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

/// The custom backward equals autodiff through the step-by-step tensor-op forward.
#[test]
fn custom_backward_matches_autodiff() {
    let (x, _) = inputs::<A>(2, 33, 2, 3);
    let device = x.r.device();
    let s0 = Tensor::<A, 4>::zeros([2, 2, N, N], &device);
    let weights = Tensor::<A, 3>::random([2, 33, 2 * N], Distribution::Uniform(-1.0, 1.0), &device);
    let leaves = x.map(|t| t.clone().detach().require_grad());

    let (y, _) = A::wkv(leaves.clone(), s0.clone());
    let custom = (y * weights.clone()).sum().backward();
    // The reference: the preparation and the step-by-step recurrence in tensor ops, through
    // Burn's autodiff.
    let core = layer::core_inputs(&leaves);
    let y_ref = layer::from_heads(tensor_ops::forward(&core, s0.reshape([4, N, N])).y, 2);
    let reference = (y_ref * weights).sum().backward();
    for (name, leaf) in leaves.named() {
        let got = leaf.grad(&custom).expect("a gradient");
        let want = leaf.grad(&reference).expect("a gradient");
        let d = max_rel_diff(got, want);
        assert!(d < 1e-4, "d{name}: {d}");
    }
}

/// A sequence run in two pieces, carrying the state, equals the whole run.
#[test]
fn state_carries_across_calls() {
    let (x, s0) = inputs::<Flex>(1, 32, 2, 4);
    let whole = Flex::wkv(x.clone(), s0.clone());
    let piece =
        |range: std::ops::Range<usize>| x.map(|t| t.clone().slice([0..1, range.clone(), 0..2 * N]));
    let (y1, s1) = Flex::wkv(piece(0..7), s0);
    let (y2, s2) = Flex::wkv(piece(7..32), s1);
    assert!(max_rel_diff(Tensor::cat(vec![y1, y2], 1), whole.0) < 1e-6);
    assert!(max_rel_diff(s2, whole.1) < 1e-6);
}

/// The CubeCL kernels (in the layer form around them) against the CPU kernel on the same
/// values, on a GPU backend: forward outputs, final state, snapshots and all six gradients, at
/// lengths with a partial last chunk, whole chunks only, and one step.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn gpu_kernel_matches_cpu_kernel<B: WkvKernel>(device: &B::Device) {
    for (b, t, heads, seed) in [(3, 37, 1, 5), (2, 64, 2, 6), (2, 1, 1, 7), (2, 130, 3, 8)] {
        let (x, s0) = inputs::<Flex>(b, t, heads, seed);
        let dy = Tensor::<Flex, 3>::random(
            [b, t, heads * N],
            Distribution::Uniform(-1.0, 1.0),
            &s0.device(),
        );
        let to = |x: &Tensor<Flex, 3>| Tensor::<B, 3>::from_data(x.to_data(), device);
        let gpu = x.map(to);
        let host = |x: Tensor<B, 3>| Tensor::<Flex, 3>::from_data(x.into_data(), &s0.device());
        let want = Flex::wkv_layer_forward(&x, s0.clone());
        let got = B::wkv_layer_forward(&gpu, Tensor::from_data(s0.to_data(), device));
        let state = Tensor::<Flex, 4>::from_data(got.state.into_data(), &s0.device());
        let d = max_rel_diff(state, want.state);
        assert!(d < 1e-5, "B {b} T {t}: the state differs by {d}");
        for (name, got, want) in [
            ("y", got.y, want.y),
            ("snapshots", got.snapshots.clone(), want.snapshots.clone()),
        ] {
            let d = max_rel_diff(host(got), want);
            assert!(d < 1e-5, "B {b} T {t}: {name} differs by {d}");
        }
        let want = Flex::wkv_layer_backward(&x, want.snapshots, dy.clone());
        let got = B::wkv_layer_backward(&gpu, got.snapshots, to(&dy));
        for ((name, got), (_, want)) in got.named().into_iter().zip(want.named()) {
            let d = max_rel_diff(host(got), want);
            assert!(d < 1e-4, "B {b} T {t}: d{name} differs by {d}");
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
