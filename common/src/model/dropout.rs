//! Dropout on the residual branches (docs/model.md): in training, each element of every block's
//! time-mix and channel-mix output is kept with probability 1 − rate and scaled by
//! 1 / (1 − rate), or zeroed. Evaluation and generation never drop.
//!
//! The masks are a function of a seed alone (a hash per element), and the trainer derives that
//! seed from (run seed, step, rank, micro-batch): a run is reproducible, resumes identically, and
//! a cluster run drops exactly what `--emulate-world` drops for the same micro-batch.

use burn::prelude::*;

use crate::hashing::splitmix64;

/// The dropout of one forward pass: a rate and the seed of its masks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in [0, 1).
    pub rate: f64,
    /// Seed of the masks.
    pub seed: u64,
    /// Where the pass's first window stands in its micro-batch (a micro-batch run in parts
    /// drops exactly what it drops run whole).
    pub first_window: usize,
}

impl Dropout {
    /// No dropout (evaluation, generation, or a rate of 0).
    pub const NONE: Self = Self {
        rate: 0.0,
        seed: 0,
        first_window: 0,
    };

    /// The dropout of rank `rank`'s micro-batches in step `step` of a run seeded `seed`.
    pub fn for_step(rate: f64, seed: u64, step: u64, rank: u32) -> Self {
        let seed = splitmix64(splitmix64(seed ^ 0xD809_0C7A_11E5_0001) ^ step);
        Self {
            rate,
            seed: splitmix64(seed ^ u64::from(rank).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            first_window: 0,
        }
    }

    /// The dropout of micro-batch `micro` of this step and rank.
    pub fn for_micro(self, micro: usize) -> Self {
        Self {
            rate: self.rate,
            seed: splitmix64(self.seed ^ (micro as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)),
            first_window: 0,
        }
    }

    /// The dropout of the part of this micro-batch that starts at window `first_window`.
    pub fn from_window(self, first_window: usize) -> Self {
        Self {
            first_window,
            ..self
        }
    }

    /// `x` `[B, T, C]` (branch `branch` of block `layer`) with its mask applied.
    pub fn apply<B: Backend>(&self, x: Tensor<B, 3>, layer: usize, branch: u64) -> Tensor<B, 3> {
        if self.rate <= 0.0 {
            return x;
        }
        let (dims, device) = (x.dims(), x.device());
        let first = (self.first_window * dims[1] * dims[2]) as u64;
        let mask = self.mask(layer, branch, first, dims.iter().product());
        x * Tensor::<B, 3>::from_data(TensorData::new(mask, dims), &device)
    }

    /// The mask of elements `first..first + n` of the micro-batch: 1 / (1 − rate) where kept, 0
    /// where dropped.
    fn mask(&self, layer: usize, branch: u64, first: u64, n: usize) -> Vec<f32> {
        let base = splitmix64(self.seed ^ ((layer as u64) << 8 | branch));
        // Keep when the element's hash falls at or above rate · 2^64.
        let threshold = (self.rate * 2f64.powi(64)) as u64;
        let keep = (1.0 / (1.0 - self.rate)) as f32;
        (first..first + n as u64)
            .map(|i| {
                if splitmix64(base.wrapping_add(i)) >= threshold {
                    keep
                } else {
                    0.0
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn masks_keep_the_share_scale_and_depend_on_the_seed_alone() {
        let drop = Dropout::for_step(0.25, 1, 7, 0).for_micro(2);
        let mask = drop.mask(3, 1, 0, 100_000);
        let kept = mask.iter().filter(|&&m| m > 0.0).count();
        assert!((74_000..76_000).contains(&kept), "{kept}");
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0 / 0.75));
        assert_eq!(
            mask,
            Dropout::for_step(0.25, 1, 7, 0)
                .for_micro(2)
                .mask(3, 1, 0, 100_000)
        );
        for other in [
            Dropout::for_step(0.25, 1, 7, 1).for_micro(2),
            Dropout::for_step(0.25, 1, 8, 0).for_micro(2),
            Dropout::for_step(0.25, 1, 7, 0).for_micro(3),
        ] {
            assert_ne!(mask, other.mask(3, 1, 0, 100_000));
        }
        assert_ne!(mask, drop.mask(3, 0, 0, 100_000));
        let x = Tensor::<Flex, 3>::ones([2, 3, 4], &Default::default());
        let same: Vec<f32> = Dropout::NONE
            .apply(x.clone(), 0, 0)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(same, vec![1.0; 24]);
        let dropped: Vec<f32> = drop.apply(x.clone(), 0, 0).into_data().to_vec().unwrap();
        assert_eq!(dropped, drop.mask(0, 0, 0, 24));
        // The second window on its own is dropped as it is within the whole.
        let second: Vec<f32> = drop
            .from_window(1)
            .apply(x.slice([1..2, 0..3, 0..4]), 0, 0)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(second, dropped[12..]);
    }
}
