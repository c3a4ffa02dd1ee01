//! Evaluation and generation with a trained model: mean cross-entropy over consecutive windows,
//! and sampling (temperature, top-p) one token at a time with the recurrent state.

use burn::prelude::*;

use super::config::ModelConfig;
use super::dropout::Dropout;
use super::loss::window_tensors;
use super::rwkv::{Rwkv, State, zero_state};
use super::{ModelError, RwkvBackend};
use crate::data::dataset::TokenDataset;
use crate::hashing::splitmix64;

/// The result of [`evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// Mean cross-entropy (nats per token).
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: u64,
}

/// Mean cross-entropy over the consecutive, non-overlapping windows of `seq_len + 1` tokens of
/// `data` (input the first T tokens, targets the next T), `batch` windows at a time.
pub fn evaluate<B: RwkvBackend>(
    model: &Rwkv<B>,
    config: &ModelConfig,
    data: &TokenDataset,
    seq_len: usize,
    batch: usize,
    device: &B::Device,
) -> Result<Evaluation, ModelError> {
    let window = seq_len as u64 + 1;
    let windows = data.len_tokens() / window;
    if windows == 0 {
        return Err(ModelError::Input(format!(
            "{} tokens are fewer than one window of {window}",
            data.len_tokens()
        )));
    }
    let mut total = 0.0;
    let mut start = 0;
    while start < windows {
        let n = (windows - start).min(batch as u64) as usize;
        let rows: Vec<Vec<u16>> = (0..n as u64)
            .map(|i| data.tokens((start + i) * window, (start + i + 1) * window))
            .collect();
        total += windows_loss(model, config, &rows, device)? * n as f64;
        start += n as u64;
    }
    let loss = total / windows as f64;
    Ok(Evaluation {
        loss,
        perplexity: loss.exp(),
        tokens: windows * seq_len as u64,
    })
}

/// The logits `[T, V]` (row-major) of the model on `tokens` (T of them), from a zero state.
pub fn logits<B: RwkvBackend>(
    model: &Rwkv<B>,
    config: &ModelConfig,
    tokens: &[u16],
    device: &B::Device,
) -> Result<Vec<f32>, ModelError> {
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let input = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [tokens.len()]), device)
        .reshape([1, tokens.len()]);
    let mut state = zero_state(config, 1, device);
    model
        .forward(input, &mut state)
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))
}

/// Mean cross-entropy (no L2Wrap) of the windows of T + 1 tokens, from a zero state.
pub fn windows_loss<B: RwkvBackend>(
    model: &Rwkv<B>,
    config: &ModelConfig,
    windows: &[Vec<u16>],
    device: &B::Device,
) -> Result<f64, ModelError> {
    let (input, target) = window_tensors(windows, device);
    let mut state = zero_state(config, windows.len(), device);
    let loss = model.loss(input, target, &mut state, Dropout::NONE, 0.0);
    Ok(f64::from(
        loss.into_data()
            .to_vec::<f32>()
            .map_err(|e| ModelError::Readback(format!("{e:?}")))?[0],
    ))
}

/// How the next token is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 picks the most likely token.
    pub temperature: f64,
    /// Nucleus: sample among the most likely tokens whose probabilities sum to `top_p`.
    pub top_p: f64,
}

/// Draws a token from `logits` with `uniform` in [0, 1).
pub fn sample(logits: &[f32], sampling: Sampling, uniform: f64) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |best, (i, &x)| if x > best.1 { (i, x) } else { best },
            )
            .0 as u32
    };
    if sampling.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            (
                i as u32,
                ((f64::from(x) - f64::from(max)) / sampling.temperature).exp(),
            )
        })
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: f64 = probs.iter().map(|p| p.1).sum();
    let mut kept = 0.0;
    let cut = probs
        .iter()
        .position(|p| {
            kept += p.1 / total;
            kept >= sampling.top_p
        })
        .map_or(probs.len(), |i| i + 1);
    let nucleus = &probs[..cut];
    let mass: f64 = nucleus.iter().map(|p| p.1).sum();
    let mut target = uniform * mass;
    for &(id, p) in nucleus {
        if target < p {
            return id;
        }
        target -= p;
    }
    nucleus.last().map_or_else(argmax, |p| p.0)
}

/// What [`generate`] produces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateOptions {
    /// The most tokens to produce.
    pub max_tokens: usize,
    /// How tokens are drawn.
    pub sampling: Sampling,
    /// Seed of the draws.
    pub seed: u64,
    /// The end-of-document id: generation stops after it.
    pub stop: Option<u32>,
}

/// Generates after `prompt` (which must not be empty), calling `emit` with each new token;
/// returns how many were produced. The prompt is read in the sequence form, then each token
/// advances the recurrent state in O(1) memory.
pub fn generate<B: RwkvBackend>(
    model: &Rwkv<B>,
    config: &ModelConfig,
    prompt: &[u32],
    options: GenerateOptions,
    device: &B::Device,
    mut emit: impl FnMut(u32),
) -> Result<usize, ModelError> {
    let GenerateOptions {
        max_tokens,
        sampling,
        seed,
        stop,
    } = options;
    if prompt.is_empty() {
        return Err(ModelError::Input("the prompt encodes to no tokens".into()));
    }
    let mut state: State<B> = zero_state(config, 1, device);
    let ids: Vec<i64> = prompt.iter().map(|&x| i64::from(x)).collect();
    let n = ids.len();
    let logits = model.forward(
        Tensor::from_data(TensorData::new(ids, [1, n]), device),
        &mut state,
    );
    let vocab = config.vocab;
    let mut last: Vec<f32> = logits
        .slice([0..1, n - 1..n, 0..vocab])
        .into_data()
        .to_vec()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    let mut rng = splitmix64(seed);
    for produced in 0..max_tokens {
        rng = splitmix64(rng);
        let uniform = (rng >> 11) as f64 / (1u64 << 53) as f64;
        let token = sample(&last, sampling, uniform);
        emit(token);
        if Some(token) == stop {
            return Ok(produced + 1);
        }
        let input = Tensor::from_data(TensorData::new(vec![i64::from(token)], [1, 1]), device);
        last = model
            .forward(input, &mut state)
            .into_data()
            .to_vec()
            .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    }
    Ok(max_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_temperature_and_nucleus() {
        let full = Sampling {
            temperature: 1.0,
            top_p: 1.0,
        };
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        assert_eq!(
            sample(
                &logits,
                Sampling {
                    temperature: 0.0,
                    top_p: 1.0
                },
                0.99
            ),
            1
        );
        // A tiny nucleus keeps only the most likely token, whatever the draw.
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(
                sample(
                    &logits,
                    Sampling {
                        temperature: 1.0,
                        top_p: 0.01
                    },
                    u
                ),
                1
            );
        }
        // With the whole distribution, a draw near 1 reaches the least likely token.
        assert_eq!(sample(&logits, full, 0.9999), 0);
        assert_eq!(sample(&logits, full, 0.0), 1);
    }
}
