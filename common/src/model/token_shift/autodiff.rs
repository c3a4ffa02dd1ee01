//! The operation on `Autodiff<B>`: the forward runs on the inner backend and keeps its inputs;
//! the recorded backward hands them to [`TokenShiftKernel::token_shift_backward`].

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::prelude::*;

use super::{TokenShiftInputs, TokenShiftKernel};
use crate::model::custom_op::{finish, float_tensor};

/// The backward step of the operation.
#[derive(Debug)]
struct TokenShiftBackward;

impl<B: TokenShiftKernel> Backward<B, 3> for TokenShiftBackward {
    /// The inputs.
    type State = TokenShiftInputs<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dout = float_tensor::<B, 3>(grads.consume::<B>(&ops.node));
        let g = B::token_shift_backward(&ops.state, dout);
        let in_order = [
            g.x.into_primitive().tensor(),
            g.prev.into_primitive().tensor(),
            g.mix.into_primitive().tensor(),
        ];
        for (parent, grad) in ops.parents.into_iter().zip(in_order) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// [`RwkvBackend::token_shift`](crate::model::RwkvBackend::token_shift) on `Autodiff<B, C>`: the forward on the inner
/// backend, its backward recorded.
pub(crate) fn tracked<B: TokenShiftKernel, C: CheckpointStrategy>(
    inputs: TokenShiftInputs<Autodiff<B, C>>,
) -> Tensor<Autodiff<B, C>, 3> {
    let x = inputs.x.into_primitive().tensor();
    let prev = inputs.prev.into_primitive().tensor();
    let mix = inputs.mix.into_primitive().tensor();
    let nodes = [x.node.clone(), prev.node.clone(), mix.node.clone()];
    let inner = TokenShiftInputs {
        x: float_tensor::<B, 3>(x.primitive),
        prev: float_tensor::<B, 2>(prev.primitive),
        mix: float_tensor::<B, 1>(mix.primitive),
    };
    let out = B::token_shift_forward(&inner);
    let kind = TokenShiftBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful();
    let out = finish(kind, inner, out.into_primitive().tensor());
    float_tensor::<Autodiff<B, C>, 3>(out)
}
