//! Parity of the Burn RWKV-7 with the official implementation, on ../shared/fixtures/rwkv7-tiny
//! (its README says what each tensor is). Says "NOT RUN" and passes when ../shared is absent;
//! CI sets SOVEREIGN_REQUIRE_FIXTURES=1, which makes a missing fixture a failure.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use safetensors::SafeTensors;
use sovereign_common::model::RwkvBackend;
use sovereign_common::model::dropout::Dropout;
use sovereign_common::model::rwkv::{LayerState, ParamRef, zero_state};
use sovereign_common::model::weights::{TensorFile, load_rwkv, save_rwkv};
use sovereign_common::train::backend::TrainKernels;
use sovereign_test_support::{deviation, shared_fixtures};

/// The rwkv7-tiny fixture, or `None` (the test says NOT RUN) without `../shared`.
fn fixture_dir() -> Option<PathBuf> {
    shared_fixtures("model parity").map(|dir| dir.join("rwkv7-tiny"))
}

/// The reference tokens `[2, 33]`.
fn reference_tokens(dir: &std::path::Path) -> Vec<Vec<i64>> {
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor("tokens").unwrap();
    let values: Vec<i64> = view
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    values
        .chunks(view.shape()[1])
        .map(<[i64]>::to_vec)
        .collect()
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// The largest deviations a backend may show: the bounds on the CPU (exact f32).
#[derive(Clone, Copy)]
struct Bounds {
    /// Logits and states: max|Δ| / std(reference).
    forward: f64,
    /// The loss against float64: relative.
    loss: f64,
    /// Each parameter's gradient against float64: ‖g − g_ref‖ / ‖g_ref‖.
    gradient: f64,
}

const F32: Bounds = Bounds {
    forward: 1e-4,
    loss: 1e-5,
    gradient: 1e-3,
};

/// CubeCL runs f32 matmuls on the tensor cores in TF32 (a 10-bit mantissa, as PyTorch does with
/// `allow_tf32`), so on the GPU backends the bounds are TF32's.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
const TF32: Bounds = Bounds {
    forward: 2e-2,
    loss: 1e-3,
    gradient: 2e-2,
};

/// Deviations measured so far; a test prints each and fails at the end listing those over bound.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, what: &str, value: f64, bound: f64) {
        eprintln!("parity: {what}: {value:.2e} (bound {bound:.0e})");
        if value.is_nan() || value > bound {
            self.0.push(format!("{what}: {value:e} > {bound:e}"));
        }
    }

    fn assert_all_within(self) {
        assert!(self.0.is_empty(), "over bound: {:#?}", self.0);
    }
}

#[test]
fn sequence_and_recurrent_forward_match_the_official_package() {
    forward_parity::<Flex>(&Default::default(), F32);
}

#[test]
fn loss_and_every_gradient_match_the_float64_reference() {
    gradient_parity::<Flex>(&Default::default(), F32);
}

/// The same parity on the GPU kernels (builds with `--features cuda`, run on a GPU machine).
#[cfg(feature = "cuda")]
#[test]
fn cuda_matches_the_official_package_and_the_float64_gradients() {
    let device = burn::backend::cuda::CudaDevice::new(0);
    forward_parity::<burn::backend::Cuda>(&device, TF32);
    gradient_parity::<burn::backend::Cuda>(&device, TF32);
}

/// The same parity on wgpu's default adapter (builds with `--features wgpu`).
#[cfg(feature = "wgpu")]
#[test]
fn wgpu_matches_the_official_package_and_the_float64_gradients() {
    let device = burn::backend::wgpu::WgpuDevice::DefaultDevice;
    forward_parity::<burn::backend::Wgpu>(&device, TF32);
    gradient_parity::<burn::backend::Wgpu>(&device, TF32);
}

fn forward_parity<B: RwkvBackend>(device: &B::Device, bounds: Bounds) {
    let Some(dir) = fixture_dir() else { return };
    let device = device.clone();
    let weights = TensorFile::read(&dir.join("model.safetensors")).unwrap();
    let reference = TensorFile::read(&dir.join("reference.safetensors")).unwrap();
    let (model, config) = load_rwkv::<B>(&weights, &device).unwrap();
    assert_eq!((config.vocab, config.layers, config.embd), (300, 2, 128));
    let tokens = reference_tokens(&dir);
    let t = 32;
    let input: Vec<i64> = tokens.iter().flat_map(|row| row[..t].to_vec()).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [2, t]), &device);
    let mut checks = Checks::default();

    let mut state = zero_state::<B>(&config, 2, &device);
    let logits = model.forward(input.clone(), &mut state);
    let logits = values(logits);
    for b in 0..2 {
        let ours = &logits[b * t * 300..(b + 1) * t * 300];
        let official = reference
            .get(&format!("official.logits.{b}"), t * 300)
            .unwrap();
        let what = format!("sequence logits of row {b}, max|Δ|/std");
        checks.check(&what, deviation(ours, official), bounds.forward);
    }
    check_states(
        &state,
        &reference,
        "sequence (prefill)",
        bounds,
        &mut checks,
    );

    // One token at a time from the zero state: the recurrent form.
    let mut state = zero_state::<B>(&config, 2, &device);
    let mut steps = [Vec::new(), Vec::new()];
    for i in 0..t {
        let token = input.clone().slice([0..2, i..i + 1]);
        let out = values(model.forward(token, &mut state));
        for (b, row) in steps.iter_mut().enumerate() {
            row.extend_from_slice(&out[b * 300..(b + 1) * 300]);
        }
    }
    for (b, ours) in steps.iter().enumerate() {
        let official = reference
            .get(&format!("official.rnn_logits.{b}"), t * 300)
            .unwrap();
        let what = format!("recurrent logits of row {b}, max|Δ|/std");
        checks.check(&what, deviation(ours, official), bounds.forward);
    }
    // The state a prefill hands over equals the state of the token-by-token form.
    check_states(&state, &reference, "recurrent", bounds, &mut checks);
    checks.assert_all_within();
}

/// Every layer's state against the official package's state after the 32 tokens.
fn check_states<B: Backend>(
    state: &[LayerState<B>],
    reference: &TensorFile,
    form: &str,
    bounds: Bounds,
    checks: &mut Checks,
) {
    for (layer, s) in state.iter().enumerate() {
        let (att_x, kv, ffn_x) = (
            values(s.att_x_prev.clone()),
            values(s.att_kv.clone()),
            values(s.ffn_x_prev.clone()),
        );
        for b in 0..2 {
            let c = 128;
            let kv_len = kv.len() / 2;
            for (name, ours) in [
                ("att_x_prev", &att_x[b * c..(b + 1) * c]),
                ("att_kv", &kv[b * kv_len..(b + 1) * kv_len]),
                ("ffn_x_prev", &ffn_x[b * c..(b + 1) * c]),
            ] {
                let official = reference
                    .get(&format!("official.state.{b}.{layer}.{name}"), ours.len())
                    .unwrap();
                let what = format!("{form} state {b}.{layer}.{name}, max|Δ|/std");
                checks.check(&what, deviation(ours, official), bounds.forward);
            }
        }
    }
}

fn gradient_parity<B: TrainKernels>(device: &B::Device, bounds: Bounds) {
    type A<B> = Autodiff<B>;
    let Some(dir) = fixture_dir() else { return };
    let device = device.clone();
    let weights = TensorFile::read(&dir.join("model.safetensors")).unwrap();
    let reference = TensorFile::read(&dir.join("reference.safetensors")).unwrap();
    let (model, config) = load_rwkv::<A<B>>(&weights, &device).unwrap();
    let tokens = reference_tokens(&dir);
    let (batch, t) = (2, 32);
    let input: Vec<i64> = tokens.iter().flat_map(|row| row[..t].to_vec()).collect();
    let target: Vec<i64> = tokens.iter().flat_map(|row| row[1..=t].to_vec()).collect();
    let input = Tensor::<A<B>, 2, Int>::from_data(TensorData::new(input, [batch, t]), &device);
    let target = Tensor::<A<B>, 2, Int>::from_data(TensorData::new(target, [batch, t]), &device);
    let mut checks = Checks::default();

    // The training loss without L2Wrap (the reference has none): the fused head-and-loss.
    let mut state = zero_state(&config, batch, &device);
    let loss = model.loss(input, target, &mut state, Dropout::NONE, 0.0);
    let ours = f64::from(loss.clone().into_data().to_vec::<f32>().unwrap()[0]);
    let expected = f64::from(reference.get("f64.loss", 1).unwrap()[0]);
    let what = format!("loss {ours} vs float64 {expected}, relative");
    checks.check(&what, ((ours - expected) / expected).abs(), bounds.loss);

    let grads = loss.backward();
    let mut without_grad = Vec::new();
    for (name, param) in model.named_params() {
        let grad: Option<Vec<f32>> = match param {
            ParamRef::Vector(p) => p
                .val()
                .grad(&grads)
                .map(|g| g.into_data().to_vec().unwrap()),
            ParamRef::Matrix(p) => p
                .val()
                .grad(&grads)
                .map(|g| g.into_data().to_vec().unwrap()),
        };
        let key = format!("f64.grad.{name}");
        match grad {
            None => without_grad.push(name),
            Some(g) => {
                let r = reference.get(&key, g.len()).unwrap();
                let diff: f64 = g
                    .iter()
                    .zip(r)
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum();
                let norm: f64 = r.iter().map(|&b| f64::from(b).powi(2)).sum();
                let what = format!("gradient of {name}, relative L2 error");
                checks.check(&what, (diff / norm).sqrt(), bounds.gradient);
            }
        }
    }
    assert_eq!(
        without_grad,
        ["blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"]
    );
    checks.assert_all_within();
}

#[test]
fn saving_writes_the_official_layout_back_unchanged() {
    let Some(dir) = fixture_dir() else { return };
    let device = Default::default();
    let original = std::fs::read(dir.join("model.safetensors")).unwrap();
    let weights = TensorFile::read(&dir.join("model.safetensors")).unwrap();
    let (model, _) = load_rwkv::<Flex>(&weights, &device).unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("model.safetensors");
    save_rwkv(&model, &path).unwrap();
    let saved = std::fs::read(&path).unwrap();
    let (a, b) = (
        SafeTensors::deserialize(&original).unwrap(),
        SafeTensors::deserialize(&saved).unwrap(),
    );
    let mut names: Vec<String> = a.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut saved_names: Vec<String> = b.names().into_iter().map(str::to_string).collect();
    saved_names.sort();
    assert_eq!(names, saved_names);
    for name in names {
        let (x, y) = (a.tensor(&name).unwrap(), b.tensor(&name).unwrap());
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert_eq!(x.data(), y.data(), "{name}");
    }
}
