//! `sovereign plot RUN_DIR`: the run's training and validation loss against the step, drawn from
//! `metrics.jsonl` into a PNG (plotters into an RGB buffer, then png, written atomically).

use std::path::Path;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use plotters::style::FontStyle;
use sovereign_common::output::{AtomicFile, refuse_inputs};
use sovereign_common::train::record::{METRICS_FILE, StepRecord, read_metrics};

use crate::cli::PlotArgs;

/// Picture size in pixels.
const SIZE: (u32, u32) = (1200, 700);

/// Fonts tried for the labels, in order; without any the plot is drawn without text.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Draws `RUN_DIR/metrics.jsonl` to `--output` (default `RUN_DIR/loss.png`).
pub fn plot(args: &PlotArgs) -> Result<()> {
    let metrics_path = args.run.join(METRICS_FILE);
    if !metrics_path.is_file() {
        bail!(
            "cannot read {} (is this a run directory made by `sovereign train`?)",
            metrics_path.display()
        );
    }
    let metrics = read_metrics(&metrics_path).map_err(anyhow::Error::msg)?;
    if metrics.is_empty() {
        bail!(
            "{} has no steps yet: nothing to plot",
            metrics_path.display()
        );
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.run.join("loss.png"));
    refuse_inputs(&[&output], &[&metrics_path])?;
    let labels = register_font();
    if !labels {
        eprintln!(
            "warning: no TrueType font found ({}); the plot has no labels",
            FONT_PATHS[0]
        );
    }
    let rgb = draw(&metrics, &args.run, labels)?;
    write_png(&output, &rgb)?;
    let evaluations = metrics.iter().filter(|m| m.val_loss.is_some()).count();
    println!(
        "wrote {} ({} steps, {} evaluations)",
        output.display(),
        metrics.len(),
        evaluations
    );
    Ok(())
}

/// Registers the first font found as "sans-serif"; false when there is none.
fn register_font() -> bool {
    FONT_PATHS.iter().any(|path| {
        std::fs::read(path).is_ok_and(|bytes| {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

/// The loss curves as an RGB buffer of [`SIZE`].
fn draw(metrics: &[StepRecord], run: &Path, labels: bool) -> Result<Vec<u8>> {
    let mut rgb = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    let train: Vec<(f64, f64)> = metrics
        .iter()
        .filter(|m| m.loss.is_finite())
        .map(|m| (m.step as f64, m.loss))
        .collect();
    let val: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|m| m.val_loss.map(|v| (m.step as f64, v)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let all = train.iter().chain(&val);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| {
        (lo.min(y), hi.max(y))
    });
    if !lo.is_finite() {
        bail!("no finite loss in the metrics");
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let last_step = metrics.iter().map(|m| m.step).max().unwrap_or(1).max(2) as f64;
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if labels {
            builder
                .caption(format!("{}: loss", run.display()), ("sans-serif", 26))
                .x_label_area_size(50)
                .y_label_area_size(70);
        }
        let mut chart = builder
            .build_cartesian_2d(1f64..last_step, (lo - pad)..(hi + pad))
            .map_err(plot_error)?;
        let mut mesh = chart.configure_mesh();
        if labels {
            mesh.x_desc("step").y_desc("loss (nats/token)");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(plot_error)?;
        let train_series = chart
            .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))
            .map_err(plot_error)?;
        if labels {
            train_series
                .label("train")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        }
        if !val.is_empty() {
            chart
                .draw_series(val.iter().map(|&p| Circle::new(p, 4, RED.filled())))
                .map_err(plot_error)?;
            let val_series = chart
                .draw_series(LineSeries::new(val, RED.stroke_width(2)))
                .map_err(plot_error)?;
            if labels {
                val_series.label("validation").legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2))
                });
            }
        }
        if labels {
            chart
                .configure_series_labels()
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(rgb)
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot failed: {e}")
}

/// Encodes `rgb` as a PNG at `path`, whole or not at all.
fn write_png(path: &Path, rgb: &[u8]) -> Result<()> {
    let context = || format!("cannot write {}", path.display());
    let mut file = AtomicFile::create(path).with_context(context)?;
    {
        let mut encoder = png::Encoder::new(&mut file, SIZE.0, SIZE.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().with_context(context)?;
        writer.write_image_data(rgb).with_context(context)?;
        writer.finish().with_context(context)?;
    }
    file.commit().with_context(context)
}
