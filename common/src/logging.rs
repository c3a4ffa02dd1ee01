//! Logging for the binaries: plain lines on standard error (colours only on a terminal; above a
//! training run's progress bar when one is shown), at info level unless `RUST_LOG` says
//! otherwise.

/// Installs the global subscriber; call once at the start of `main`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriter::default)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}
