//! The library's types on the wire and back: a run's settings ([`v1::RunSettings`]), a data-prep
//! job ([`v1::PrepJob`]) and a step's record ([`v1::StepReport`]). Every field is converted here
//! and nowhere else; a field added to a library type fails to compile here until it is carried.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sovereign_common::collective::bucket::WireDtype;
use sovereign_common::data::normalize::NormalizeOptions;
use sovereign_common::data::wiki::PageRules;
use sovereign_common::prep::{InputFile, MapJob, PrepJob};
use sovereign_common::train::record::StepRecord;
use sovereign_common::train::settings::RunConfig;

use crate::v1;

/// A message from the other end that this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A field that must be set was absent.
    #[error("the coordinator's {message} has no {field}")]
    Missing {
        /// The message.
        message: &'static str,
        /// The field.
        field: &'static str,
    },
    /// An enum value this build does not know.
    #[error("the coordinator's {message} has an unknown {field} value {value}")]
    Unknown {
        /// The message.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// The value received.
        value: i32,
    },
}

fn path_bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

fn bytes_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&bytes))
}

impl From<&RunConfig> for v1::RunSettings {
    fn from(config: &RunConfig) -> Self {
        let RunConfig {
            data,
            val_data,
            vocab,
            tokenizer,
            model,
            layers,
            embd,
            seq_len,
            micro_bsz,
            accum,
            steps,
            lr,
            min_lr,
            warmup,
            weight_decay,
            seed,
            checkpoint_every,
            eval_every,
            eval_batches,
            keep,
            out,
            init_from,
            emulate_world,
            wire_dtype,
            dropout,
            activation_checkpointing,
            skip_checksum,
        } = config;
        v1::RunSettings {
            data: path_bytes(data),
            val_data: val_data.as_deref().map(path_bytes),
            vocab: *vocab,
            tokenizer: tokenizer.as_deref().map(path_bytes),
            model: model.clone(),
            layers: layers.map(|v| v as u64),
            embd: embd.map(|v| v as u64),
            seq_len: *seq_len as u64,
            micro_bsz: *micro_bsz as u64,
            accum: *accum as u64,
            steps: *steps,
            lr: *lr,
            min_lr: *min_lr,
            warmup: *warmup,
            weight_decay: *weight_decay,
            seed: *seed,
            checkpoint_every: *checkpoint_every,
            eval_every: *eval_every,
            eval_batches: *eval_batches as u64,
            keep: *keep as u64,
            out: path_bytes(out),
            init_from: init_from.as_deref().map(path_bytes),
            emulate_world: *emulate_world,
            wire_dtype: match wire_dtype {
                WireDtype::F32 => v1::WireDtype::F32,
                WireDtype::Bf16 => v1::WireDtype::Bf16,
            } as i32,
            dropout: *dropout,
            activation_checkpointing: *activation_checkpointing,
            skip_checksum: *skip_checksum,
        }
    }
}

impl TryFrom<v1::RunSettings> for RunConfig {
    type Error = WireError;

    fn try_from(wire: v1::RunSettings) -> Result<Self, WireError> {
        let wire_dtype = match v1::WireDtype::try_from(wire.wire_dtype) {
            Ok(v1::WireDtype::F32) => WireDtype::F32,
            Ok(v1::WireDtype::Bf16) => WireDtype::Bf16,
            Err(_) => {
                return Err(WireError::Unknown {
                    message: "run settings",
                    field: "wire_dtype",
                    value: wire.wire_dtype,
                });
            }
        };
        Ok(RunConfig {
            data: bytes_path(wire.data),
            val_data: wire.val_data.map(bytes_path),
            vocab: wire.vocab,
            tokenizer: wire.tokenizer.map(bytes_path),
            model: wire.model,
            layers: wire.layers.map(|v| v as usize),
            embd: wire.embd.map(|v| v as usize),
            seq_len: wire.seq_len as usize,
            micro_bsz: wire.micro_bsz as usize,
            accum: wire.accum as usize,
            steps: wire.steps,
            lr: wire.lr,
            min_lr: wire.min_lr,
            warmup: wire.warmup,
            weight_decay: wire.weight_decay,
            seed: wire.seed,
            checkpoint_every: wire.checkpoint_every,
            eval_every: wire.eval_every,
            eval_batches: wire.eval_batches as usize,
            keep: wire.keep as usize,
            out: bytes_path(wire.out),
            init_from: wire.init_from.map(bytes_path),
            emulate_world: wire.emulate_world,
            wire_dtype,
            dropout: wire.dropout,
            activation_checkpointing: wire.activation_checkpointing,
            skip_checksum: wire.skip_checksum,
        })
    }
}

impl From<&PrepJob> for v1::PrepJob {
    fn from(job: &PrepJob) -> Self {
        let map = match &job.map {
            MapJob::CountWords { line_docs, lossy } => {
                v1::prep_job::Map::CountWords(v1::CountWords {
                    line_docs: *line_docs,
                    lossy: *lossy,
                })
            }
            MapJob::Encode {
                line_docs,
                lossy,
                tokenizer_text,
            } => v1::prep_job::Map::Encode(v1::Encode {
                line_docs: *line_docs,
                lossy: *lossy,
                tokenizer_text: tokenizer_text.clone(),
            }),
            MapJob::Pages { rules, namespaces } => v1::prep_job::Map::Pages(v1::Pages {
                min_chars: rules.min_chars as u64,
                strip_accents: rules.normalize.strip_accents,
                lowercase: rules.normalize.lowercase,
                namespaces: namespaces.clone(),
            }),
        };
        v1::PrepJob {
            map: Some(map),
            inputs: job
                .inputs
                .iter()
                .map(|input| v1::InputFile {
                    path: path_bytes(&input.path),
                    bytes: input.bytes,
                })
                .collect(),
        }
    }
}

impl TryFrom<v1::PrepJob> for PrepJob {
    type Error = WireError;

    fn try_from(wire: v1::PrepJob) -> Result<Self, WireError> {
        let map = match wire.map.ok_or(WireError::Missing {
            message: "prep job",
            field: "map",
        })? {
            v1::prep_job::Map::CountWords(m) => MapJob::CountWords {
                line_docs: m.line_docs,
                lossy: m.lossy,
            },
            v1::prep_job::Map::Encode(m) => MapJob::Encode {
                line_docs: m.line_docs,
                lossy: m.lossy,
                tokenizer_text: m.tokenizer_text,
            },
            v1::prep_job::Map::Pages(m) => MapJob::Pages {
                rules: PageRules {
                    min_chars: m.min_chars as usize,
                    normalize: NormalizeOptions {
                        strip_accents: m.strip_accents,
                        lowercase: m.lowercase,
                    },
                },
                namespaces: m.namespaces,
            },
        };
        Ok(PrepJob {
            map,
            inputs: wire
                .inputs
                .into_iter()
                .map(|input| InputFile {
                    path: bytes_path(input.path),
                    bytes: input.bytes,
                })
                .collect(),
        })
    }
}

/// Rank `rank`'s report of its step `record`, in group generation `generation`.
pub fn step_report(record: &StepRecord, token: &str, rank: u32, generation: u32) -> v1::StepReport {
    v1::StepReport {
        token: token.to_string(),
        rank,
        step: record.step,
        loss: record.loss,
        val_loss: record.val_loss,
        grad_norm: record.grad_norm,
        compute_s: record.compute_s,
        allreduce_s: record.allreduce_s,
        tokens: record.tokens,
        lr: record.lr,
        generation,
        sample: record.sample.clone(),
    }
}

impl From<&v1::StepReport> for StepRecord {
    /// The rank's record of its step.
    fn from(report: &v1::StepReport) -> Self {
        StepRecord {
            step: report.step,
            loss: report.loss,
            val_loss: report.val_loss,
            lr: report.lr,
            grad_norm: report.grad_norm,
            tokens_per_s: StepRecord::rate(report.tokens, report.compute_s + report.allreduce_s),
            elapsed: 0.0,
            tokens: report.tokens,
            compute_s: report.compute_s,
            allreduce_s: report.allreduce_s,
            sample: report.sample.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn run_settings_cross_the_wire_unchanged() {
        // Every field away from its default, and a path that is not UTF-8.
        let odd = PathBuf::from(std::ffi::OsString::from_vec(b"/data/\xff.bin".to_vec()));
        let config = RunConfig {
            data: odd.clone(),
            val_data: Some("/v.bin".into()),
            vocab: Some(300),
            tokenizer: Some("/t.json".into()),
            model: "mini".into(),
            layers: Some(3),
            embd: Some(128),
            seq_len: 64,
            micro_bsz: 3,
            accum: 2,
            steps: 77,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup: Some(7),
            weight_decay: 0.2,
            seed: 9,
            checkpoint_every: 11,
            eval_every: 13,
            eval_batches: 5,
            keep: 4,
            out: "/run".into(),
            init_from: Some("/w.safetensors".into()),
            emulate_world: 3,
            wire_dtype: WireDtype::Bf16,
            dropout: 0.1,
            activation_checkpointing: true,
            skip_checksum: true,
        };
        let wire = v1::RunSettings::from(&config);
        let back = RunConfig::try_from(wire.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&back).ok(),
            serde_json::to_value(&config).ok()
        );
        assert_eq!(back.data, odd);
        let bad = v1::RunSettings {
            wire_dtype: 7,
            ..wire
        };
        let err = RunConfig::try_from(bad).unwrap_err().to_string();
        assert_eq!(
            err,
            "the coordinator's run settings has an unknown wire_dtype value 7"
        );
    }

    #[test]
    fn prep_jobs_cross_the_wire_unchanged() {
        let inputs = vec![InputFile {
            path: "/in/a.txt".into(),
            bytes: 12,
        }];
        for map in [
            MapJob::CountWords {
                line_docs: true,
                lossy: false,
            },
            MapJob::Encode {
                line_docs: false,
                lossy: true,
                tokenizer_text: "{}".into(),
            },
            MapJob::Pages {
                rules: PageRules {
                    min_chars: 40,
                    normalize: NormalizeOptions {
                        strip_accents: true,
                        lowercase: false,
                    },
                },
                namespaces: vec!["Wikipédia".into()],
            },
        ] {
            let job = PrepJob {
                map,
                inputs: inputs.clone(),
            };
            let back = PrepJob::try_from(v1::PrepJob::from(&job)).unwrap();
            assert_eq!(
                serde_json::to_string(&back).unwrap(),
                serde_json::to_string(&job).unwrap()
            );
        }
        let err = PrepJob::try_from(v1::PrepJob::default()).unwrap_err();
        assert_eq!(err.to_string(), "the coordinator's prep job has no map");
    }

    #[test]
    fn a_step_record_crosses_the_wire_unchanged() {
        let record = StepRecord {
            step: 3,
            loss: 2.5,
            val_loss: Some(2.75),
            lr: 1e-3,
            grad_norm: 0.5,
            tokens_per_s: 100.0,
            elapsed: 0.0,
            tokens: 300,
            compute_s: 2.0,
            allreduce_s: 1.0,
            sample: Some("O Brasil é um país".into()),
        };
        let report = step_report(&record, "t", 2, 4);
        assert_eq!((report.rank, report.generation), (2, 4));
        assert_eq!(StepRecord::from(&report), record);
    }
}
