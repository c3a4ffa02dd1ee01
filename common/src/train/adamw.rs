//! One AdamW update of one flattened parameter, as one operation: on the CPU a single pass over
//! the parameter, its gradient and its two moments in place; elsewhere tensor ops (a dozen
//! passes, each with a fresh buffer, which on the CPU cost more than the step's matrix
//! products for the embedding and head).

use burn::backend::Flex;
use burn::prelude::*;
use rayon::prelude::*;

use crate::host::{contiguous, f32_values, into_vec};

/// Everything an update needs besides the tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// This parameter's learning rate.
    pub lr: f64,
    /// What the weights are multiplied by before the step: `1 − lr · weight decay`, or 1.
    pub decay: f64,
    /// The step number t, from 1 (the bias corrections are `1 − β^t`).
    pub step: i32,
    /// What the gradient is multiplied by first: clipping's factor, or 1.
    pub grad_scale: f64,
}

impl Update {
    /// `1 − β1^t` and `1 − β2^t`.
    fn bias_corrections(&self) -> (f64, f64) {
        (
            1.0 - self.beta1.powi(self.step),
            1.0 - self.beta2.powi(self.step),
        )
    }
}

/// A parameter after its update, with its moments.
#[derive(Clone, Debug)]
pub struct Updated<B: Backend> {
    /// The parameter.
    pub param: Tensor<B, 1>,
    /// First moment.
    pub m: Tensor<B, 1>,
    /// Second moment.
    pub v: Tensor<B, 1>,
}

/// AdamW's update on a plain backend, and the sums of squares clipping needs; the provided
/// methods are the tensor-op form.
pub trait AdamWKernel: Backend {
    /// `Σ x²`, accumulated in f64 where the backend can (NaN or infinite when an element is).
    fn squared_sum(x: &Tensor<Self, 1>) -> f64 {
        let sum = (x.clone() * x.clone()).sum().into_data().to_vec::<f32>();
        sum.map_or(f64::NAN, |v| f64::from(v[0]))
    }

    /// With `g` the gradient times `grad_scale`: `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
    /// `param ← decay · param − lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε)`.
    fn adamw(
        param: Tensor<Self, 1>,
        grad: &Tensor<Self, 1>,
        m: Tensor<Self, 1>,
        v: Tensor<Self, 1>,
        u: Update,
    ) -> Updated<Self> {
        tensor_ops(param, grad, m, v, u)
    }
}

/// [`AdamWKernel::adamw`] in tensor ops, on any backend.
pub fn tensor_ops<B: Backend>(
    param: Tensor<B, 1>,
    grad: &Tensor<B, 1>,
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
    u: Update,
) -> Updated<B> {
    let grad = if u.grad_scale == 1.0 {
        grad.clone()
    } else {
        grad.clone() * u.grad_scale
    };
    let m = m * u.beta1 + grad.clone() * (1.0 - u.beta1);
    let v = v * u.beta2 + grad.clone().powi_scalar(2) * (1.0 - u.beta2);
    let (bias1, bias2) = u.bias_corrections();
    let m_hat = m.clone() / bias1;
    let v_hat = v.clone() / bias2;
    let param = param * u.decay - m_hat / (v_hat.sqrt() + u.eps) * u.lr;
    Updated { param, m, v }
}

/// Elements per parallel task.
const TASK: usize = 1 << 14;

impl AdamWKernel for Flex {
    fn squared_sum(x: &Tensor<Self, 1>) -> f64 {
        let x = contiguous(x.clone());
        let partial: Vec<f64> = f32_values(&x)
            .par_chunks(TASK)
            .map(|chunk| chunk.iter().map(|&x| f64::from(x) * f64::from(x)).sum())
            .collect();
        // Summed in chunk order: the same value on any number of threads.
        partial.iter().sum()
    }

    fn adamw(
        param: Tensor<Self, 1>,
        grad: &Tensor<Self, 1>,
        m: Tensor<Self, 1>,
        v: Tensor<Self, 1>,
        u: Update,
    ) -> Updated<Self> {
        let device = param.device();
        let n = param.dims()[0];
        let grad = contiguous(grad.clone());
        let (mut p, mut m, mut v) = (into_vec(param), into_vec(m), into_vec(v));
        let (bias1, bias2) = u.bias_corrections();
        let [beta1, beta2, eps, lr, decay, bias1, bias2, scale] = [
            u.beta1,
            u.beta2,
            u.eps,
            u.lr,
            u.decay,
            bias1,
            bias2,
            u.grad_scale,
        ]
        .map(|x| x as f32);
        let (keep1, keep2) = ((1.0 - u.beta1) as f32, (1.0 - u.beta2) as f32);
        p.par_chunks_mut(TASK)
            .zip(m.par_chunks_mut(TASK))
            .zip(v.par_chunks_mut(TASK))
            .zip(f32_values(&grad).par_chunks(TASK))
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    let g = g * scale;
                    *m = *m * beta1 + g * keep1;
                    *v = *v * beta2 + g * g * keep2;
                    *p = *p * decay - *m / bias1 / ((*v / bias2).sqrt() + eps) * lr;
                }
            });
        let tensor = |x: Vec<f32>| Tensor::from_data(TensorData::new(x, [n]), &device);
        Updated {
            param: tensor(p),
            m: tensor(m),
            v: tensor(v),
        }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl<R: burn_cubecl::CubeRuntime, BT: burn_cubecl::BoolElement> AdamWKernel
    for burn_cubecl::CubeBackend<R, f32, i32, BT>
{
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values(x: &Tensor<Flex, 1>) -> Vec<f32> {
        x.clone().into_data().to_vec().unwrap()
    }

    #[test]
    fn the_cpu_pass_matches_the_tensor_op_form() {
        let device = Default::default();
        Flex::seed(&device, 4);
        // Not a multiple of the task size: a partial last task.
        let n = 3 * TASK + 77;
        let random =
            |scale: f64| Tensor::<Flex, 1>::random([n], Distribution::Normal(0.0, scale), &device);
        for decay in [1.0, 1.0 - 1e-3 * 0.1] {
            let (mut ours, mut reference) = (
                Updated {
                    param: random(1.0),
                    m: random(0.0),
                    v: random(0.0),
                },
                Updated {
                    param: random(1.0),
                    m: random(0.0),
                    v: random(0.0),
                },
            );
            reference.param = ours.param.clone();
            let start = values(&ours.param);
            for t in 1..=3 {
                let grad = random(0.1);
                let u = Update {
                    beta1: 0.9,
                    beta2: 0.99,
                    eps: 1e-18,
                    lr: 1e-3,
                    decay,
                    step: t,
                    // Clipping's factor on one of the steps.
                    grad_scale: if t == 2 { 0.25 } else { 1.0 },
                };
                ours = Flex::adamw(ours.param, &grad, ours.m, ours.v, u);
                reference = tensor_ops(reference.param, &grad, reference.m, reference.v, u);
            }
            for (what, a, b) in [
                ("param", &ours.param, &reference.param),
                ("m", &ours.m, &reference.m),
                ("v", &ours.v, &reference.v),
            ] {
                for (i, (x, y)) in values(a).iter().zip(values(b)).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-6 * y.abs().max(1e-3),
                        "{what}[{i}]: {x} vs {y}"
                    );
                }
            }
            // The parameter moved, and the tensor the first step was given was left alone.
            assert_ne!(values(&ours.param), start);
        }
    }

    #[test]
    fn a_tensor_still_held_elsewhere_is_not_changed() {
        let device = Default::default();
        let param = Tensor::<Flex, 1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
        let grad = Tensor::<Flex, 1>::from_data(TensorData::new(vec![0.5f32, -0.5], [2]), &device);
        let zeros = || Tensor::<Flex, 1>::zeros([2], &device);
        let u = Update {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-18,
            lr: 0.1,
            decay: 1.0,
            step: 1,
            grad_scale: 1.0,
        };
        let updated = Flex::adamw(param.clone(), &grad, zeros(), zeros(), u);
        assert_eq!(values(&param), [1.0, 2.0]);
        // Step 1: m̂ = g and v̂ = g², so each weight moves by lr against its gradient's sign.
        let moved = values(&updated.param);
        assert!(
            (moved[0] - 0.9).abs() < 1e-6 && (moved[1] - 2.1).abs() < 1e-6,
            "{moved:?}"
        );
    }

    #[test]
    fn the_cpu_sum_of_squares_matches_the_tensor_op_form() {
        let device = Default::default();
        Flex::seed(&device, 4);
        // More elements than one task.
        let x = Tensor::<Flex, 1>::random([40_000], Distribution::Uniform(-2.0, 2.0), &device);
        let reference = f64::from((x.clone() * x.clone()).sum().into_scalar());
        let ours = Flex::squared_sum(&x);
        assert!(
            (ours - reference).abs() <= 1e-5 * reference,
            "{ours} vs {reference}"
        );
        let mut values = x.into_data().to_vec::<f32>().unwrap();
        values[7] = f32::NAN;
        let nan = Tensor::<Flex, 1>::from_data(TensorData::new(values, [40_000]), &device);
        assert!(Flex::squared_sum(&nan).is_nan());
    }
}
