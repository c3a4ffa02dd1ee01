//! The head and loss built from tensor ops, for backends without a kernel of their own (the GPU
//! backends); the tests hold the CPU kernel against it.

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

use super::HeadLossGrads;

/// The logits `[N, V]`, each row shifted by its maximum, and those maxima `[N, 1]`.
fn shifted_logits<B: Backend>(x: Tensor<B, 2>, head: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let logits = x.matmul(head.transpose());
    let max = logits.clone().max_dim(1);
    (logits - max.clone(), max)
}

/// Mean of `log Σ exp(shifted) − shifted[target]` over the rows, `[1]`.
fn mean_cross_entropy<B: Backend>(
    shifted: Tensor<B, 2>,
    exp: Tensor<B, 2>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let log_sum = exp.sum_dim(1).log();
    (log_sum - shifted.gather(1, targets)).mean()
}

/// The mean cross-entropy of `x · headᵀ` against `targets`.
pub fn value<B: Backend>(
    x: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let n = targets.dims()[0];
    let (shifted, _) = shifted_logits(x, head);
    let exp = shifted.clone().exp();
    mean_cross_entropy(shifted, exp, targets.reshape([n, 1]))
}

/// The loss and its gradients: the logits' gradient is `(softmax − onehot(target)) / N`, plus
/// `l2wrap / N · max` at each row's largest logit.
pub fn grads<B: Backend>(
    x: Tensor<B, 2>,
    head: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    l2wrap: f64,
) -> HeadLossGrads<B> {
    let n = targets.dims()[0];
    let targets = targets.reshape([n, 1]);
    let (shifted, max) = shifted_logits(x.clone(), head.clone());
    let argmax = shifted.clone().argmax(1);
    let exp = shifted.clone().exp();
    let loss = mean_cross_entropy(shifted, exp.clone(), targets.clone());
    let scale = 1.0 / n as f64;
    let softmax = exp.clone() / exp.sum_dim(1);
    let d_logits = (softmax * scale)
        .scatter(
            1,
            targets,
            Tensor::full([n, 1], -scale, &max.device()),
            IndexingUpdateOp::Add,
        )
        .scatter(1, argmax, max * (l2wrap * scale), IndexingUpdateOp::Add);
    HeadLossGrads {
        loss,
        x: d_logits.clone().matmul(head),
        head: d_logits.transpose().matmul(x),
    }
}
