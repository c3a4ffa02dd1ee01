//! The operation on `Autodiff<B>`: the forward runs on the inner backend and keeps its inputs;
//! the recorded backward hands them to [`WkvOutKernel::wkv_out_backward`].

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::prelude::*;

use super::{WkvOutInputs, WkvOutKernel};
use crate::model::custom_op::{finish, float_tensor};

/// The backward step of the operation.
#[derive(Debug)]
struct WkvOutBackward;

impl<B: WkvOutKernel> Backward<B, 8> for WkvOutBackward {
    /// The inputs.
    type State = WkvOutInputs<B>;

    fn backward(self, ops: Ops<Self::State, 8>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dout = float_tensor::<B, 3>(grads.consume::<B>(&ops.node));
        let g = B::wkv_out_backward(&ops.state, dout);
        let primitive = |x: Tensor<B, 3>| x.into_primitive().tensor();
        let in_order = [
            primitive(g.y),
            primitive(g.r),
            primitive(g.k),
            primitive(g.v),
            primitive(g.g),
            g.r_k.into_primitive().tensor(),
            g.weight.into_primitive().tensor(),
            g.bias.into_primitive().tensor(),
        ];
        for (parent, grad) in ops.parents.into_iter().zip(in_order) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// [`RwkvBackend::wkv_out`](crate::model::RwkvBackend::wkv_out) on `Autodiff<B, C>`: the forward on the inner
/// backend, its backward recorded.
pub(crate) fn tracked<B: WkvOutKernel, C: CheckpointStrategy>(
    x: WkvOutInputs<Autodiff<B, C>>,
) -> Tensor<Autodiff<B, C>, 3> {
    let WkvOutInputs {
        y,
        r,
        k,
        v,
        g,
        r_k,
        weight,
        bias,
    } = x;
    let rows = [y, r, k, v, g].map(|x| x.into_primitive().tensor());
    let r_k = r_k.into_primitive().tensor();
    let [weight, bias] = [weight, bias].map(|x| x.into_primitive().tensor());
    let nodes = [
        rows[0].node.clone(),
        rows[1].node.clone(),
        rows[2].node.clone(),
        rows[3].node.clone(),
        rows[4].node.clone(),
        r_k.node.clone(),
        weight.node.clone(),
        bias.node.clone(),
    ];
    let [y, r, k, v, g] = rows.map(|x| float_tensor::<B, 3>(x.primitive));
    let inner = WkvOutInputs {
        y,
        r,
        k,
        v,
        g,
        r_k: float_tensor::<B, 2>(r_k.primitive),
        weight: float_tensor::<B, 1>(weight.primitive),
        bias: float_tensor::<B, 1>(bias.primitive),
    };
    let out = B::wkv_out_forward(&inner);
    let kind = WkvOutBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful();
    let out = finish(kind, inner, out.into_primitive().tensor());
    float_tensor::<Autodiff<B, C>, 3>(out)
}
