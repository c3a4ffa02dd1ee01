//! Progress for long stages: a self-rewriting status line on a terminal (items, items/s, MB/s,
//! percent and ETA), a plain log line every half minute otherwise; and a training run's bar on a
//! terminal ([`StepBar`]), with the log lines written above it ([`LogWriter`]).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// The [`StepBar`] on the terminal now, if any: log lines are written above it.
static SHOWN_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Reports the progress of one stage on standard error.
pub struct Progress {
    label: &'static str,
    unit: &'static str,
    total_bytes: Option<u64>,
    start: Instant,
    last: Instant,
    interval: Duration,
    terminal: bool,
    printed: bool,
}

impl Progress {
    /// A reporter for `label` counting `unit`s (e.g. "pages"), over `total_bytes` of input when
    /// known.
    pub fn new(label: &'static str, unit: &'static str, total_bytes: Option<u64>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let now = Instant::now();
        Self {
            label,
            unit,
            total_bytes,
            start: now,
            last: now,
            interval: if terminal {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(30)
            },
            terminal,
            printed: false,
        }
    }

    /// Records that `items` units and `bytes` input bytes are done, printing when due.
    pub fn update(&mut self, items: u64, bytes: u64) {
        if self.last.elapsed() >= self.interval {
            self.last = Instant::now();
            self.print(items, bytes);
        }
    }

    /// Ends the status line (on a terminal) so that what follows starts on a fresh line.
    pub fn finish(&mut self) {
        if self.terminal && self.printed {
            eprintln!();
        }
    }

    /// Seconds since the reporter was created.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn print(&mut self, items: u64, bytes: u64) {
        let secs = self.elapsed().max(1e-9);
        let mut line = format!(
            "{}: {items} {} ({:.0} {}/s), {:.1} MB/s",
            self.label,
            self.unit,
            items as f64 / secs,
            self.unit,
            bytes as f64 / secs / 1e6
        );
        if let Some(total) = self.total_bytes.filter(|&t| t > 0 && bytes > 0) {
            let fraction = (bytes as f64 / total as f64).min(1.0);
            let eta = secs * (1.0 - fraction) / fraction;
            line.push_str(&format!(
                ", {:.1}%, ETA {}",
                fraction * 100.0,
                format_duration(eta)
            ));
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        self.printed = true;
    }
}

/// A training run's progress bar on a terminal (indicatif): step of steps, the step's loss and
/// tokens/s, ETA. Lines printed through it appear above the bar.
pub struct StepBar {
    bar: indicatif::ProgressBar,
}

impl StepBar {
    /// A bar for a run of `steps` steps when standard error is a terminal; `None` otherwise
    /// (the steps are then logged as lines).
    pub fn on_terminal(steps: u64) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(steps);
        let style =
            indicatif::ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        *lock(&SHOWN_BAR) = Some(bar.clone());
        Some(Self { bar })
    }

    /// Step `step` done, described by `message`. The first update after a (re)start sets the
    /// position without counting the steps before it towards the rate.
    pub fn update(&self, step: u64, message: &str) {
        if self.bar.position() == 0 && step > 1 {
            self.bar.set_position(step - 1);
            self.bar.reset_eta();
        }
        self.bar.set_message(message.to_string());
        self.bar.set_position(step);
    }

    /// Prints `line` above the bar.
    pub fn println(&self, line: &str) {
        self.bar.println(line);
    }
}

impl Drop for StepBar {
    /// Leaves the bar where it stopped.
    fn drop(&mut self) {
        *lock(&SHOWN_BAR) = None;
        self.bar.abandon();
    }
}

/// Standard error for one log line (the logger makes one per line): while a [`StepBar`] is
/// shown, the line is written with the bar lifted and drawn again below it, so that neither
/// overdraws the other.
#[derive(Default)]
pub struct LogWriter {
    line: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    /// Writes the line.
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.line);
        };
        let bar = lock(&SHOWN_BAR).clone();
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// "1h02m", "3m07s", "42s".
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::format_duration;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(42.2), "42s");
        assert_eq!(format_duration(187.0), "3m07s");
        assert_eq!(format_duration(3720.0), "1h02m");
    }
}
