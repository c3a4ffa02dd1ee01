//! Checkpoints (docs/formats.md): a directory `ckpt-<step>/` holding `model.safetensors` (RWKV-LM
//! names and shapes), `optimizer.safetensors` (AdamW's moments as `<name>.exp_avg` and
//! `<name>.exp_avg_sq`) and `meta.json`. It is written under a temporary name, fsynced and
//! renamed; `latest` then names it. A killed run leaves every earlier checkpoint whole.

use super::TrainError;
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use super::optimizer::{AdamW, AdamWConfig};
use crate::hashing::sha256_file;
use crate::model::rwkv::Rwkv;
use crate::model::weights::{TensorFile, load_rwkv, save_rwkv};
use crate::output::AtomicFile;

/// The name of the file that names the newest whole checkpoint.
pub const LATEST: &str = "latest";

/// `meta.json`: where the run stood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Optimizer steps taken.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// The learning rate of the last step.
    pub lr: f64,
    /// The effective run configuration, as JSON.
    pub config: serde_json::Value,
    /// The sampling seed.
    pub seed: u64,
    /// Workers in the run.
    pub world_size: u32,
    /// sha256 of the tokenizer.json the data was made with (from its sidecar), if known.
    pub tokenizer_sha256: Option<String>,
    /// sha256 of each file in the checkpoint directory.
    pub files: HashMap<String, String>,
    /// sha256 of the training data (from its sidecar), so that a resume can accept the same data
    /// at a new path.
    pub data_sha256: Option<String>,
    /// sha256 of the validation data (from its sidecar), likewise.
    pub val_data_sha256: Option<String>,
}

/// The directory name of step `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("ckpt-{step:06}")
}

/// Writes a checkpoint of `model` and `optimizer` into `run_dir`, updates `latest`, and keeps
/// only the newest `keep` checkpoints (0 keeps all). Returns its directory.
pub fn save_checkpoint<A: AutodiffBackend>(
    run_dir: &Path,
    model: &Rwkv<A>,
    optimizer: &AdamW<A::InnerBackend>,
    mut meta: CheckpointMeta,
    keep: usize,
) -> std::io::Result<PathBuf> {
    let name = checkpoint_name(meta.step);
    let final_dir = run_dir.join(&name);
    let temp_dir = run_dir.join(format!(".{name}.tmp-{}", std::process::id()));
    if temp_dir.exists() {
        fs::remove_dir_all(&temp_dir)?;
    }
    fs::create_dir_all(&temp_dir)?;
    save_rwkv(model, &temp_dir.join("model.safetensors"))?;
    save_optimizer(optimizer, &temp_dir.join("optimizer.safetensors"))?;
    for file in ["model.safetensors", "optimizer.safetensors"] {
        meta.files.insert(
            file.into(),
            sha256_file(&temp_dir.join(file)).map_err(std::io::Error::other)?,
        );
    }
    let mut json = AtomicFile::create(&temp_dir.join("meta.json"))?;
    json.write_all(
        serde_json::to_string_pretty(&meta)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    json.commit()?;
    fs::File::open(&temp_dir)?.sync_all()?;
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)?;
    }
    fs::rename(&temp_dir, &final_dir)?;
    set_latest(run_dir, &final_dir)?;
    prune(run_dir, keep)?;
    Ok(final_dir)
}

/// Removes all but the newest `keep` checkpoints (0 keeps all).
fn prune(run_dir: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let mut steps: Vec<(u64, PathBuf)> = fs::read_dir(run_dir)?
        .filter_map(Result::ok)
        .filter_map(|e| step_of_name(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for (_, dir) in steps.into_iter().take(excess) {
        fs::remove_dir_all(dir)?;
    }
    Ok(())
}

/// The checkpoint `latest` names in `run_dir`.
pub fn latest_checkpoint(run_dir: &Path) -> Result<PathBuf, TrainError> {
    let latest = run_dir.join(LATEST);
    match fs::read_to_string(&latest) {
        Ok(name) => Ok(run_dir.join(name.trim())),
        // Killed between a checkpoint's rename and `latest`: that checkpoint is whole.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && let Some(whole) = newest_whole_checkpoint(run_dir) =>
        {
            tracing::warn!(
                "{} is missing; continuing from {}",
                latest.display(),
                whole.display()
            );
            Ok(whole)
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && run_dir.join("metrics.jsonl").exists() =>
        {
            Err(TrainError::Checkpoint(format!(
                "{} has no checkpoint yet: the run stopped before its first one, so there is \
                 nothing to resume; start it again with the same `sovereign train … --out {}`",
                run_dir.display(),
                run_dir.display()
            )))
        }
        Err(e) => Err(TrainError::Checkpoint(format!(
            "{}: {e}; is {} a run directory with a checkpoint?",
            latest.display(),
            run_dir.display()
        ))),
    }
}

/// Points `latest` at `checkpoint` (a directory of `run_dir`).
pub fn set_latest(run_dir: &Path, checkpoint: &Path) -> std::io::Result<()> {
    let name = checkpoint.file_name().ok_or_else(|| {
        std::io::Error::other(format!("{} names no checkpoint", checkpoint.display()))
    })?;
    let mut latest = AtomicFile::create(&run_dir.join(LATEST))?;
    latest.write_all(format!("{}\n", name.to_string_lossy()).as_bytes())?;
    latest.commit()
}

/// What a checkpoint restores: the model, the optimizer and where the run stood.
pub type Restored<A> = (
    Rwkv<A>,
    AdamW<<A as AutodiffBackend>::InnerBackend>,
    CheckpointMeta,
);

/// Reads `dir/meta.json`; a missing one is named as such.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta, TrainError> {
    let meta_path = dir.join("meta.json");
    let text = match fs::read_to_string(&meta_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TrainError::Checkpoint(format!(
                "{} is missing: {} is not a whole checkpoint (a checkpoint directory holds \
                 model.safetensors, optimizer.safetensors and meta.json)",
                meta_path.display(),
                dir.display()
            )));
        }
        Err(e) => {
            return Err(TrainError::Checkpoint(format!(
                "cannot read {}: {e}",
                meta_path.display()
            )));
        }
    };
    serde_json::from_str(&text).map_err(|e| {
        TrainError::Checkpoint(format!(
            "{}: not a checkpoint's meta.json: {e}",
            meta_path.display()
        ))
    })
}

/// Checks `dir/name` against the sha256 `sum` that meta.json records for it.
fn check_file(dir: &Path, name: &str, sum: &str) -> Result<(), TrainError> {
    let path = dir.join(name);
    let actual = sha256_file(&path)?;
    if actual != sum {
        return Err(TrainError::Checkpoint(format!(
            "{}: sha256 {actual} differs from meta.json's {sum}; the checkpoint is damaged",
            path.display()
        )));
    }
    Ok(())
}

/// Reads a checkpoint's meta.json and checks every file it lists against its sha256.
pub fn verify_checkpoint(dir: &Path) -> Result<CheckpointMeta, TrainError> {
    let meta = read_meta(dir)?;
    let mut files: Vec<(&String, &String)> = meta.files.iter().collect();
    files.sort();
    for (name, sum) in files {
        check_file(dir, name, sum)?;
    }
    Ok(meta)
}

/// Checks a weights file against the meta.json beside it when that is a checkpoint's meta.json
/// that lists the file (a safetensors file on its own, or beside some other meta.json, has no
/// checksum to check).
pub fn verify_weights_file(path: &Path) -> Result<(), TrainError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(text) = fs::read_to_string(dir.join("meta.json")) else {
        return Ok(());
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let listed = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .zip(name)
        .and_then(|(meta, name)| Some((meta["files"][&name].as_str()?.to_string(), name)));
    match listed {
        Some((sum, name)) => check_file(dir, &name, &sum),
        None => Ok(()),
    }
}

/// The step number of a `ckpt-<step>` directory name.
fn step_of_name(name: &str) -> Option<u64> {
    name.strip_prefix("ckpt-").and_then(|s| s.parse().ok())
}

/// The newest checkpoint in `run_dir` whose files all match their checksums, if any.
pub fn newest_whole_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<(u64, PathBuf)> = fs::read_dir(run_dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| step_of_name(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|(_, dir)| dir)
        .find(|dir| verify_checkpoint(dir).is_ok())
}

/// Loads a checkpoint directory: model, optimizer and meta, checking the files' checksums. A
/// damaged one is refused, naming the newest whole checkpoint of its run to resume from instead.
pub fn load_checkpoint<A: AutodiffBackend>(
    dir: &Path,
    adam: AdamWConfig,
    device: &A::Device,
) -> Result<Restored<A>, TrainError> {
    let meta = verify_checkpoint(dir).map_err(|e| {
        let run_dir = dir.parent().unwrap_or(Path::new("."));
        TrainError::Checkpoint(match newest_whole_checkpoint(run_dir) {
            Some(whole) => format!(
                "{e}\nthe newest whole checkpoint is {}: resume with --from {}",
                whole.display(),
                whole.display()
            ),
            None => format!("{e}\n{} holds no whole checkpoint", run_dir.display()),
        })
    })?;
    let (model, _) = load_rwkv::<A>(&TensorFile::read(&dir.join("model.safetensors"))?, device)?;
    let optimizer = load_optimizer(&dir.join("optimizer.safetensors"), adam, meta.step, device)?;
    Ok((model, optimizer, meta))
}

fn save_optimizer<B: Backend>(optimizer: &AdamW<B>, path: &Path) -> std::io::Result<()> {
    let mut names: Vec<&String> = optimizer.moments.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, usize, Vec<u8>)> = Vec::new();
    for name in names {
        let (m, v) = &optimizer.moments[name];
        for (suffix, t) in [("exp_avg", m), ("exp_avg_sq", v)] {
            let values: Vec<f32> = t
                .clone()
                .into_data()
                .to_vec()
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            tensors.push((
                format!("{name}.{suffix}"),
                values.len(),
                values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ));
        }
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, n, bytes)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, vec![*n], bytes).map_err(std::io::Error::other)?,
            ))
        })
        .collect::<std::io::Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(std::io::Error::other)?;
    let mut file = AtomicFile::create(path)?;
    file.write_all(&bytes)?;
    file.commit()
}

fn load_optimizer<B: Backend>(
    path: &Path,
    config: AdamWConfig,
    step: u64,
    device: &B::Device,
) -> Result<AdamW<B>, TrainError> {
    let file = TensorFile::read(path)?;
    let mut optimizer = AdamW::new(config);
    optimizer.step = step;
    for name in file.names() {
        let Some(param) = name.strip_suffix(".exp_avg") else {
            continue;
        };
        let m = file.get(&name, file.shape(&name).map_or(0, |s| s.iter().product()))?;
        let v_name = format!("{param}.exp_avg_sq");
        let v = file.get(&v_name, m.len())?;
        let tensor =
            |x: &[f32]| Tensor::<B, 1>::from_data(TensorData::new(x.to_vec(), [x.len()]), device);
        optimizer
            .moments
            .insert(param.to_string(), (tensor(m), tensor(v)));
    }
    Ok(optimizer)
}
