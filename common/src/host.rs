//! Tensor values on the host, for the CPU kernels that run on `f32` slices: borrow a CPU
//! (`Flex`) tensor's values without copying them, or take any tensor's values over.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;

/// A tensor's storage, as is where its values are contiguous, else a contiguous copy; read it
/// with [`f32_values`].
pub fn contiguous<const D: usize>(x: Tensor<Flex, D>) -> FlexTensor {
    let x = x.into_primitive().tensor();
    if x.as_slice::<f32>().is_some() {
        x
    } else {
        x.to_contiguous()
    }
}

/// The values of a tensor [`contiguous`] returned (the model is f32 throughout).
pub fn f32_values(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>()
        .expect("contiguous() made it contiguous; the model's tensors are f32")
}

/// A tensor's values as a vector (on the CPU backend its own buffer where nothing else holds
/// it, else a copy).
pub fn into_vec<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data()
        .convert::<f32>()
        .into_vec()
        .expect("converted to f32 just above")
}
