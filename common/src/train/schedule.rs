//! The learning-rate schedule: linear warmup from 0, then cosine decay to `min_lr`.

/// Warmup then cosine, over `total` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Peak learning rate (reached at the end of warmup).
    pub lr: f64,
    /// Learning rate at the last step.
    pub min_lr: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Total steps.
    pub total: u64,
}

impl Schedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let s = Schedule {
            lr: 6e-4,
            min_lr: 6e-5,
            warmup: 10,
            total: 110,
        };
        assert!((s.lr_at(0) - 6e-5).abs() < 1e-12);
        assert!((s.lr_at(9) - 6e-4).abs() < 1e-12);
        assert!((s.lr_at(10) - 6e-4).abs() < 1e-12);
        assert!((s.lr_at(60) - (6e-5 + 0.5 * 5.4e-4)).abs() < 1e-12);
        assert!((s.lr_at(110) - 6e-5).abs() < 1e-12);
        assert!((s.lr_at(500) - 6e-5).abs() < 1e-12);
    }
}
