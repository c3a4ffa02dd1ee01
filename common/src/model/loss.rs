//! The training loss: mean cross-entropy plus L2Wrap.
//!
//! L2Wrap (RWKV-LM) leaves the loss value alone and adds a gradient of `1e-4 / (B·T) · max` at each
//! position's largest logit, which keeps logits from drifting upward. Here it is the term
//! `e - detach(e)` with `e = 1e-4 / (B·T) · ½ · Σ max²`: zero in value, that gradient in backward.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// L2Wrap's factor before the 1 / (B·T).
const L2WRAP: f64 = 1e-4;

/// The inputs (first T tokens) and targets (last T tokens) of windows of T + 1 tokens, as
/// `[B, T]` tensors.
pub fn window_tensors<B: Backend>(
    windows: &[Vec<u16>],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let (b, t) = (windows.len(), windows.first().map_or(1, Vec::len) - 1);
    let input: Vec<i64> = windows
        .iter()
        .flat_map(|w| w[..t].iter().map(|&x| i64::from(x)))
        .collect();
    let target: Vec<i64> = windows
        .iter()
        .flat_map(|w| w[1..].iter().map(|&x| i64::from(x)))
        .collect();
    (
        Tensor::from_data(TensorData::new(input, [b, t]), device),
        Tensor::from_data(TensorData::new(target, [b, t]), device),
    )
}

/// Mean cross-entropy of `logits` `[B, T, V]` against `targets` `[B, T]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, t, v] = logits.dims();
    let log_probs = log_softmax(logits.reshape([b * t, v]), 1);
    -log_probs.gather(1, targets.reshape([b * t, 1])).mean()
}

/// Cross-entropy with L2Wrap's extra gradient (the value is the cross-entropy's).
pub fn lm_loss<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [b, t, _] = logits.dims();
    let ce = cross_entropy(logits.clone(), targets);
    let max = logits.max_dim(2);
    let extra = (max.clone() * max).sum() * (0.5 * L2WRAP / (b * t) as f64);
    ce + (extra.clone() - extra.detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type A = Autodiff<Flex>;

    #[test]
    fn l2wrap_keeps_the_value_and_adds_its_gradient_at_the_argmax() {
        let device = Default::default();
        let values: Vec<f32> = (0..2 * 3 * 5)
            .map(|i| ((i * 7919) % 13) as f32 / 3.0 - 2.0)
            .collect();
        let targets = Tensor::<A, 2, Int>::from_data(
            TensorData::new(vec![0i64, 1, 2, 3, 4, 0], [2, 3]),
            &device,
        );
        let leaf = || {
            Tensor::<A, 3>::from_data(TensorData::new(values.clone(), [2, 3, 5]), &device)
                .require_grad()
        };

        let plain_logits = leaf();
        let plain = cross_entropy(plain_logits.clone(), targets.clone());
        let plain_grad: Vec<f32> = plain_logits
            .grad(&plain.backward())
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();

        let wrapped_logits = leaf();
        let wrapped = lm_loss(wrapped_logits.clone(), targets);
        let wrapped_value: f32 = wrapped.clone().into_data().to_vec::<f32>().unwrap()[0];
        let plain_value: f32 = plain.into_data().to_vec::<f32>().unwrap()[0];
        assert_eq!(wrapped_value, plain_value);
        let wrapped_grad: Vec<f32> = wrapped_logits
            .grad(&wrapped.backward())
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();

        for position in 0..6 {
            let row = &values[position * 5..position * 5 + 5];
            let (argmax, max) =
                row.iter().enumerate().fold(
                    (0, f32::MIN),
                    |acc, (i, &x)| if x > acc.1 { (i, x) } else { acc },
                );
            for j in 0..5 {
                let extra = wrapped_grad[position * 5 + j] - plain_grad[position * 5 + j];
                let expected = if j == argmax { 1e-4 / 6.0 * max } else { 0.0 };
                assert!(
                    (extra - expected).abs() < 1e-8,
                    "position {position}, logit {j}: {extra} vs {expected}"
                );
            }
        }
    }
}
