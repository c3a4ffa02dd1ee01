//! One optimizer step, top to bottom: micro-batches forward and backward, gradients summed and
//! averaged, the divergence guard, clipping at global norm 1.0, and AdamW.

use super::TrainError;
use std::sync::OnceLock;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::backend::{TrainBackend, TrainKernels};
use super::optimizer::{AdamW, Gradients};
use crate::model::config::ModelConfig;
use crate::model::dropout::Dropout;
use crate::model::loss::{L2WRAP, window_tensors};
use crate::model::rwkv::{Rwkv, zero_state};

/// Gradients are clipped to this global norm.
pub const CLIP_NORM: f64 = 1.0;

/// The error for a non-finite loss or gradient norm at `step` (1-based), naming its likely cause:
/// at step 1 no update has been made yet, so the weights or data are at fault, not the learning
/// rate.
fn not_finite(step: u64, what: &str, value: f64) -> String {
    if step == 1 {
        format!(
            "step 1: the {what} is {value} before any update: the starting weights (--init-from) \
             hold non-finite or huge values, or the model overflows on this data"
        )
    } else {
        format!(
            "step {step}: the {what} is {value}; training diverged (lower --lr or resume from an \
             earlier checkpoint)"
        )
    }
}

/// The first half of a step: forward (with `dropout`, its masks drawn per micro-batch), loss and
/// backward over each micro-batch, the gradients summed and averaged. Returns them with the mean
/// loss; a non-finite loss names `step`. A data-parallel worker all-reduces these gradients
/// before [`apply_step`].
pub fn step_gradients<A: TrainBackend>(
    model: &Rwkv<A>,
    config: &ModelConfig,
    step: u64,
    micro_batches: &[Vec<Vec<u16>>],
    dropout: Dropout,
    device: &A::Device,
) -> Result<(Gradients<A::InnerBackend>, f64), TrainError> {
    let mut all = Vec::with_capacity(micro_batches.len());
    let mut loss_sum = 0.0;
    for (micro, windows) in micro_batches.iter().enumerate() {
        let (grads, loss) =
            micro_batch_gradients(model, config, windows, dropout.for_micro(micro), device);
        if !loss.is_finite() {
            return Err(TrainError::Diverged(not_finite(step, "loss", loss)));
        }
        loss_sum += loss;
        all.push(grads);
    }
    let n = micro_batches.len() as f64;
    let grads = Gradients::sum(all)
        .ok_or_else(|| TrainError::Run("a step needs at least one micro-batch".into()))?;
    // One micro-batch needs no averaging (a pass over every gradient saved).
    let grads = if n > 1.0 { grads.scale(1.0 / n) } else { grads };
    Ok((grads, loss_sum / n))
}

/// One micro-batch's mean loss and its gradients. Its windows are split into up to
/// [`TrainKernels::PARTS`] consecutive parts, each on its own autodiff graph (the first on
/// `model`, the others on [`Replica`]s of it), which run concurrently when the process has a
/// rayon thread for each. Each part's loss is weighted by its share of the windows before its
/// backward, and the parts' gradients are summed in order, so the result depends on the part
/// count, which is fixed per backend, and not on threads or timing.
fn micro_batch_gradients<A: TrainBackend>(
    model: &Rwkv<A>,
    config: &ModelConfig,
    windows: &[Vec<u16>],
    dropout: Dropout,
    device: &A::Device,
) -> (Gradients<A::InnerBackend>, f64) {
    let per_part = windows.len().div_ceil(A::InnerBackend::PARTS.max(1)).max(1);
    let parts = windows.len().div_ceil(per_part);
    let run_part = |index: usize| {
        let first = index * per_part;
        let part = &windows[first..(first + per_part).min(windows.len())];
        let replica;
        let model = if index == 0 {
            model
        } else {
            replica = model.clone().map(&mut Replica);
            &replica
        };
        let (input, target) = window_tensors::<A>(part, device);
        let mut state = zero_state(config, part.len(), device);
        let loss = model.loss(
            input,
            target,
            &mut state,
            dropout.from_window(first),
            L2WRAP,
        );
        let value = loss
            .clone()
            .into_data()
            .to_vec::<f32>()
            .map_or(f32::NAN, |v| v[0]);
        // The share scales only what the loss's backward starts from, not every gradient.
        let share = part.len() as f64 / windows.len() as f64;
        let weighted = if parts == 1 { loss } else { loss * share };
        let grads = Gradients::from_backward(model, &weighted.backward());
        (grads, f64::from(value) * share)
    };
    // One part, or fewer threads than parts (a worker given one thread): the parts run one after
    // another, since side by side they would take more cores than the process was given.
    if parts == 1 || rayon::current_num_threads() < parts {
        return sum_parts((0..parts).map(run_part).collect());
    }
    // Each part runs on a rayon pool of its own, so that what its operations hand to rayon
    // (GEMMs, the kernels' blocks, Burn's own) runs on its share of the cores: on one shared pool
    // a part's small operation waited behind the other part's long ones. The parts are not rayon
    // tasks of one pool either: Burn's autodiff locks a graph for its whole backward and, when a
    // backward ends, locks every graph in turn; a worker that stole another part while waiting
    // inside a locked backward would wait on its own lock.
    let pools = part_pools(A::InnerBackend::PARTS);
    let run = |index: usize| match pools.and_then(|pools| pools.get(index)) {
        Some(pool) => pool.install(|| run_part(index)),
        None => run_part(index),
    };
    let results = std::thread::scope(|scope| {
        let others: Vec<_> = (1..parts)
            .map(|index| scope.spawn(move || run(index)))
            .collect();
        let first = run(0);
        std::iter::once(first)
            .chain(others.into_iter().map(|handle| match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }))
            .collect()
    });
    sum_parts(results)
}

/// The parts' gradients summed in part order, and the micro-batch's loss.
fn sum_parts<B: TrainKernels>(results: Vec<(Gradients<B>, f64)>) -> (Gradients<B>, f64) {
    let loss = results.iter().map(|(_, part_loss)| part_loss).sum();
    let grads = Gradients::sum(results.into_iter().map(|(grads, _)| grads))
        .expect("a micro-batch has at least one window, so one part");
    (grads, loss)
}

/// The rayon pools the parts of a micro-batch run on, `count` of them sharing the global pool's
/// threads, made on first use (the count is fixed per backend). None where a pool could not be
/// made, or for a larger count than the first: the parts then run on the global pool.
fn part_pools(count: usize) -> Option<&'static [rayon::ThreadPool]> {
    static POOLS: OnceLock<Option<Vec<rayon::ThreadPool>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        let threads = (rayon::current_num_threads() / count.max(1)).max(1);
        (0..count)
            .map(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .ok()
            })
            .collect()
    });
    pools.as_deref().filter(|pools| pools.len() >= count)
}

/// Maps a model to the same weights (shared, not copied) as fresh autodiff leaves, so that a
/// part of a micro-batch records its own graph and can run beside the others.
struct Replica;

impl<A: AutodiffBackend> ModuleMapper<A> for Replica {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
        Param::from_tensor(Tensor::from_inner(param.val().inner()).require_grad())
    }
}

/// The second half of a step: the divergence guard on the gradient norm, clipping at
/// [`CLIP_NORM`], and AdamW at `lr`. Returns the updated model and the gradient norm before
/// clipping.
pub fn apply_step<A: TrainBackend>(
    model: Rwkv<A>,
    optimizer: &mut AdamW<A::InnerBackend>,
    grads: Gradients<A::InnerBackend>,
    lr: f64,
) -> Result<(Rwkv<A>, f64), TrainError> {
    let step = optimizer.step + 1;
    if !(lr.is_finite() && lr > 0.0) {
        return Err(TrainError::Diverged(format!(
            "step {step}: the learning rate is {lr}; it must be a positive finite number (check \
             --lr and --min-lr)"
        )));
    }
    let (clip_factor, grad_norm) = grads.clip_factor(CLIP_NORM);
    if !grad_norm.is_finite() {
        return Err(TrainError::Diverged(not_finite(
            step,
            "gradient norm",
            grad_norm,
        )));
    }
    Ok((optimizer.step(model, &grads, lr, clip_factor), grad_norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::init_rwkv;
    use crate::train::optimizer::AdamWConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;

    type A = Autodiff<Flex>;

    /// One optimizer step over `micro` without dropout: the model, its loss and gradient norm.
    fn train_step<T: TrainBackend>(
        model: Rwkv<T>,
        config: &ModelConfig,
        optimizer: &mut AdamW<T::InnerBackend>,
        micro: &[Vec<Vec<u16>>],
        lr: f64,
        device: &T::Device,
    ) -> Result<(Rwkv<T>, f64, f64), TrainError> {
        let step = optimizer.step + 1;
        let (grads, loss) = step_gradients(&model, config, step, micro, Dropout::NONE, device)?;
        let (model, grad_norm) = apply_step(model, optimizer, grads, lr)?;
        Ok((model, loss, grad_norm))
    }

    #[test]
    fn a_repeating_pattern_is_learned() {
        let device = Default::default();
        let config = ModelConfig::new(16, 2, 64).unwrap();
        let mut model = init_rwkv::<A>(&config, 11, &device);
        let mut adam = AdamW::new(AdamWConfig::default());
        let pattern = [3u16, 1, 4, 1, 5, 9, 2, 6];
        let window = |offset: usize| {
            (0..17)
                .map(|i| pattern[(i + offset) % 8])
                .collect::<Vec<u16>>()
        };
        let micro = vec![vec![window(0), window(3)], vec![window(5), window(6)]];
        let mut losses = Vec::new();
        for _ in 0..40 {
            let (next, loss, grad_norm) =
                train_step(model, &config, &mut adam, &micro, 1e-2, &device).unwrap();
            model = next;
            assert!(grad_norm.is_finite());
            losses.push(loss);
        }
        assert!(
            losses[0] > 2.0,
            "an untrained model is near uniform over 16 tokens: {}",
            losses[0]
        );
        assert!(losses[39] < 0.5, "loss after 40 steps: {:?}", &losses[35..]);
    }

    #[test]
    fn a_diverged_step_names_the_step() {
        let device = Default::default();
        let config = ModelConfig::new(16, 1, 64).unwrap();
        let model = init_rwkv::<A>(&config, 1, &device);
        let mut adam = AdamW::new(AdamWConfig::default());
        adam.step = 42;
        // Poison the weights: the loss becomes NaN.
        let poisoned = model.map(&mut Poison);
        let micro = vec![vec![(0..17).map(|i| (i % 16) as u16).collect::<Vec<u16>>()]];
        let err = train_step(poisoned, &config, &mut adam, &micro, 1e-3, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("step 43: the loss is NaN"), "{err}");
    }

    /// A fresh model (seeded `seed`) after one step on `micro` at lr 1e-2.
    fn first_step<T: TrainBackend>(
        config: &ModelConfig,
        seed: u64,
        micro: &[Vec<Vec<u16>>],
    ) -> (Rwkv<T>, f64, f64) {
        let device = Default::default();
        let model = init_rwkv::<T>(config, seed, &device);
        let mut adam = AdamW::new(AdamWConfig::default());
        train_step(model, config, &mut adam, micro, 1e-2, &device).unwrap()
    }

    #[test]
    fn activation_checkpointing_gives_the_same_step() {
        use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
        type Balanced = Autodiff<Flex, BalancedCheckpointing>;
        let config = ModelConfig::new(16, 2, 64).unwrap();
        let micro = vec![vec![
            (0..33).map(|i| ((i * 5) % 16) as u16).collect::<Vec<u16>>(),
        ]];
        let (plain, plain_loss, plain_norm) = first_step::<A>(&config, 3, &micro);
        let (balanced, loss, norm) = first_step::<Balanced>(&config, 3, &micro);
        assert_eq!(loss, plain_loss);
        assert_eq!(norm, plain_norm);
        // Every parameter, bit for bit.
        fn values<B: burn::tensor::backend::Backend>(model: &Rwkv<B>) -> Vec<(String, Vec<f32>)> {
            use crate::model::rwkv::ParamRef;
            model
                .named_params()
                .into_iter()
                .map(|(name, p)| {
                    let data = match p {
                        ParamRef::Vector(p) => p.val().into_data(),
                        ParamRef::Matrix(p) => p.val().into_data(),
                    };
                    (name, data.to_vec::<f32>().unwrap())
                })
                .collect()
        }
        assert_eq!(values(&plain), values(&balanced));
    }

    #[test]
    fn dropout_changes_the_step_the_same_way_every_time() {
        let device = Default::default();
        let config = ModelConfig::new(16, 2, 64).unwrap();
        let micro = vec![vec![
            (0..33).map(|i| ((i * 3) % 16) as u16).collect::<Vec<u16>>(),
        ]];
        // At init the branches' output matrices are zero: one step makes them drop something.
        let (model, _, _) = first_step::<A>(&config, 5, &micro);
        let loss = |dropout| {
            step_gradients(&model, &config, 1, &micro, dropout, &device)
                .unwrap()
                .1
        };
        let plain = loss(Dropout::NONE);
        let dropped = loss(Dropout::for_step(0.3, 1, 0, 0));
        assert_ne!(plain, dropped);
        assert_eq!(dropped, loss(Dropout::for_step(0.3, 1, 0, 0)));
        assert_ne!(dropped, loss(Dropout::for_step(0.3, 1, 0, 1)));
        assert_eq!(plain, loss(Dropout::for_step(0.0, 1, 0, 0)));
    }

    #[test]
    fn a_micro_batch_in_parts_matches_it_whole() {
        // Three windows: parts of two and one, so the weighting by share is tested too.
        assert_eq!(<Flex as TrainKernels>::PARTS, 2);
        let device = Default::default();
        let config = ModelConfig::new(16, 2, 64).unwrap();
        let (model, _, _) = first_step::<A>(
            &config,
            9,
            &[vec![(0..33).map(|i| (i % 16) as u16).collect()]],
        );
        let windows: Vec<Vec<u16>> = (0..3)
            .map(|w| (0..33).map(|i| ((i * 7 + w * 5) % 16) as u16).collect())
            .collect();
        for dropout in [Dropout::NONE, Dropout::for_step(0.2, 4, 1, 0)] {
            let (parts, parts_loss) =
                micro_batch_gradients(&model, &config, &windows, dropout, &device);
            let (input, target) = window_tensors::<A>(&windows, &device);
            let mut state = zero_state(&config, 3, &device);
            let loss = model.loss(input, target, &mut state, dropout, L2WRAP);
            let whole_loss = f64::from(loss.clone().into_data().to_vec::<f32>().unwrap()[0]);
            let whole = Gradients::from_backward(&model, &loss.backward());
            assert!(
                (parts_loss - whole_loss).abs() < 1e-6 * whole_loss,
                "{parts_loss} vs {whole_loss}"
            );
            for ((name, a), (_, b)) in parts.tensors.iter().zip(&whole.tensors) {
                let (a, b): (Vec<f32>, Vec<f32>) = (
                    a.clone().into_data().to_vec().unwrap(),
                    b.clone().into_data().to_vec().unwrap(),
                );
                let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() <= 1e-5 * scale, "{name}: {x} vs {y}");
                }
            }
        }
    }

    struct Poison;
    impl burn::module::ModuleMapper<A> for Poison {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<burn::tensor::Tensor<A, D>>,
        ) -> burn::module::Param<burn::tensor::Tensor<A, D>> {
            let (id, tensor, mapper) = param.consume();
            burn::module::Param::from_mapped_value(id, tensor * f32::NAN, mapper)
        }
    }
}
