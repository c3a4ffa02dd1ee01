//! Parity of the Burn RWKV-7 with the official implementation, on ../shared/fixtures/rwkv7-tiny
//! (its README says what each tensor is). Says "NOT RUN" and passes when ../shared is absent;
//! CI sets SOVEREIGN_REQUIRE_FIXTURES=1, which makes a missing fixture a failure.

use std::io::Write;
use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use safetensors::SafeTensors;
use sovereign_common::model::rwkv::{LayerState, ParamRef, zero_state};
use sovereign_common::model::weights::{TensorFile, load_rwkv, save_rwkv};

type B = Flex;

fn fixture_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SOVEREIGN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // `cargo test` sets the manifest directory at run time too; it wins over the one
            // compiled in, which a target directory shared between checkouts can leave stale.
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
                .join("../../shared/fixtures")
        })
        .join("rwkv7-tiny");
    if dir.is_dir() {
        return Some(dir);
    }
    let required = std::env::var("SOVEREIGN_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "model parity: {} is required but missing",
        dir.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "NOT RUN: model parity needs {} (present in CI)",
        dir.display()
    );
    None
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

/// max |ours - reference| / std(reference).
fn deviation(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let n = reference.len() as f64;
    let mean = reference.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (reference
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let max = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .fold(0.0, f64::max);
    max / std
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

#[test]
fn sequence_and_recurrent_forward_match_the_official_package() {
    let Some(dir) = fixture_dir() else { return };
    let device = Default::default();
    let weights = TensorFile::read(&dir.join("model.safetensors")).unwrap();
    let reference = TensorFile::read(&dir.join("reference.safetensors")).unwrap();
    let (model, config) = load_rwkv::<B>(&weights, &device).unwrap();
    assert_eq!((config.vocab, config.layers, config.embd), (300, 2, 128));
    let tokens = reference_tokens(&dir);
    let t = 32;
    let input: Vec<i64> = tokens.iter().flat_map(|row| row[..t].to_vec()).collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(input, [2, t]), &device);

    let mut state = zero_state::<B>(&config, 2, &device);
    let logits = model.forward(input.clone(), &mut state);
    let logits = values(logits);
    for b in 0..2 {
        let ours = &logits[b * t * 300..(b + 1) * t * 300];
        let official = reference
            .get(&format!("official.logits.{b}"), t * 300)
            .unwrap();
        let dev = deviation(ours, official);
        eprintln!("parity: sequence logits of row {b}: max|Δ|/std = {dev:.2e}");
        assert!(
            dev <= 1e-4,
            "sequence logits of row {b}: max|Δ|/std = {dev:e}"
        );
    }
    assert_states_match(&state, &reference, "sequence (prefill)");

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
        let dev = deviation(ours, official);
        eprintln!("parity: recurrent logits of row {b}: max|Δ|/std = {dev:.2e}");
        assert!(
            dev <= 1e-4,
            "recurrent logits of row {b}: max|Δ|/std = {dev:e}"
        );
    }
    // The state a prefill hands over equals the state of the token-by-token form.
    assert_states_match(&state, &reference, "recurrent");
}

/// Every layer's state against the official package's state after the 32 tokens.
fn assert_states_match(state: &[LayerState<B>], reference: &TensorFile, form: &str) {
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
                let dev = deviation(ours, official);
                eprintln!("parity: {form} state {b}.{layer}.{name}: max|Δ|/std = {dev:.2e}");
                assert!(
                    dev <= 1e-4,
                    "{form} state {b}.{layer}.{name}: max|Δ|/std = {dev:e}"
                );
            }
        }
    }
}

#[test]
fn loss_and_every_gradient_match_the_float64_reference() {
    type A = Autodiff<Flex>;
    let Some(dir) = fixture_dir() else { return };
    let device = Default::default();
    let weights = TensorFile::read(&dir.join("model.safetensors")).unwrap();
    let reference = TensorFile::read(&dir.join("reference.safetensors")).unwrap();
    let (model, config) = load_rwkv::<A>(&weights, &device).unwrap();
    let tokens = reference_tokens(&dir);
    let (batch, t, vocab) = (2, 32, config.vocab);
    let input: Vec<i64> = tokens.iter().flat_map(|row| row[..t].to_vec()).collect();
    let target: Vec<i64> = tokens.iter().flat_map(|row| row[1..=t].to_vec()).collect();
    let input = Tensor::<A, 2, Int>::from_data(TensorData::new(input, [batch, t]), &device);
    let target = Tensor::<A, 2, Int>::from_data(TensorData::new(target, [batch * t, 1]), &device);

    let logits = model.forward(input, &mut zero_state(&config, batch, &device));
    let log_probs = log_softmax(logits.reshape([batch * t, vocab]), 1);
    let loss = -log_probs.gather(1, target).mean();
    let ours = f64::from(loss.clone().into_data().to_vec::<f32>().unwrap()[0]);
    let expected = f64::from(reference.get("f64.loss", 1).unwrap()[0]);
    eprintln!(
        "parity: loss {ours} vs float64 {expected}: relative {:.2e}",
        ((ours - expected) / expected).abs()
    );
    assert!(
        ((ours - expected) / expected).abs() <= 1e-5,
        "loss {ours} vs float64 {expected}"
    );

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
                let rel = (diff / norm).sqrt();
                eprintln!("parity: gradient of {name}: relative L2 error {rel:.2e}");
                assert!(rel <= 1e-3, "gradient of {name}: relative error {rel:e}");
            }
        }
    }
    assert_eq!(
        without_grad,
        ["blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"]
    );
}

#[test]
fn saving_writes_the_official_layout_back_unchanged() {
    let Some(dir) = fixture_dir() else { return };
    let device = Default::default();
    let original = std::fs::read(dir.join("model.safetensors")).unwrap();
    let weights = TensorFile::read(&dir.join("model.safetensors")).unwrap();
    let (model, _) = load_rwkv::<B>(&weights, &device).unwrap();
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
