//! `/metrics`: the run's [`Status`] in Prometheus's text exposition format (version 0.0.4).
//! Every name starts with `sovereign_`; per-worker series carry `rank` and `host` labels.

use std::fmt::Write;

use super::board::{Status, WorkerState};

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Writes one metric family: its help, its type and its samples (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP sovereign_{name} {help}");
    let _ = writeln!(out, "# TYPE sovereign_{name} {kind}");
    for (labels, value) in samples {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "sovereign_{name}{labels} {value}");
    }
}

/// The status as Prometheus text.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let job = format!("job=\"{}\"", escape(&status.job));
    let one = |value: f64| vec![(job.clone(), value)];
    let some = |value: Option<f64>| value.map(&one).unwrap_or_default();
    family(
        &mut out,
        "up",
        "gauge",
        "1 while the run goes on, 0 once it finished or failed.",
        &one(f64::from(u8::from(status.state == "running"))),
    );
    let (done, total, help) = if status.unit == "tasks" {
        ("tasks_done", "tasks", "Map tasks")
    } else {
        ("step", "steps", "Training steps")
    };
    family(
        &mut out,
        done,
        "gauge",
        &format!("{help} finished."),
        &one(status.step as f64),
    );
    family(
        &mut out,
        total,
        "gauge",
        &format!("{help} in the run."),
        &one(status.steps as f64),
    );
    family(
        &mut out,
        "tokens_seen",
        "gauge",
        "Training tokens the model has learned from; it falls back when the group restarts \
         from a checkpoint.",
        &one(status.tokens_seen as f64),
    );
    family(
        &mut out,
        "elapsed_seconds",
        "gauge",
        "Seconds since the run (or its resume) started.",
        &one(status.elapsed_s),
    );
    family(
        &mut out,
        "eta_seconds",
        "gauge",
        "Seconds to the end at the rate so far.",
        &some(status.eta_s),
    );
    family(
        &mut out,
        "loss",
        "gauge",
        "Training loss of the last step (nats per token).",
        &some(status.loss),
    );
    family(
        &mut out,
        "val_loss",
        "gauge",
        "The last validation loss (nats per token).",
        &some(status.val_loss),
    );
    family(
        &mut out,
        "learning_rate",
        "gauge",
        "Learning rate of the last step.",
        &some(status.lr),
    );
    family(
        &mut out,
        "tokens_per_second",
        "gauge",
        "Training tokens per second in the last step.",
        &some(status.tokens_per_s),
    );
    family(
        &mut out,
        "allreduce_share",
        "gauge",
        "Share of the last step spent averaging gradients (0 to 1).",
        &some(status.allreduce_share),
    );
    family(
        &mut out,
        "restarts_total",
        "counter",
        "Times the group of workers restarted.",
        &one(f64::from(status.restarts)),
    );
    family(
        &mut out,
        "worker_failures_total",
        "counter",
        "Worker processes that died or stalled.",
        &one(f64::from(status.failures)),
    );
    let per_worker = |value: &dyn Fn(&super::board::WorkerRow) -> Option<f64>| {
        status
            .workers
            .iter()
            .filter_map(|w| {
                let labels = format!("rank=\"{}\",host=\"{}\"", w.rank, escape(&w.host));
                value(w).map(|v| (labels, v))
            })
            .collect::<Vec<_>>()
    };
    family(
        &mut out,
        "worker_step",
        "gauge",
        "The last step each worker finished.",
        &per_worker(&|w| Some(w.step as f64)),
    );
    family(
        &mut out,
        "worker_tokens_per_second",
        "gauge",
        "Each worker's training tokens per second in its last step.",
        &per_worker(&|w| Some(w.tokens_per_s)),
    );
    family(
        &mut out,
        "worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since each worker was last heard from.",
        &per_worker(&|w| w.heartbeat_age_s),
    );
    family(
        &mut out,
        "worker_restarts_total",
        "counter",
        "Times each worker was restarted after it died or stalled.",
        &per_worker(&|w| Some(f64::from(w.restarts))),
    );
    let states: Vec<(String, f64)> = status
        .workers
        .iter()
        .flat_map(|w| {
            [
                WorkerState::Joining,
                WorkerState::Training,
                WorkerState::Stalled,
                WorkerState::Dead,
                WorkerState::Restarted,
                WorkerState::Finished,
            ]
            .into_iter()
            .map(move |state| {
                let name = serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (
                    format!(
                        "rank=\"{}\",host=\"{}\",state=\"{name}\"",
                        w.rank,
                        escape(&w.host)
                    ),
                    f64::from(u8::from(w.state == state)),
                )
            })
        })
        .collect();
    family(
        &mut out,
        "worker_state",
        "gauge",
        "1 for the state each worker is in, 0 for the others.",
        &states,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
