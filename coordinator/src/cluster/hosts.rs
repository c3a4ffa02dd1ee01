//! The hosts file (DESIGN §3, DeepSpeed's form): one host per line, `hostname slots=N`, with an
//! optional `devices=0,1,…`; `#` starts a comment. Errors name the file and line.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// One line of a hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The host name or address.
    pub name: String,
    /// Worker processes on it.
    pub slots: u32,
    /// GPUs to use, one per slot (empty: CPU workers).
    pub devices: Vec<u32>,
}

impl Host {
    /// Whether this host is the machine the coordinator runs on.
    pub fn is_local(&self) -> bool {
        matches!(self.name.as_str(), "localhost" | "127.0.0.1" | "::1")
    }
}

/// Reads and checks a hosts file.
pub fn read_hosts(path: &Path) -> Result<Vec<Host>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the hosts file {}", path.display()))?;
    parse_hosts(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
}

/// Parses hosts-file text; an error starts with the line number.
pub fn parse_hosts(text: &str) -> Result<Vec<Host>> {
    let mut hosts = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let (mut slots, mut devices) = (None, Vec::new());
        for word in words {
            match word.split_once('=') {
                Some(("slots", v)) => match v.parse::<u32>() {
                    Ok(s) if s > 0 => slots = Some(s),
                    _ => {
                        bail!("{n}: slots={v}: the slot count must be a whole number of at least 1")
                    }
                },
                Some(("devices", v)) => {
                    devices = v
                        .split(',')
                        .map(|d| d.trim().parse::<u32>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| {
                            anyhow::anyhow!("{n}: devices={v}: give GPU numbers as in devices=0,1")
                        })?;
                }
                _ => bail!(
                    "{n}: {word:?} is not understood; a line reads `hostname slots=N [devices=0,1]`"
                ),
            }
        }
        let slots = slots.unwrap_or(1);
        if !devices.is_empty() && devices.len() != slots as usize {
            bail!(
                "{n}: {} devices for {slots} slots; give one device per slot",
                devices.len()
            );
        }
        hosts.push(Host {
            name,
            slots,
            devices,
        });
    }
    if hosts.is_empty() {
        bail!("1: no hosts listed; a local run reads `localhost slots=2`");
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_errors() {
        let hosts =
            parse_hosts("# cluster\nlocalhost slots=2\n\ngpu1 slots=2 devices=0,1 # two GPUs\n")
                .unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            hosts[0],
            Host {
                name: "localhost".into(),
                slots: 2,
                devices: vec![]
            }
        );
        assert_eq!(hosts[1].devices, [0, 1]);
        assert!(hosts[0].is_local() && !hosts[1].is_local());
        let err = parse_hosts("localhost slots=2\nnode slots=x\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("2: slots=x"), "{err}");
        let err = parse_hosts("node slots=2 devices=0\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("1: 1 devices for 2 slots"), "{err}");
        let err = parse_hosts("node cpus=4\n").unwrap_err().to_string();
        assert!(err.contains("not understood"), "{err}");
        assert!(parse_hosts("# nothing\n").is_err());
    }
}
