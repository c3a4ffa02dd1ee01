//! The WKV operation on `Autodiff<B>`: the forward runs on the inner backend and keeps the chunk
//! snapshots; the recorded backward hands them to [`WkvKernel::wkv_backward`].

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use super::{WkvBackend, WkvInputs, WkvKernel};

/// The backward step of the operation.
#[derive(Debug)]
struct WkvBackward;

impl<B: WkvKernel> Backward<B, 6> for WkvBackward {
    /// The inputs and the chunk snapshots.
    type State = (WkvInputs<B>, Tensor<B, 3>);

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = tensor::<B>(grads.consume::<B>(&ops.node));
        let (inputs, snapshots) = ops.state;
        let g = B::wkv_backward(&inputs, snapshots, dy);
        for (parent, grad) in ops.parents.into_iter().zip([g.r, g.w, g.k, g.v, g.a, g.b]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad.into_primitive().tensor());
            }
        }
    }
}

/// A primitive as a tensor.
fn tensor<B: Backend>(primitive: FloatTensor<B>) -> Tensor<B, 3> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

impl<B: WkvKernel, C: CheckpointStrategy> WkvBackend for Autodiff<B, C> {
    fn wkv(inputs: WkvInputs<Self>, state: Tensor<Self, 3>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        let WkvInputs { r, w, k, v, a, b } = inputs;
        let tracked = [r, w, k, v, a, b].map(|x| x.into_primitive().tensor());
        let nodes = tracked.each_ref().map(|x| x.node.clone());
        let [r, w, k, v, a, b] = tracked.map(|x| tensor::<B>(x.primitive));
        let inner = WkvInputs { r, w, k, v, a, b };
        let state = tensor::<B>(Self::inner(state.into_primitive().tensor()));
        let out = B::wkv_forward(&inner, state);
        let y = match WkvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish((inner, out.snapshots), out.y.into_primitive().tensor())
            }
            OpsKind::UnTracked(prep) => prep.finish(out.y.into_primitive().tensor()),
        };
        let state = Self::from_inner(out.state.into_primitive().tensor());
        (tensor::<Self>(y), tensor::<Self>(state))
    }
}
