//! RWKV-7 (x070) model shapes: the named sizes, the LoRA dimensions and the parameter count of
//! docs/model.md.

use super::ModelError;
use serde::{Deserialize, Serialize};

/// The head size N of RWKV-7: every head is N × N.
pub const HEAD_SIZE: usize = 64;

/// The shape of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Layers L.
    pub layers: usize,
    /// Embedding width C (a multiple of the head size).
    pub embd: usize,
}

/// The LoRA widths of one size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraDims {
    /// Decay (w) LoRA width.
    pub w: usize,
    /// In-context learning rate (a) LoRA width.
    pub a: usize,
    /// Value-residual (v) LoRA width.
    pub v: usize,
    /// Gate (g) LoRA width.
    pub g: usize,
}

impl ModelConfig {
    /// A named size for `vocab` tokens: `micro` (L8 C128), `mini` (L16 C192), `85m` (L12 C576).
    pub fn named(name: &str, vocab: usize) -> Result<Self, ModelError> {
        let (layers, embd) = match name {
            "micro" => (8, 128),
            "mini" => (16, 192),
            "85m" => (12, 576),
            other => {
                return Err(ModelError::Shape(format!(
                    "unknown model size {other:?}: use micro, mini or 85m"
                )));
            }
        };
        Self::new(vocab, layers, embd)
    }

    /// A custom shape; `embd` must be a positive multiple of the head size (64).
    pub fn new(vocab: usize, layers: usize, embd: usize) -> Result<Self, ModelError> {
        if embd == 0 || !embd.is_multiple_of(HEAD_SIZE) {
            return Err(ModelError::Shape(format!(
                "--embd {embd} must be a positive multiple of the head size {HEAD_SIZE}"
            )));
        }
        if layers == 0 || vocab == 0 {
            return Err(ModelError::Shape(
                "a model needs at least one layer and one token".into(),
            ));
        }
        Ok(Self {
            vocab,
            layers,
            embd,
        })
    }

    /// Heads H = C / 64.
    pub fn heads(&self) -> usize {
        self.embd / HEAD_SIZE
    }

    /// LoRA widths: w = a = max(32, round(2.5√C/32)·32), v = max(32, round(1.7√C/32)·32),
    /// g = max(32, round(5√C/32)·32), with Python's rounding (half to even).
    pub fn lora(&self) -> LoraDims {
        let width = |factor: f64| {
            let units = (factor * (self.embd as f64).sqrt() / 32.0).round_ties_even() as usize;
            (units * 32).max(32)
        };
        LoraDims {
            w: width(2.5),
            a: width(2.5),
            v: width(1.7),
            g: width(5.0),
        }
    }

    /// The hidden width of the channel mix, 4C.
    pub fn ffn_hidden(&self) -> usize {
        4 * self.embd
    }

    /// P = 2VC + 4C + L(19C + 12C² + 2C(Dw + Da + Dv + Dg)).
    pub fn parameter_count(&self) -> usize {
        let (v, c, l) = (self.vocab, self.embd, self.layers);
        let d = self.lora();
        2 * v * c + 4 * c + l * (19 * c + 12 * c * c + 2 * c * (d.w + d.a + d.v + d.g))
    }

    /// The shape in words: "4 layers × 128, vocabulary 512, 0.35M parameters".
    pub fn describe(&self) -> String {
        format!(
            "{} layers × {}, vocabulary {}, {:.2}M parameters",
            self.layers,
            self.embd,
            self.vocab,
            self.parameter_count() as f64 / 1e6
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sizes_have_the_design_parameter_counts() {
        let count = |name| ModelConfig::named(name, 32_000).unwrap().parameter_count();
        assert_eq!(count("micro"), 10_112_512);
        assert_eq!(count("mini"), 20_408_064);
        assert_eq!(count("85m"), 88_754_688);
    }

    #[test]
    fn lora_widths_round_half_to_even() {
        let tiny = ModelConfig::new(300, 2, 128).unwrap();
        assert_eq!(
            tiny.lora(),
            LoraDims {
                w: 32,
                a: 32,
                v: 32,
                g: 64
            }
        );
        assert_eq!(
            ModelConfig::new(300, 2, 576).unwrap().lora(),
            LoraDims {
                w: 64,
                a: 64,
                v: 32,
                g: 128
            }
        );
        assert!(
            ModelConfig::new(300, 2, 100)
                .unwrap_err()
                .to_string()
                .contains("multiple of the head size")
        );
        assert!(ModelConfig::named("huge", 300).is_err());
    }
}
