//! The hosts file (docs/formats.md, DeepSpeed's form): one host per line, `hostname slots=N`, with an
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
    let mut hosts: Vec<Host> = Vec::new();
    let mut lines_of: Vec<usize> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        if let Some(at) = hosts.iter().position(|h| h.name == name) {
            bail!(
                "{n}: {name} is already listed on line {}; give each host once, with all its \
                 slots",
                lines_of[at]
            );
        }
        let (mut slots, mut devices) = (None, None);
        let mut seen: Vec<&str> = Vec::new();
        for word in words {
            if let Some((key, _)) = word.split_once('=') {
                if seen.contains(&key) {
                    bail!("{n}: {key}= is given twice; give it once");
                }
                seen.push(key);
            }
            match word.split_once('=') {
                Some(("slots", v)) => match v.parse::<u32>() {
                    Ok(s) if s > 0 => slots = Some(s),
                    _ => {
                        bail!("{n}: slots={v}: the slot count must be a whole number of at least 1")
                    }
                },
                Some(("devices", v)) => {
                    devices = Some(
                        v.split(',')
                            .map(|d| d.trim().parse::<u32>())
                            .collect::<Result<_, _>>()
                            .map_err(|_| {
                                anyhow::anyhow!(
                                    "{n}: devices={v}: give GPU numbers as in devices=0,1"
                                )
                            })?,
                    );
                }
                _ => bail!(
                    "{n}: {word:?} is not understood; a line reads `hostname slots=N [devices=0,1]`"
                ),
            }
        }
        let Some(slots) = slots else {
            bail!("{n}: slots= is missing; a line reads `{name} slots=N [devices=0,1]`");
        };
        let devices: Vec<u32> = devices.unwrap_or_default();
        if !devices.is_empty() && devices.len() != slots as usize {
            bail!(
                "{n}: {} devices for {slots} slots; give one device per slot",
                devices.len()
            );
        }
        lines_of.push(n);
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
    use proptest::prelude::*;

    /// Words a hosts file is made of, valid and not.
    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("localhost".to_string()),
            Just("node1".to_string()),
            "slots=[0-9x]{0,3}",
            "devices=[0-9,]{0,6}",
            "[a-z=#,0-9]{0,8}",
            Just("\n".to_string()),
            Just("#".to_string()),
        ]
    }

    proptest! {
        // The bounded part of the fuzzing of user files (bench/fuzz.sh runs more cases).
        #![proptest_config(ProptestConfig {
            cases: std::env::var("SOVEREIGN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn fuzz_hosts_file(words in proptest::collection::vec(word(), 0..24), spaces in any::<u64>()) {
            let text: String = words
                .iter()
                .enumerate()
                .map(|(i, w)| if spaces >> (i % 64) & 1 == 1 { format!("{w} ") } else { format!("{w}\t") })
                .collect();
            if let Ok(hosts) = parse_hosts(&text) {
                for (i, host) in hosts.iter().enumerate() {
                    prop_assert!(host.slots >= 1);
                    prop_assert!(host.devices.is_empty() || host.devices.len() == host.slots as usize);
                    prop_assert!(hosts[..i].iter().all(|h| h.name != host.name));
                }
            }
        }
    }

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
        let err = parse_hosts("node\n").unwrap_err().to_string();
        assert!(err.starts_with("1: slots= is missing"), "{err}");
        let err = parse_hosts("a slots=1\n\nb slots=2 slots=3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("3: slots= is given twice"), "{err}");
        let err = parse_hosts("a slots=1\nb slots=1\na slots=2\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("3: a is already listed on line 1"), "{err}");
    }
}
