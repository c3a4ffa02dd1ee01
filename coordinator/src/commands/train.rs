//! `sovereign train` and `sovereign resume`: the run settings (TOML, then flags) and the Burn
//! backend, over `sovereign_common::train::run`.

use anyhow::{Context, Result, bail};
use burn::backend::{Autodiff, Flex};
use sovereign_common::train::run::{self, RunConfig};

use crate::cli::{ResumeArgs, TrainArgs};

/// The CPU training backend.
type Cpu = Autodiff<Flex>;

/// The effective settings: defaults, then the TOML file, then the flags.
fn run_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{}: not a valid run config", path.display()))?
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
        warmup,
        weight_decay,
        seed
    );
    set!(checkpoint_every, eval_every, keep, out);
    macro_rules! set_option {
        ($($field:ident),*) => {$(if args.$field.is_some() { config.$field = args.$field.clone(); })*};
    }
    set_option!(val_data, tokenizer, layers, embd, init_from);
    Ok(config)
}

fn check_device(device: &str) -> Result<()> {
    if device != "cpu" {
        bail!(
            "--device {device}: this build trains on the CPU only; GPU backends arrive with a later release"
        );
    }
    Ok(())
}

/// `sovereign train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    check_device(&args.device)?;
    let config = run_config(args)?;
    tracing::info!("run config: {}", serde_json::to_string(&config)?);
    let last = run::train::<Cpu>(&config, &Default::default()).map_err(anyhow::Error::msg)?;
    eprintln!("train: done; last checkpoint {}", last.display());
    Ok(())
}

/// `sovereign resume`.
pub fn resume(args: &ResumeArgs) -> Result<()> {
    let last = run::resume::<Cpu>(&args.run, args.from.as_deref(), &Default::default())
        .map_err(anyhow::Error::msg)?;
    eprintln!("resume: done; last checkpoint {}", last.display());
    Ok(())
}
