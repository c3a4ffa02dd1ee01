//! What the model's own autodiff operations share ([`activation`](super::activation),
//! [`token_shift`](super::token_shift), [`wkv`](super::wkv), [`wkv_out`](super::wkv_out),
//! [`loss`](super::loss)): each runs its forward on the inner backend's tensors and records a
//! backward step that gets Burn's float primitives back.

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

/// A float primitive as a tensor of rank `D`.
pub fn float_tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}
