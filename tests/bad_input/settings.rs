//! Settings validated before any work; a non-finite loss names its cause.

use crate::support::*;

#[test]
fn bad_settings_are_refused_before_any_work() {
    let (dir, data) = prepared_copy();
    let out = dir.path().join("run");
    for (flags, expected) in [
        (vec!["--lr=-1"], "--lr -1 must be a positive finite number"),
        (
            vec!["--lr", "NaN"],
            "--lr NaN must be a positive finite number",
        ),
        (
            vec!["--lr", "inf"],
            "--lr inf must be a positive finite number",
        ),
        (
            vec!["--lr", "0.1", "--min-lr", "1"],
            "--min-lr 1 must be between 0 and --lr 0.1",
        ),
        (vec!["--min-lr=-0.1"], "--min-lr -0.1 must be between 0"),
        (
            vec!["--warmup", "30"],
            "--warmup 30 is longer than the run's --steps 4",
        ),
        (
            vec!["--weight-decay=-1"],
            "--weight-decay -1 must be a finite number of at least 0",
        ),
        (
            vec!["--dropout", "1"],
            "--dropout 1 must be at least 0 and below 1",
        ),
        (
            vec!["--seq-len", "100001"],
            "--seq-len 100001 must be a positive multiple of 16",
        ),
        (vec!["--seq-len", "99984"], "needs windows of 99985 tokens"),
        (
            vec!["--seq-len", "1312", "--micro-bsz", "64"],
            "--micro-bsz 64 needs as many different windows of 1313 tokens",
        ),
        (
            vec!["--wire-dtype", "f16"],
            "invalid value 'f16' for '--wire-dtype",
        ),
    ] {
        let args = with(train_args(&data, &out, "4"), &flags);
        let out_status = sovereign(&strs(&args));
        let err = stderr(&out_status);
        assert_ne!(out_status.status.code(), Some(0), "{flags:?}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
        assert!(err.contains(expected), "{flags:?}: {err}");
        let leftovers = if out.exists() { names(&out) } else { vec![] };
        assert!(
            leftovers.iter().all(|n| n == "lock"),
            "{flags:?} left {leftovers:?}"
        );
    }
    // The same checks hold for a run.toml.
    let toml = dir.path().join("run.toml");
    fs::write(&toml, "lr = -0.001\n").unwrap();
    let mut args = train_args(&data, &out, "4");
    args.extend(["--config".to_string(), path_str(&toml).to_string()]);
    let err = refused(&strs(&args));
    assert!(
        err.contains("--lr -0.001 must be a positive finite number"),
        "{err}"
    );
    fs::write(&toml, "wire_dtype = \"f16\"\n").unwrap();
    let err = refused(&strs(&args));
    assert!(err.contains("run.toml: not a valid run config"), "{err}");
    assert!(err.contains("unknown variant `f16`"), "{err}");
}

#[test]
fn a_non_finite_loss_at_the_first_step_blames_the_weights_not_the_learning_rate() {
    let (dir, data) = prepared_copy();
    let nan = nan_weights(dir.path());
    let out = dir.path().join("run");
    let mut args = train_args(&data, &out, "4");
    args.extend(["--init-from".to_string(), path_str(&nan).to_string()]);
    let err = refused(&strs(&args));
    assert!(
        err.contains("step 1: the loss is NaN before any update"),
        "{err}"
    );
    assert!(err.contains("--init-from"), "{err}");
    assert!(!err.contains("lower --lr"), "{err}");
}
