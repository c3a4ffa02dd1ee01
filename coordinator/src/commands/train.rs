//! `sovereign train` and `sovereign resume`: the run settings (TOML, then flags) and the Burn
//! backend, over `sovereign_common::train::run`.

use anyhow::{Context, Result, bail};
use sovereign_common::collective::bucket::WireDtype;
use sovereign_common::device::Device;
use sovereign_common::train::run::{self, MovedData, RunConfig};
use sovereign_common::with_training_backend;

use crate::cli::{ResumeArgs, TrainArgs, WireDtypeArg};
use crate::cluster::{cluster_hosts, train_cluster};

/// The effective settings: defaults, then the TOML file, then the flags.
fn run_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            RunConfig::from_toml(&text, path).map_err(anyhow::Error::msg)?
        }
        None => RunConfig::default(),
    };
    macro_rules! set {
        ($($field:ident),*) => {$(if let Some(value) = args.$field.clone() { config.$field = value; })*};
    }
    set!(
        data,
        model,
        seq_len,
        micro_bsz,
        accum,
        steps,
        lr,
        min_lr,
        weight_decay,
        seed
    );
    set!(checkpoint_every, eval_every, keep, out, emulate_world);
    macro_rules! set_option {
        ($($field:ident),*) => {$(if args.$field.is_some() { config.$field = args.$field.clone(); })*};
    }
    set_option!(val_data, tokenizer, layers, embd, init_from, warmup);
    if let Some(dropout) = args.dropout {
        config.dropout = dropout;
    }
    if args.activation_checkpointing {
        config.activation_checkpointing = true;
    }
    if let Some(wire) = args.wire_dtype {
        config.wire_dtype = match wire {
            WireDtypeArg::F32 => WireDtype::F32,
            WireDtypeArg::Bf16 => WireDtype::Bf16,
        };
    }
    if args.skip_checksum {
        config.skip_checksum = true;
    }
    config.check().map_err(anyhow::Error::msg)?;
    config.absolute_paths().map_err(anyhow::Error::msg)
}

/// With workers, `--device` has no say: each worker's device comes from the hosts file's
/// `devices=` (or `--gpus`).
fn check_cluster_device(device: Device) -> Result<()> {
    if device != Device::Cpu {
        bail!(
            "--device {device} is for single-process runs; with --hosts the hosts file's devices= \
             (or --gpus 0,1,…) give each worker its GPU"
        );
    }
    Ok(())
}

/// `sovereign train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    let device = Device::parse(&args.device).map_err(anyhow::Error::msg)?;
    let config = run_config(args)?;
    if let Some(hosts) = cluster_hosts(&args.cluster)? {
        if config.emulate_world != 1 {
            bail!("--hosts and --emulate-world exclude each other: the hosts file sets the world");
        }
        check_cluster_device(device)?;
        return train_cluster(&args.cluster, hosts, config, None);
    }
    tracing::info!("run config: {}", serde_json::to_string(&config)?);
    let checkpointing = config.activation_checkpointing;
    let last = with_training_backend!(device, checkpointing, |A, dev| run::train::<A>(
        &config, &dev
    ))
    .map_err(anyhow::Error::msg)?;
    eprintln!("train: done; last checkpoint {}", last.display());
    Ok(())
}

/// `sovereign resume`.
pub fn resume(args: &ResumeArgs) -> Result<()> {
    let device = Device::parse(&args.device).map_err(anyhow::Error::msg)?;
    let moved = MovedData {
        data: args.data.clone(),
        val_data: args.val_data.clone(),
        skip_checksum: args.skip_checksum,
    };
    let (config, checkpoint) =
        run::resume_point(&args.run, args.from.as_deref(), &moved).map_err(anyhow::Error::msg)?;
    if let Some(hosts) = cluster_hosts(&args.cluster)? {
        check_cluster_device(device)?;
        return train_cluster(&args.cluster, hosts, config, Some(&checkpoint));
    }
    let checkpointing = config.activation_checkpointing;
    let last = with_training_backend!(device, checkpointing, |A, dev| run::resume::<A>(
        &args.run,
        args.from.as_deref(),
        &moved,
        &dev
    ))
    .map_err(anyhow::Error::msg)?;
    eprintln!("resume: done; last checkpoint {}", last.display());
    Ok(())
}
