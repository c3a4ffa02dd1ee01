//! What the run settings mean: the checks made before any work ([`RunConfig::check`]), the model
//! shape, schedule and optimizer they give, and the token files they name, opened and checked
//! once ([`RunConfig::open_data`]).

use super::TrainError;
use std::path::PathBuf;

use super::checkpoint::CheckpointMeta;
use super::optimizer::AdamWConfig;
use super::run::RankPlan;
use super::schedule::Schedule;
use super::settings::{DEFAULT_WARMUP, RunConfig};
use crate::data::dataset::{TokenDataset, Validation};
use crate::model::config::ModelConfig;
use crate::model::dropout::Dropout;
use crate::model::weights::{TensorFile, config_of};
use crate::tokenizer::Tokenizer;

/// A run's token files, opened and checked once ([`RunConfig::open_data`]), and its tokenizer.
pub struct RunData {
    /// The training data.
    pub train: TokenDataset,
    /// The validation data, if the run has any.
    pub val: Option<TokenDataset>,
    /// The run's tokenizer, if it names one: rank 0 writes a sample with it at each evaluation.
    pub tokenizer: Option<Tokenizer>,
}

impl RunData {
    /// The data of a cluster rank (`plan`): its local copy of the training data and, for rank 0
    /// (which evaluates), of the validation data, with the tokenizer the coordinator sent. The
    /// coordinator checked the files whole; here every id is checked against the vocabulary
    /// (`vocab`, the run's, else the tokenizer's size, else the data's sidecar's).
    pub fn for_rank(vocab: Option<u32>, plan: RankPlan) -> Result<Self, TrainError> {
        let vocab = vocab.or(plan.tokenizer.as_ref().map(|t| t.vocab_size() as u32));
        let train = TokenDataset::open(&plan.data, vocab, Validation::Ids)?;
        let val = match (plan.val_data, plan.rank) {
            (Some(path), 0) => Some(TokenDataset::open(
                &path,
                Some(train.vocab_size()),
                Validation::Ids,
            )?),
            _ => None,
        };
        Ok(RunData {
            train,
            val,
            tokenizer: plan.tokenizer,
        })
    }
}

impl RunConfig {
    /// Training tokens of one step over `world` ranks.
    pub fn tokens_per_step(&self, world: u32) -> u64 {
        (self.seq_len * self.micro_bsz * self.accum) as u64 * u64::from(world)
    }

    /// The model shape for a vocabulary of `vocab`.
    pub fn model_config(&self, vocab: usize) -> Result<ModelConfig, TrainError> {
        match (self.layers, self.embd) {
            (Some(layers), Some(embd)) => Ok(ModelConfig::new(vocab, layers, embd)?),
            (None, None) => Ok(ModelConfig::named(&self.model, vocab)?),
            _ => Err(TrainError::Setting(
                "--layers and --embd go together".into(),
            )),
        }
    }

    /// With `init_from` and neither `layers` nor `embd`, takes the layers and width from the
    /// weights file (so a released checkpoint needs no shape flags); the vocabulary always comes
    /// from the data, and must be the weights' own.
    pub fn shape_from_weights(mut self) -> Result<Self, TrainError> {
        if let (Some(path), None, None) = (&self.init_from, self.layers, self.embd) {
            let shape = config_of(&TensorFile::read(path)?)?;
            self.layers = Some(shape.layers);
            self.embd = Some(shape.embd);
        }
        Ok(self)
    }

    /// Checks the settings before any work: T a multiple of 16, non-zero sizes, a positive finite
    /// learning rate with 0 ≤ min_lr ≤ lr, warmup within the steps, weight decay ≥ 0, dropout in
    /// [0, 1).
    pub fn check(&self) -> Result<(), TrainError> {
        if self.seq_len == 0 || !self.seq_len.is_multiple_of(16) {
            return Err(TrainError::Setting(format!(
                "--seq-len {} must be a positive multiple of 16 (time is processed in chunks of 16)",
                self.seq_len
            )));
        }
        if self.micro_bsz == 0 || self.accum == 0 || self.steps == 0 {
            return Err(TrainError::Setting(
                "--micro-bsz, --accum and --steps must be at least 1".into(),
            ));
        }
        if self.emulate_world == 0 {
            return Err(TrainError::Setting(
                "--emulate-world must be at least 1".into(),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            let why = if self.lr < 0.0 {
                " (a negative rate would train by gradient ascent)"
            } else {
                ""
            };
            return Err(TrainError::Setting(format!(
                "--lr {} must be a positive finite number{why}",
                self.lr
            )));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(TrainError::Setting(format!(
                "--min-lr {} must be between 0 and --lr {}",
                self.min_lr, self.lr
            )));
        }
        if let Some(warmup) = self.warmup
            && warmup > self.steps
        {
            return Err(TrainError::Setting(format!(
                "--warmup {warmup} is longer than the run's --steps {}",
                self.steps
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::Setting(format!(
                "--weight-decay {} must be a finite number of at least 0",
                self.weight_decay
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TrainError::Setting(format!(
                "--dropout {} must be at least 0 and below 1",
                self.dropout
            )));
        }
        if self.eval_batches == 0 && self.eval_every > 0 && self.val_data.is_some() {
            return Err(TrainError::Setting(
                "eval_batches must be at least 1 when there is --val-data".into(),
            ));
        }
        Ok(())
    }

    /// Every path made absolute, so that resume, generate and workers started elsewhere find
    /// the same files from any directory.
    pub fn absolute_paths(mut self) -> Result<Self, TrainError> {
        let absolute = |p: &PathBuf| {
            std::path::absolute(p).map_err(|e| TrainError::Setting(format!("{}: {e}", p.display())))
        };
        self.data = absolute(&self.data)?;
        self.out = absolute(&self.out)?;
        self.val_data = self.val_data.as_ref().map(absolute).transpose()?;
        self.tokenizer = self.tokenizer.as_ref().map(absolute).transpose()?;
        self.init_from = self.init_from.as_ref().map(absolute).transpose()?;
        Ok(self)
    }

    /// Opens the training and validation data for a world of `world` ranks with every check: a
    /// `vocab` that holds the tokenizer's ids, each id against the vocabulary, the sha256 against
    /// the sidecar (unless `skip_checksum`), the sidecar's tokenizer and `[EOS]` against
    /// `tokenizer`, and a shard long enough for one window. The validation data gets the same
    /// checks.
    pub fn open_data(&self, world: u32) -> Result<RunData, TrainError> {
        let tokenizer = self
            .tokenizer
            .as_ref()
            .map(|path| Tokenizer::from_file(path).map(|t| (path, t)))
            .transpose()?;
        if let (Some(vocab), Some((path, tokenizer))) = (self.vocab, &tokenizer)
            && (vocab as usize) < tokenizer.vocab_size()
        {
            return Err(TrainError::Setting(format!(
                "--vocab {vocab} is smaller than the {} ids of the tokenizer {}: the model could \
                 not read what it writes; leave --vocab out (the tokenizer gives it) or raise it",
                tokenizer.vocab_size(),
                path.display()
            )));
        }
        let vocab = self
            .vocab
            .or(tokenizer.as_ref().map(|(_, t)| t.vocab_size() as u32));
        let validation = if self.skip_checksum {
            Validation::Ids
        } else {
            Validation::Full
        };
        let data = TokenDataset::open(&self.data, vocab, validation)?;
        let mut files = vec![(&self.data, world, data)];
        if let Some(val) = &self.val_data {
            let opened = TokenDataset::open(val, Some(files[0].2.vocab_size()), validation)?;
            files.push((val, 1, opened));
        }
        for (path, world, file) in &files {
            if let Some((tokenizer_path, tokenizer)) = &tokenizer {
                file.check_tokenizer(tokenizer_path, tokenizer.eos_id())?;
            }
            let shard = file.shard(0, *world)?;
            let windows = shard.tokens().saturating_sub(self.seq_len as u64);
            if windows > 0 && windows < self.micro_bsz as u64 {
                return Err(TrainError::Setting(format!(
                    "--micro-bsz {} needs as many different windows of {} tokens, but {} holds \
                     only {windows} per rank in a world of {}: lower --micro-bsz or --seq-len, or \
                     use more data",
                    self.micro_bsz,
                    self.seq_len + 1,
                    path.display(),
                    world
                )));
            }
            if shard.tokens() <= self.seq_len as u64 {
                return Err(TrainError::Setting(format!(
                    "--seq-len {} needs windows of {} tokens, but {} holds {} tokens per rank in \
                     a world of {}: lower --seq-len or use more data",
                    self.seq_len,
                    self.seq_len + 1,
                    path.display(),
                    shard.tokens(),
                    world
                )));
            }
        }
        let mut opened = files.into_iter().map(|(_, _, file)| file);
        let train = opened
            .next()
            .ok_or_else(|| TrainError::Setting("no training data".into()))?;
        Ok(RunData {
            train,
            val: opened.next(),
            tokenizer: tokenizer.map(|(_, tokenizer)| tokenizer),
        })
    }

    /// The dropout of rank `rank`'s micro-batches in step `step` (0-based).
    pub fn dropout_of(&self, step: u64, rank: u32) -> Dropout {
        Dropout::for_step(self.dropout, self.seed, step, rank)
    }
}

impl RunConfig {
    /// The learning-rate schedule: warmup to `lr`, then cosine to `min_lr` at `steps`.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            lr: self.lr,
            min_lr: self.min_lr,
            warmup: self.warmup.unwrap_or(DEFAULT_WARMUP.min(self.steps)),
            total: self.steps,
        }
    }

    /// What a checkpoint taken after `step` records (its file checksums are added on saving).
    pub fn checkpoint_meta(
        &self,
        data: &RunData,
        step: u64,
        tokens_seen: u64,
        lr: f64,
        world_size: u32,
    ) -> Result<CheckpointMeta, TrainError> {
        let train = data.train.sidecar();
        Ok(CheckpointMeta {
            step,
            tokens_seen,
            lr,
            config: serde_json::to_value(self)
                .map_err(|e| TrainError::Checkpoint(format!("the run settings as JSON: {e}")))?,
            seed: self.seed,
            world_size,
            tokenizer_sha256: train.map(|meta| meta.tokenizer_sha256.clone()),
            files: Default::default(),
            data_sha256: train.map(|meta| meta.data_sha256.clone()),
            val_data_sha256: data
                .val
                .as_ref()
                .and_then(TokenDataset::sidecar)
                .map(|meta| meta.data_sha256.clone()),
        })
    }
}

impl RunConfig {
    /// AdamW as the run config sets it (weight decay; the rest docs/model.md's defaults).
    pub fn adam_config(&self) -> AdamWConfig {
        AdamWConfig {
            weight_decay: self.weight_decay,
            ..AdamWConfig::default()
        }
    }
}
