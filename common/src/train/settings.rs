//! The run settings, declared once: [`RunConfig`] (what a run stores in its checkpoints and reads
//! from run.toml) and [`RunFlags`] (the `train` flags) come from the same list, so every setting
//! has its flag, its run.toml key (the flag's name with underscores), its default and one help
//! text. Flags override run.toml, which overrides the defaults ([`RunFlags::apply`]).

use super::TrainError;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collective::bucket::WireDtype;

/// Warmup steps when none are set (fewer when the run is shorter).
pub const DEFAULT_WARMUP: u64 = 100;

/// How a flag's value lands on its setting: a value flag replaces the setting, a value flag of an
/// optional setting sets it, a switch turns it on.
pub trait ApplyFlag<Setting> {
    /// Writes the flag into `setting` when it was given.
    fn apply_to(&self, setting: &mut Setting);
}

impl<T: Clone> ApplyFlag<T> for Option<T> {
    fn apply_to(&self, setting: &mut T) {
        if let Some(value) = self {
            *setting = value.clone();
        }
    }
}

impl<T: Clone> ApplyFlag<Option<T>> for Option<T> {
    fn apply_to(&self, setting: &mut Option<T>) {
        if self.is_some() {
            setting.clone_from(self);
        }
    }
}

impl ApplyFlag<bool> for bool {
    fn apply_to(&self, setting: &mut bool) {
        *setting |= *self;
    }
}

/// Declares every setting once: its help text, its clap attributes, its name and type, its
/// default, and the type of its flag.
macro_rules! run_settings {
    ($(
        $(#[doc = $doc:literal])*
        #[arg($($arg:tt)*)]
        $name:ident: $ty:ty = $default:expr, $flag:ty;
    )*) => {
        /// Everything a training run needs. Stored in every checkpoint's meta.json; read from
        /// run.toml; each field is also a `train` flag ([`RunFlags`]).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct RunConfig {
            $($(#[doc = $doc])* pub $name: $ty,)*
        }

        impl Default for RunConfig {
            fn default() -> Self {
                Self { $($name: $default,)* }
            }
        }

        /// The `train` flags: one per [`RunConfig`] field, each unset unless given.
        #[derive(clap::Args, Clone, Debug, Default)]
        pub struct RunFlags {
            $($(#[doc = $doc])* #[arg($($arg)*)] pub $name: $flag,)*
        }

        impl RunFlags {
            /// Writes the flags that were given over `config`.
            pub fn apply(&self, config: &mut RunConfig) {
                $(self.$name.apply_to(&mut config.$name);)*
            }
        }
    };
}

run_settings! {
    /// train.bin (u16 ids; its sidecar gives the vocabulary).
    #[arg(long, value_name = "FILE")]
    data: PathBuf = PathBuf::from("train.bin"), Option<PathBuf>;
    /// val.bin for evaluation.
    #[arg(long, value_name = "FILE")]
    val_data: Option<PathBuf> = None, Option<PathBuf>;
    /// The vocabulary size of a bare .bin without sidecar or tokenizer.
    #[arg(long, value_name = "N")]
    vocab: Option<u32> = None, Option<u32>;
    /// The tokenizer of the data, a tokenizer.json or the World vocabulary
    /// rwkv_vocab_v20230424.txt (gives the vocabulary of a bare .bin; checked against the
    /// sidecar).
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf> = None, Option<PathBuf>;
    /// Model size: micro (L8 C128), mini (L16 C192) or 85m (L12 C576); with --init-from and no
    /// --layers/--embd, the weights' own shape [default: micro].
    #[arg(long)]
    model: String = "micro".into(), Option<String>;
    /// Layers (with --embd, instead of --model).
    #[arg(long)]
    layers: Option<usize> = None, Option<usize>;
    /// Width, a multiple of 64 (with --layers).
    #[arg(long)]
    embd: Option<usize> = None, Option<usize>;
    /// Tokens per sequence, a multiple of 16 [default: 128].
    #[arg(long)]
    seq_len: usize = 128, Option<usize>;
    /// Sequences per micro-batch [default: 8].
    #[arg(long)]
    micro_bsz: usize = 8, Option<usize>;
    /// Micro-batches per optimizer step [default: 1].
    #[arg(long)]
    accum: usize = 1, Option<usize>;
    /// Optimizer steps [default: 1000].
    #[arg(long)]
    steps: u64 = 1000, Option<u64>;
    /// Peak learning rate [default: 6e-4].
    #[arg(long)]
    lr: f64 = 6e-4, Option<f64>;
    /// Final learning rate of the cosine [default: 6e-5].
    #[arg(long)]
    min_lr: f64 = 6e-5, Option<f64>;
    /// Warmup steps, at most --steps [default: 100, or --steps when shorter].
    #[arg(long)]
    warmup: Option<u64> = None, Option<u64>;
    /// Weight decay of the 2-D .weight matrices [default: 0.1].
    #[arg(long)]
    weight_decay: f64 = 0.1, Option<f64>;
    /// Seed of the initialization and the sampling [default: 1].
    #[arg(long)]
    seed: u64 = 1, Option<u64>;
    /// Steps between checkpoints (0: only at the end) [default: 500].
    #[arg(long)]
    checkpoint_every: u64 = 500, Option<u64>;
    /// Steps between evaluations on --val-data (0: only at the end) [default: 100].
    #[arg(long)]
    eval_every: u64 = 100, Option<u64>;
    /// Micro-batches per evaluation [default: 8].
    #[arg(long, value_name = "N")]
    eval_batches: usize = 8, Option<usize>;
    /// Checkpoints kept (0: all) [default: 3].
    #[arg(long)]
    keep: usize = 3, Option<usize>;
    /// The run directory [default: run].
    #[arg(long, value_name = "RUN_DIR")]
    out: PathBuf = PathBuf::from("run"), Option<PathBuf>;
    /// Start from these weights instead of a fresh init: RWKV-LM safetensors or an official
    /// PyTorch .pth (bf16, fp16 or fp32), such as a released RWKV-7 checkpoint.
    #[arg(long, value_name = "FILE")]
    init_from: Option<PathBuf> = None, Option<PathBuf>;
    /// Reproduce a run of N data-parallel workers in this one process: every step takes each
    /// rank's micro-batches from that rank's shard, in rank order, and averages all of them
    /// exactly as the ring all-reduce does [default: 1].
    #[arg(long, value_name = "N")]
    emulate_world: u32 = 1, Option<u32>;
    /// Gradients on the wire with --hosts: f32, or bf16 for half the traffic (--emulate-world
    /// rounds the same way) [default: f32].
    #[arg(long, value_enum)]
    wire_dtype: WireDtype = WireDtype::F32, Option<WireDtype>;
    /// Dropout rate on each block's two residual branches in training (0 by default, as in the
    /// reference); evaluation and generation never drop.
    #[arg(long, value_name = "P")]
    dropout: f64 = 0.0, Option<f64>;
    /// Recompute element-wise activations in the backward instead of keeping them: about a
    /// third less memory on large batches, 5–15% slower, the same weights.
    #[arg(long)]
    activation_checkpointing: bool = false, bool;
    /// Skip the sha256 check of the data against its sidecar at the start (every id is still
    /// checked against the vocabulary).
    #[arg(long)]
    skip_checksum: bool = false, bool;
}

impl RunConfig {
    /// Reads a run.toml (`source` names it in errors): unknown keys and values of the wrong type
    /// are refused, naming the line.
    pub fn from_toml(text: &str, source: &Path) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| {
            TrainError::Setting(format!("{}: not a valid run config: {e}", source.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: RunFlags,
    }

    #[test]
    fn every_setting_has_a_flag_and_flags_override_the_file() {
        let names: Vec<String> = serde_json::to_value(RunConfig::default())
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .map(|k| format!("--{}", k.replace('_', "-")))
            .collect();
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for flag in &names {
            assert!(help.contains(flag.as_str()), "{flag} has no flag");
        }
        let mut config = RunConfig::from_toml(
            "seq_len = 64\nlr = 0.01\nvocab = 16\n",
            Path::new("run.toml"),
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "train",
            "--lr",
            "0.002",
            "--eval-batches",
            "3",
            "--tokenizer",
            "t.json",
            "--skip-checksum",
        ])
        .unwrap();
        cli.flags.apply(&mut config);
        assert_eq!(config.seq_len, 64);
        assert_eq!(config.lr, 0.002);
        assert_eq!(config.vocab, Some(16));
        assert_eq!(config.eval_batches, 3);
        assert_eq!(config.tokenizer, Some(PathBuf::from("t.json")));
        assert!(config.skip_checksum && !config.activation_checkpointing);
        assert_eq!(config.model, "micro");
    }

    #[test]
    fn the_defaults_the_help_states_are_the_declared_ones() {
        let defaults = serde_json::to_value(RunConfig::default()).unwrap();
        let command = <Cli as clap::CommandFactory>::command();
        let mut stated = 0;
        for arg in command.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some(text) = help
                .split("[default: ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
            else {
                continue;
            };
            if text.contains(',') {
                continue; // warmup: a rule, not a value
            }
            let declared = &defaults[arg.get_id().as_str()];
            let same = match (text.parse::<f64>(), declared.as_f64()) {
                (Ok(a), Some(b)) => a == b,
                _ => declared.as_str() == Some(text),
            };
            assert!(
                same,
                "--{}: help says {text}, declared {declared}",
                arg.get_id()
            );
            stated += 1;
        }
        assert_eq!(stated, 16);
    }
}
