//! `sovereign train` and `sovereign resume`: the run settings (TOML, then flags) and the Burn
//! backend, over `sovereign_common::train::run`.

use anyhow::{Context, Result, bail};
use sovereign_common::device::Device;
use sovereign_common::train::resume::{MovedData, resume_point};
use sovereign_common::train::run::{self, Watch};
use sovereign_common::train::settings::RunConfig;
use sovereign_common::with_training_backend;

use crate::cli::{DashboardArgs, ResumeArgs, TrainArgs};
use crate::cluster::{cluster_hosts, train_cluster};
use crate::dashboard;

/// The effective settings: defaults, then the TOML file, then the flags; checked, with absolute
/// paths, and the model's shape from `--init-from`'s weights unless given.
fn run_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            RunConfig::from_toml(&text, path).map_err(anyhow::Error::msg)?
        }
        None => RunConfig::default(),
    };
    args.settings.apply(&mut config);
    config.check().map_err(anyhow::Error::msg)?;
    config
        .absolute_paths()
        .and_then(RunConfig::shape_from_weights)
        .map_err(anyhow::Error::msg)
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

/// Who watches a single-process run: the dashboard when asked for, and the device it shows.
fn watch(args: &DashboardArgs, run_dir: &std::path::Path, device: Device) -> Result<Watch> {
    let board = dashboard::start_for_run(args.dashboard.as_deref(), run_dir, None)?;
    Ok(Watch {
        watcher: dashboard::watcher(&board),
        device: device.to_string(),
    })
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
        return train_cluster(&args.cluster, &args.dashboard, hosts, config, None);
    }
    tracing::info!("run config: {}", serde_json::to_string(&config)?);
    let watch = watch(&args.dashboard, &config.out, device)?;
    let checkpointing = config.activation_checkpointing;
    let last = with_training_backend!(device, checkpointing, |A, dev| run::train::<A>(
        &config, &watch, &dev
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
        resume_point(&args.run, args.from.as_deref(), &moved).map_err(anyhow::Error::msg)?;
    if let Some(hosts) = cluster_hosts(&args.cluster)? {
        check_cluster_device(device)?;
        return train_cluster(
            &args.cluster,
            &args.dashboard,
            hosts,
            config,
            Some(&checkpoint),
        );
    }
    let watch = watch(&args.dashboard, &args.run, device)?;
    let checkpointing = config.activation_checkpointing;
    let last = with_training_backend!(device, checkpointing, |A, dev| run::resume::<A>(
        &args.run,
        args.from.as_deref(),
        &moved,
        &watch,
        &dev
    ))
    .map_err(anyhow::Error::msg)?;
    eprintln!("resume: done; last checkpoint {}", last.display());
    Ok(())
}
