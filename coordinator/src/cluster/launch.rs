//! Starting a generation's workers: local `sovereign-worker` processes, one ssh session per
//! remote slot, or nothing when Slurm, systemd or a person starts them and they dial in.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};

use anyhow::{Context, Result, bail};

use super::hosts::Host;
use crate::cli::Launcher;

/// How this run starts its workers.
pub struct Launch {
    /// Local processes, ssh sessions, or none.
    pub launcher: Launcher,
    /// The coordinator's address as workers dial it.
    pub address: String,
    /// The run's token file (local workers read it).
    pub token_file: PathBuf,
    /// The run's token (ssh workers get it on their stdin).
    pub token: String,
    /// The hosts file's lines.
    pub hosts: Vec<Host>,
    /// The ssh program and its options.
    pub ssh_command: Vec<String>,
    /// The worker binary on remote hosts.
    pub remote_worker: String,
    /// The TLS flags workers get (the same paths on every host).
    pub tls_args: Vec<String>,
}

/// A worker process this coordinator started (an ssh client, for remote slots).
pub struct Worker {
    /// The process.
    pub child: Child,
    /// Where it runs, for logs: "local" or "ssh to HOST".
    pub place: String,
}

impl Launch {
    /// Starts the workers of a (new) generation, one per slot of every host.
    pub fn start(&self) -> Result<Vec<Worker>> {
        let world: u32 = self.hosts.iter().map(|h| h.slots).sum();
        match self.launcher {
            Launcher::Local => {
                let worker = worker_binary()?;
                let mut started = Vec::new();
                for host in &self.hosts {
                    for device in slot_devices(host) {
                        let mut command = Process::new(&worker);
                        command
                            .arg("--coordinator")
                            .arg(&self.address)
                            .arg("--token-file")
                            .arg(&self.token_file)
                            .args(device.iter().flat_map(|d| ["--device", d]))
                            .args(&self.tls_args)
                            // Their own process group: Ctrl-C in the terminal reaches the
                            // coordinator only, which stops them after a checkpoint.
                            .process_group(0);
                        let child = command
                            .spawn()
                            .with_context(|| format!("cannot start {}", worker.display()))?;
                        started.push(Worker {
                            child,
                            place: "local".into(),
                        });
                    }
                }
                Ok(started)
            }
            Launcher::Ssh => {
                let mut started = Vec::new();
                for host in &self.hosts {
                    for device in slot_devices(host) {
                        started.push(self.start_over_ssh(&host.name, device.as_deref())?);
                    }
                }
                Ok(started)
            }
            Launcher::None => {
                tracing::info!(
                    "waiting for {world} workers: sovereign-worker --coordinator {} --token-file {}",
                    self.address,
                    self.token_file.display()
                );
                Ok(Vec::new())
            }
        }
    }

    /// One worker on `host` over ssh: the token is written to the session's stdin, which stays
    /// open for the worker's life (the worker stops when it closes).
    fn start_over_ssh(&self, host: &str, device: Option<&str>) -> Result<Worker> {
        let (program, options) = self
            .ssh_command
            .split_first()
            .context("--ssh-command is empty")?;
        let mut remote = vec![
            self.remote_worker.as_str(),
            "--coordinator",
            &self.address,
            "--token-file",
            "-",
        ];
        if let Some(device) = device {
            remote.extend(["--device", device]);
        }
        remote.extend(self.tls_args.iter().map(String::as_str));
        let remote: Vec<String> = remote.into_iter().map(shell_quote).collect();
        let mut child = Process::new(program)
            .args(options)
            .arg(host)
            .arg("--")
            .arg(remote.join(" "))
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run {program} (--ssh-command)"))?;
        let mut stdin = child.stdin.take().context("no stdin pipe to ssh")?;
        if let Err(e) = writeln!(stdin, "{}", self.token) {
            let _ = child.kill();
            bail!("cannot pass the token to the worker on {host} over ssh: {e}");
        }
        // The pipe stays open with the child: the worker reads EOF when this coordinator (or
        // its ssh) goes.
        child.stdin = Some(stdin);
        tracing::info!("started a worker on {host} over ssh (pid {})", child.id());
        Ok(Worker {
            child,
            place: format!("ssh to {host}"),
        })
    }
}

/// Refuses a hosts file that names other machines when the local launcher is to start the
/// workers.
pub fn check_local_hosts(launcher: Launcher, hosts: &[Host]) -> Result<()> {
    if launcher == Launcher::Local
        && let Some(remote) = hosts.iter().find(|h| !h.is_local())
    {
        bail!(
            "host {} is not this machine; the local launcher starts workers here only (use \
             --launcher ssh, or start remote workers yourself with --launcher none)",
            remote.name
        );
    }
    Ok(())
}

/// Per slot of `host`: the device it drives (`cuda:N` when the host lists devices).
fn slot_devices(host: &Host) -> Vec<Option<String>> {
    if host.devices.is_empty() {
        vec![None; host.slots as usize]
    } else {
        host.devices
            .iter()
            .map(|d| Some(format!("cuda:{d}")))
            .collect()
    }
}

/// `text` quoted for a POSIX shell (the remote side of ssh runs one).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Kills and reaps worker processes.
pub fn stop(workers: &mut Vec<Worker>) {
    for worker in workers.iter_mut() {
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
    workers.clear();
}

/// The `sovereign-worker` binary beside this one.
pub fn worker_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let worker = exe.with_file_name(format!("sovereign-worker{}", std::env::consts::EXE_SUFFIX));
    if !worker.exists() {
        bail!(
            "{} not found: build it beside sovereign (cargo build --release --workspace)",
            worker.display()
        );
    }
    Ok(worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let out = Process::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote("it's $HOME `x`")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's $HOME `x`");
    }

    #[test]
    fn slots_get_the_listed_devices() {
        let host = |devices: Vec<u32>| Host {
            name: "a".into(),
            slots: 2,
            devices,
        };
        assert_eq!(slot_devices(&host(vec![])), vec![None, None]);
        assert_eq!(
            slot_devices(&host(vec![2, 3])),
            vec![Some("cuda:2".into()), Some("cuda:3".into())]
        );
    }
}
