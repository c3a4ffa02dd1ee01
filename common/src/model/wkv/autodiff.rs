//! The WKV operation on `Autodiff<B>`: the forward (layer form) runs on the inner backend and
//! keeps the chunk snapshots; the recorded backward hands them to
//! [`WkvKernel::wkv_layer_backward`].

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::{WkvKernel, WkvLayerInputs};
use crate::model::custom_op::{Tracked, finish, float_tensor};

/// The backward step of the operation.
#[derive(Debug)]
struct WkvBackward;

impl<B: WkvKernel> Backward<B, 6> for WkvBackward {
    /// The inputs and the chunk snapshots.
    type State = (WkvLayerInputs<B>, Tensor<B, 3>);

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = float_tensor::<B, 3>(grads.consume::<B>(&ops.node));
        let (inputs, snapshots) = ops.state;
        let g = B::wkv_layer_backward(&inputs, snapshots, dy);
        let grads_in_order = [g.r, g.w_logit, g.k, g.v, g.kk, g.a];
        for (parent, grad) in ops.parents.into_iter().zip(grads_in_order) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad.into_primitive().tensor());
            }
        }
    }
}

/// [`RwkvBackend::wkv`](crate::model::RwkvBackend::wkv) on `Autodiff<B, C>`: the forward on the inner
/// backend, its backward recorded.
pub(crate) fn tracked<B: WkvKernel, C: CheckpointStrategy>(
    inputs: WkvLayerInputs<Autodiff<B, C>>,
    state: Tensor<Autodiff<B, C>, 4>,
) -> (Tracked<B, C, 3>, Tracked<B, C, 4>) {
    let WkvLayerInputs {
        r,
        w_logit,
        k,
        v,
        kk,
        a,
    } = inputs;
    let tracked = [r, w_logit, k, v, kk, a].map(|x| x.into_primitive().tensor());
    let nodes = tracked.each_ref().map(|x| x.node.clone());
    let [r, w_logit, k, v, kk, a] = tracked.map(|x| float_tensor::<B, 3>(x.primitive));
    let inner = WkvLayerInputs {
        r,
        w_logit,
        k,
        v,
        kk,
        a,
    };
    let state = float_tensor::<B, 4>(Autodiff::<B, C>::inner(state.into_primitive().tensor()));
    let out = B::wkv_layer_forward(&inner, state);
    let kind = WkvBackward.prepare::<C>(nodes).compute_bound().stateful();
    let y = finish(
        kind,
        (inner, out.snapshots),
        out.y.into_primitive().tensor(),
    );
    let state = Autodiff::<B, C>::from_inner(out.state.into_primitive().tensor());
    (
        float_tensor::<Autodiff<B, C>, 3>(y),
        float_tensor::<Autodiff<B, C>, 4>(state),
    )
}
