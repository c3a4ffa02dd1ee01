//! Gradients as plain per-parameter tensors, and AdamW with RWKV-LM's parameter groups.
//!
//! [`Gradients`] holds each parameter's gradient flattened, in [`Rwkv::named_params`] order, so
//! micro-batches add up, the global norm and clipping are one loop, and (later) the all-reduce
//! can pack them into buckets. [`AdamW`] is PyTorch's: β = (0.9, 0.99), eps 1e-18 by default,
//! decoupled weight decay only on 2-D `.weight` matrices, `att.w0` at twice the learning rate;
//! each parameter's update is one [`AdamWKernel`] operation.

use std::collections::HashMap;
use std::ops::Range;

use burn::module::{ModuleMapper, Param, ParamId};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::adamw::{AdamWKernel, Update, Updated};
use crate::model::rwkv::{ParamRef, Rwkv};

/// Every parameter's gradient, flattened, by RWKV-LM name (in the model's parameter order).
#[derive(Clone, Debug)]
pub struct Gradients<B: Backend> {
    /// (name, flattened gradient).
    pub tensors: Vec<(String, Tensor<B, 1>)>,
}

/// Where each parameter's gradient lies in the flat vector.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatLayout {
    /// (name, range in the flat vector), in parameter order.
    pub params: Vec<(String, Range<usize>)>,
}

impl FlatLayout {
    /// Values in all.
    pub fn len(&self) -> usize {
        self.params.last().map_or(0, |(_, r)| r.end)
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<B: Backend> Gradients<B> {
    /// Every gradient, concatenated in parameter order (what a collective averages), and where
    /// each one lies.
    pub fn flatten(&self) -> (Vec<f32>, FlatLayout) {
        let mut flat = Vec::new();
        let mut params = Vec::with_capacity(self.tensors.len());
        for (name, g) in &self.tensors {
            let start = flat.len();
            let values = g
                .clone()
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("converted to f32 just above");
            flat.extend_from_slice(&values);
            params.push((name.clone(), start..flat.len()));
        }
        (flat, FlatLayout { params })
    }

    /// The gradients back from a flat vector laid out as `layout`.
    pub fn unflatten(flat: &[f32], layout: &FlatLayout, device: &B::Device) -> Self {
        let tensors = layout
            .params
            .iter()
            .map(|(name, range)| {
                let values = flat[range.clone()].to_vec();
                let n = values.len();
                (
                    name.clone(),
                    Tensor::from_data(TensorData::new(values, [n]), device),
                )
            })
            .collect();
        Gradients { tensors }
    }
}

impl<B: Backend> Gradients<B> {
    /// Reads the gradients of `model` out of a backward pass; a parameter the loss did not reach
    /// gets zeros.
    pub fn from_backward<A: AutodiffBackend<InnerBackend = B>>(
        model: &Rwkv<A>,
        grads: &A::Gradients,
    ) -> Self {
        let tensors = model
            .named_params()
            .into_iter()
            .map(|(name, param)| {
                let flat = match param {
                    ParamRef::Vector(p) => {
                        let value = p.val();
                        p.val()
                            .grad(grads)
                            .unwrap_or_else(|| value.inner().zeros_like())
                    }
                    ParamRef::Matrix(p) => {
                        let value = p.val();
                        let n: usize = value.dims().iter().product();
                        p.val()
                            .grad(grads)
                            .unwrap_or_else(|| value.inner().zeros_like())
                            .reshape([n])
                    }
                };
                (name, flat)
            })
            .collect();
        Self { tensors }
    }

    /// Adds another micro-batch's gradients.
    pub fn accumulate(self, other: Self) -> Self {
        let tensors = self
            .tensors
            .into_iter()
            .zip(other.tensors)
            .map(|((name, a), (_, b))| (name, a + b))
            .collect();
        Self { tensors }
    }

    /// The sum of `all`, added up in order (`None` when there are none).
    pub fn sum(all: impl IntoIterator<Item = Self>) -> Option<Self> {
        all.into_iter().reduce(Self::accumulate)
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(self, factor: f64) -> Self {
        Self {
            tensors: self
                .tensors
                .into_iter()
                .map(|(name, g)| (name, g * factor))
                .collect(),
        }
    }
}

impl<B: AdamWKernel> Gradients<B> {
    /// The global L2 norm (NaN or infinite when a gradient is).
    pub fn global_norm(&self) -> f64 {
        self.tensors
            .iter()
            .map(|(_, g)| B::squared_sum(g))
            .sum::<f64>()
            .sqrt()
    }

    /// What clipping to a global norm of `max_norm` multiplies the gradients by (1 when they are
    /// within it), and the norm before clipping. AdamW applies the factor as it reads them.
    pub fn clip_factor(&self, max_norm: f64) -> (f64, f64) {
        let norm = self.global_norm();
        if norm.is_finite() && norm > max_norm {
            (max_norm / (norm + 1e-6), norm)
        } else {
            (1.0, norm)
        }
    }
}

/// AdamW's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay for 2-D `.weight` matrices.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-18,
            weight_decay: 0.1,
        }
    }
}

/// How a parameter is optimized.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Group {
    lr_scale: f64,
    weight_decay: bool,
}

/// AdamW's state: the step count and each parameter's moments.
pub struct AdamW<B: Backend> {
    /// Settings.
    pub config: AdamWConfig,
    /// Steps taken.
    pub step: u64,
    /// (first moment, second moment) by parameter name.
    pub moments: HashMap<String, (Tensor<B, 1>, Tensor<B, 1>)>,
}

impl<B: Backend> AdamW<B> {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            moments: HashMap::new(),
        }
    }
}

impl<B: AdamWKernel> AdamW<B> {
    /// Applies one update with learning rate `lr` to the gradients times `grad_scale` (clipping's
    /// factor, or 1) and returns the updated model.
    pub fn step<A: AutodiffBackend<InnerBackend = B>>(
        &mut self,
        model: Rwkv<A>,
        grads: &Gradients<B>,
        lr: f64,
        grad_scale: f64,
    ) -> Rwkv<A> {
        self.step += 1;
        let mut by_id: HashMap<ParamId, (String, Group)> = HashMap::new();
        for (name, param) in model.named_params() {
            let (id, matrix) = match param {
                ParamRef::Vector(p) => (p.id, false),
                ParamRef::Matrix(p) => (p.id, true),
            };
            let group = Group {
                lr_scale: if name.ends_with("att.w0") { 2.0 } else { 1.0 },
                weight_decay: matrix && name.ends_with(".weight"),
            };
            by_id.insert(id, (name, group));
        }
        let grads: HashMap<&str, &Tensor<B, 1>> =
            grads.tensors.iter().map(|(n, g)| (n.as_str(), g)).collect();
        let mut mapper = AdamWMapper {
            optimizer: self,
            by_id,
            grads,
            lr,
            grad_scale,
        };
        model.map(&mut mapper)
    }
}

struct AdamWMapper<'a, B: Backend> {
    optimizer: &'a mut AdamW<B>,
    by_id: HashMap<ParamId, (String, Group)>,
    grads: HashMap<&'a str, &'a Tensor<B, 1>>,
    lr: f64,
    grad_scale: f64,
}

impl<B: AdamWKernel, A: AutodiffBackend<InnerBackend = B>> ModuleMapper<A> for AdamWMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some((name, group)) = self.by_id.get(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let Some(&grad) = self.grads.get(name.as_str()) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = self.optimizer.config;
        let value = tensor.inner();
        let dims = value.dims();
        let n: usize = dims.iter().product();
        let flat = value.reshape([n]);
        let (m, v) = self
            .optimizer
            .moments
            .remove(name)
            .unwrap_or_else(|| (flat.zeros_like(), flat.zeros_like()));
        let lr = self.lr * group.lr_scale;
        let update = Update {
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            lr,
            decay: if group.weight_decay {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            },
            step: self.optimizer.step as i32,
            grad_scale: self.grad_scale,
        };
        let Updated { param, m, v } = B::adamw(flat, grad, m, v, update);
        self.optimizer.moments.insert(name.clone(), (m, v));
        let tensor = Tensor::<A, D>::from_inner(param.reshape(dims)).require_grad();
        Param::from_mapped_value(id, tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ModelConfig;
    use crate::model::init::init_rwkv;
    use burn::backend::{Autodiff, Flex};

    type A = Autodiff<Flex>;

    fn values(model: &Rwkv<A>, name: &str) -> Vec<f32> {
        let (_, p) = model
            .named_params()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap();
        match p {
            ParamRef::Vector(p) => p.val().into_data().to_vec().unwrap(),
            ParamRef::Matrix(p) => p.val().into_data().to_vec().unwrap(),
        }
    }

    #[test]
    fn one_step_follows_the_adamw_formula_per_group() {
        let config = ModelConfig::new(16, 1, 64).unwrap();
        let model = init_rwkv::<A>(&config, 3, &Default::default());
        let before = |n| values(&model, n);
        let (ln, w0, head, w1) = (
            before("blocks.0.ln1.weight"),
            before("blocks.0.att.w0"),
            before("head.weight"),
            before("blocks.0.att.w1"),
        );
        let grads = Gradients {
            tensors: model
                .named_params()
                .into_iter()
                .map(|(name, p)| {
                    let n = match p {
                        ParamRef::Vector(p) => p.val().dims()[0],
                        ParamRef::Matrix(p) => p.val().dims().iter().product(),
                    };
                    (name, Tensor::<Flex, 1>::full([n], 0.5, &Default::default()))
                })
                .collect(),
        };
        let mut adam = AdamW::new(AdamWConfig {
            weight_decay: 0.1,
            ..AdamWConfig::default()
        });
        let model = adam.step(model, &grads, 0.1, 1.0);
        // Step 1: m̂ = g and v̂ = g², so every update is lr · 1 (plus decay on .weight matrices).
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(
            values(&model, "blocks.0.ln1.weight")
                .iter()
                .zip(&ln)
                .all(|(&a, &b)| close(a, b - 0.1))
        );
        assert!(
            values(&model, "blocks.0.att.w0")
                .iter()
                .zip(&w0)
                .all(|(&a, &b)| close(a, b - 0.2))
        );
        assert!(
            values(&model, "head.weight")
                .iter()
                .zip(&head)
                .all(|(&a, &b)| close(a, b * (1.0 - 0.01) - 0.1))
        );
        assert!(
            values(&model, "blocks.0.att.w1")
                .iter()
                .zip(&w1)
                .all(|(&a, &b)| close(a, b - 0.1))
        );
        assert_eq!(adam.step, 1);
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let device = Default::default();
        let grads = Gradients::<Flex> {
            tensors: vec![
                (
                    "a".into(),
                    Tensor::from_data(TensorData::new(vec![3.0f32, 0.0], [2]), &device),
                ),
                (
                    "b".into(),
                    Tensor::from_data(TensorData::new(vec![4.0f32], [1]), &device),
                ),
            ],
        };
        assert!((grads.global_norm() - 5.0).abs() < 1e-9);
        let (factor, before) = grads.clip_factor(1.0);
        assert!((before - 5.0).abs() < 1e-9);
        assert!((grads.scale(factor).global_norm() - 1.0).abs() < 1e-5);
        let (factor, _) = Gradients::<Flex> { tensors: vec![] }.clip_factor(1.0);
        assert_eq!(factor, 1.0);
    }

    #[test]
    fn flatten_and_unflatten_round_trip() {
        let device = Default::default();
        let grads = Gradients::<Flex> {
            tensors: vec![
                ("a".into(), Tensor::from_floats([1.0, 2.0, 3.0], &device)),
                ("b".into(), Tensor::from_floats([4.0, 5.0], &device)),
            ],
        };
        let (flat, layout) = grads.flatten();
        assert_eq!(flat, [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(layout.params[1], ("b".to_string(), 3..5));
        let back = Gradients::<Flex>::unflatten(&flat, &layout, &device);
        let (name, values) = &back.tensors[1];
        assert_eq!(name, "b");
        assert_eq!(
            values.clone().into_data().to_vec::<f32>().unwrap(),
            [4.0, 5.0]
        );
    }
}
