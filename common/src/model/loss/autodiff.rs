//! The head and loss on `Autodiff<B>`: when a gradient is wanted, the forward computes the loss
//! and both gradients on the inner backend, and the recorded backward scales them by the
//! gradient that reaches the loss.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;

use super::LossKernel;
use crate::model::custom_op::float_tensor;

/// The backward step of the operation.
#[derive(Debug)]
struct HeadLossBackward;

impl<B: LossKernel> Backward<B, 2> for HeadLossBackward {
    /// `∂loss/∂x` and `∂loss/∂head`.
    type State = (Tensor<B, 2>, Tensor<B, 2>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let upstream = float_tensor::<B, 1>(grads.consume::<B>(&ops.node)).reshape([1, 1]);
        let (dx, dhead) = ops.state;
        let [x_node, head_node] = ops.parents;
        for (node, grad) in [(x_node, dx), (head_node, dhead)] {
            if let Some(node) = node {
                let grad = grad * upstream.clone();
                grads.register::<B>(node.id, grad.into_primitive().tensor());
            }
        }
    }
}

/// [`RwkvBackend::head_loss`](crate::model::RwkvBackend::head_loss) on `Autodiff<B, C>`: the forward on the inner
/// backend, its backward recorded.
pub(crate) fn tracked<B: LossKernel, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    head: Tensor<Autodiff<B, C>, 2>,
    targets: Tensor<Autodiff<B, C>, 1, Int>,
    l2wrap: f64,
) -> Tensor<Autodiff<B, C>, 1> {
    let tracked = [x, head].map(|t| t.into_primitive().tensor());
    let nodes = tracked.each_ref().map(|t| t.node.clone());
    let [x, head] = tracked.map(|t| float_tensor::<B, 2>(t.primitive));
    let targets = Tensor::<B, 1, Int>::from_primitive(targets.into_primitive());
    let loss = match HeadLossBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let g = B::head_loss_grads(x, head, targets, l2wrap);
            prep.finish((g.x, g.head), g.loss.into_primitive().tensor())
        }
        OpsKind::UnTracked(prep) => {
            let loss = B::head_loss_value(x, head, targets);
            prep.finish(loss.into_primitive().tensor())
        }
    };
    float_tensor::<Autodiff<B, C>, 1>(loss)
}
