//! How workers reach a run, with real processes: a worker without the data, or with a copy that
//! differs, fetches its byte range from the coordinator and trains the same weights (and needs
//! no copy of the run's tokenizer); the ssh
//! launcher starts workers through a real sshd on localhost (its own host key, an authorized
//! key made for the test) and restarts them when a session dies.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sovereign_test_support::{binary, binary_path, path_str, stderr, train_tokenizer};
use sovereign_tests::cluster::{
    assert_same_weights_as_uninterrupted, coordinator_address, setup, signal, start_coordinator,
    wait_for_line, wait_for_steps,
};

#[test]
fn workers_without_the_data_fetch_their_ranges_from_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    let train = fs::read(p("train.bin")).unwrap();
    fs::write(p("val.bin"), &train[..4000]).unwrap();
    fs::write(p("hosts.txt"), "localhost slots=2\n").unwrap();
    // The run names a tokenizer (its vocabulary size, and the evaluation's sample), which only
    // the coordinator's machine has.
    fs::create_dir(p("tok")).unwrap();
    fs::write(
        p("corpus.txt"),
        "O Brasil é um país da América do Sul.\n\n".repeat(50),
    )
    .unwrap();
    train_tokenizer(&p("corpus.txt"), 300, &p("tok/tokenizer.json"));
    let run_toml = fs::read_to_string(p("run.toml")).unwrap();
    let tokenizer = format!("tokenizer = {:?}", path_str(&p("tok/tokenizer.json")));
    fs::write(p("run.toml"), run_toml.replace("vocab = 16", &tokenizer)).unwrap();
    let (mut coordinator, lines) = start_coordinator(
        dir.path(),
        &["--launcher", "none", "--val-data", path_str(&p("val.bin"))],
    );
    let address = coordinator_address(&lines);
    fs::rename(p("tok"), p("elsewhere")).unwrap();
    let token = p("cluster/token");
    let worker = |data_dir: &str, cache: &str| {
        binary("sovereign-worker")
            .args(["--coordinator", &address, "--token-file", path_str(&token)])
            .args(["--data-dir", path_str(&p(data_dir))])
            .args(["--cache-dir", path_str(&p(cache))])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Rank 0 has no data at all: it fetches its shard of train.bin and all of val.bin.
    let rank0 = worker("nowhere", "cache0");
    wait_for_line(&lines, "joined as rank 0", Duration::from_secs(30));
    // Rank 1 has a copy of train.bin with one byte changed in its shard.
    let mut stale = train.clone();
    let last = stale.len() - 2;
    stale[last] ^= 1;
    fs::create_dir(p("stale")).unwrap();
    fs::write(p("stale/train.bin"), &stale).unwrap();
    let rank1 = worker("stale", "cache1");
    let (rank0, rank1) = (
        rank0.wait_with_output().unwrap(),
        rank1.wait_with_output().unwrap(),
    );
    assert!(
        rank0.status.success(),
        "{}\n{}",
        stderr(&rank0),
        stderr(&rank1)
    );
    assert!(rank1.status.success(), "{}", stderr(&rank1));
    assert!(coordinator.wait().unwrap().success());

    let half = (train.len() / 4 * 2) as u64;
    let log0 = stderr(&rank0);
    assert!(
        log0.contains(&format!("fetching bytes [0, {half}) of train")),
        "{log0}"
    );
    assert!(log0.contains("fetching bytes [0, 4000) of val"), "{log0}");
    let log1 = stderr(&rank1);
    assert!(
        log1.contains("have sha256") && log1.contains(&format!("fetching bytes [{half}, ")),
        "{log1}"
    );
    // The cached copies hold exactly the original bytes of their ranges.
    let cached = |cache: &str, name: &str| {
        let dir = fs::read_dir(p(cache)).unwrap().map(|e| e.unwrap().path());
        dir.map(|d| d.join(name))
            .find(|f| f.exists())
            .map(|f| fs::read(f).unwrap())
            .unwrap()
    };
    let copy0 = cached("cache0", "train.bin");
    assert_eq!(copy0.len(), train.len());
    assert_eq!(copy0[..half as usize], train[..half as usize]);
    let copy1 = cached("cache1", "train.bin");
    assert_eq!(copy1[half as usize..], train[half as usize..]);
    assert_eq!(cached("cache0", "val.bin"), train[..4000]);
    // Checkpoints record the coordinator's paths, not rank 0's cache, so `resume` finds the data.
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(p("cluster/ckpt-000020/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["config"]["data"], path_str(&p("train.bin")));
    assert_eq!(meta["config"]["val_data"], path_str(&p("val.bin")));
    // Evaluation ran on the fetched val.bin, and the weights are those of a run with the data.
    let metrics = fs::read_to_string(p("cluster/metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert!(
        last["val_loss"].as_f64().is_some_and(f64::is_finite),
        "{last}"
    );
    // Rank 0 wrote the evaluation's sample with the tokenizer the coordinator sent.
    let events = fs::read_to_string(p("cluster/events.jsonl")).unwrap();
    let sample = events
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| event["kind"] == "evaluation")
        .and_then(|event| event["sample"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no evaluation with a sample in {events}"));
    assert!(sample.starts_with("O Brasil é"), "{sample:?}");
    fs::rename(p("elsewhere"), p("tok")).unwrap();
    assert_same_weights_as_uninterrupted(dir.path());
}

/// A real OpenSSH server on a free loopback port with its own host key, accepting one generated
/// user key; its log lines arrive on a channel.
struct Sshd {
    process: Child,
    port: u16,
    user_key: PathBuf,
    log: mpsc::Receiver<String>,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Starts sshd in `dir`, or says why it cannot (not installed; with
/// `SOVEREIGN_REQUIRE_SSHD=1`, set by CI after installing it, that fails the test).
fn start_sshd(dir: &Path) -> Option<Sshd> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        assert!(
            std::env::var_os("SOVEREIGN_REQUIRE_SSHD").is_none(),
            "SOVEREIGN_REQUIRE_SSHD is set but /usr/sbin/sshd is not installed"
        );
        eprintln!("NOT RUN: /usr/sbin/sshd is not installed (Debian: openssh-server)");
        return None;
    }
    let keygen = |name: &str| {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(name))
            .status()
            .unwrap();
        assert!(status.success(), "ssh-keygen failed");
    };
    keygen("host_key");
    keygen("user_key");
    fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
             PidFile {pid}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n",
            host = dir.join("host_key").display(),
            keys = dir.join("authorized_keys").display(),
            pid = dir.join("sshd.pid").display(),
        ),
    )
    .unwrap();
    // sshd's privilege-separation directory.
    fs::create_dir_all("/run/sshd").ok();
    let mut process = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, log) = mpsc::channel();
    let pipe = process.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Sshd {
        process,
        port,
        user_key: dir.join("user_key"),
        log,
    })
}

/// Whether a process whose command line contains `needle` is running.
fn running(needle: &str) -> bool {
    fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(needle))
    })
}

#[test]
fn the_ssh_launcher_starts_workers_through_a_real_sshd_and_restarts_them() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let Some(sshd) = start_sshd(dir.path()) else {
        return;
    };
    let ssh = format!(
        "ssh -p {} -i {} -o BatchMode=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        sshd.port,
        sshd.user_key.display()
    );
    let worker = binary_path("sovereign-worker");
    fs::write(dir.path().join("hosts.txt"), "localhost slots=2\n").unwrap();
    let (mut coordinator, lines) = start_coordinator(
        dir.path(),
        &[
            "--launcher",
            "ssh",
            "--ssh-command",
            &ssh,
            "--remote-worker",
            path_str(&worker),
        ],
    );
    let address = coordinator_address(&lines);
    let run = dir.path().join("cluster");
    wait_for_steps(&run, 12);
    // Closing one ssh session stops its worker; the group restarts over ssh.
    let (line, _) = wait_for_line(&lines, "over ssh (pid", Duration::from_secs(1));
    let ssh_pid: u32 = line
        .split("over ssh (pid ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(')').parse().ok())
        .unwrap();
    signal(ssh_pid, "-KILL");
    let (line, _) = wait_for_line(&lines, "died", Duration::from_secs(10));
    assert!(
        line.contains(&format!("started by ssh to localhost (pid {ssh_pid}) died")),
        "{line}"
    );
    wait_for_line(&lines, "restarting the group", Duration::from_secs(10));
    assert!(coordinator.wait().unwrap().success());
    let logins = sshd
        .log
        .try_iter()
        .filter(|l| l.contains("Accepted publickey"))
        .count();
    assert!(
        logins >= 4,
        "2 workers, then 2 again after the restart: {logins} logins"
    );
    // No worker outlives its ssh session or the run.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&address) {
        assert!(
            Instant::now() < deadline,
            "a worker of {address} is still running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_same_weights_as_uninterrupted(dir.path());
}

/// A CA and a certificate it signed for 127.0.0.1/localhost (client and server use), made with
/// the openssl command line in `dir` as `<name>-ca.pem`, `<name>.pem`, `<name>.key`.
fn make_certificates(dir: &Path, name: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_key, ca) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    let (key, csr, cert) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca, "-days", "2"]);
    args.extend(["-subj", "/CN=sovereign test CA"]);
    run(&args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    run(&args);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn mutual_tls_trains_and_keeps_out_workers_without_the_runs_certificate() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    make_certificates(dir.path(), "run");
    make_certificates(dir.path(), "other");
    let tls = |name: &str, ca: &str| {
        [
            "--tls-cert".to_string(),
            path_str(&p(&format!("{name}.pem"))).to_string(),
            "--tls-key".to_string(),
            path_str(&p(&format!("{name}.key"))).to_string(),
            "--tls-ca".to_string(),
            path_str(&p(&format!("{ca}-ca.pem"))).to_string(),
        ]
    };
    fs::write(p("hosts.txt"), "localhost slots=2\n").unwrap();
    let ours = tls("run", "run");
    let mut args = vec!["--launcher", "none"];
    args.extend(ours.iter().map(String::as_str));
    let (mut coordinator, lines) = start_coordinator(dir.path(), &args);
    let address = coordinator_address(&lines);
    let worker = |tls: &[String]| {
        binary("sovereign-worker")
            .args(["--coordinator", &address, "--token-file"])
            .arg(p("cluster/token"))
            .args(tls)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // With the token but without TLS, or with a certificate of another CA: no way in.
    for (what, flags) in [
        ("plain", Vec::new()),
        ("other CA", tls("other", "other").to_vec()),
    ] {
        let out = worker(&flags).wait_with_output().unwrap();
        assert!(!out.status.success(), "a {what} worker joined");
        eprintln!("{what} worker: {}", stderr(&out).trim());
    }
    let workers = [worker(&ours), worker(&ours)];
    for out in workers.map(|w| w.wait_with_output().unwrap()) {
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(coordinator.wait().unwrap().success());
    let (line, _) = wait_for_line(&lines, "mutual TLS on", Duration::from_secs(1));
    eprintln!("{line}");
    assert_same_weights_as_uninterrupted(dir.path());
}

#[test]
fn nccl_is_refused_for_workers_that_cannot_use_it_and_gpus_need_a_cuda_build() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    fs::write(p("hosts.txt"), "localhost slots=2\n").unwrap();
    let train = |extra: &[&str]| {
        binary("sovereign")
            .args(["train", "--config", path_str(&p("run.toml")), "--data"])
            .arg(p("train.bin"))
            .args(["--out", path_str(&p("run"))])
            .args(extra)
            .output()
            .unwrap()
    };
    // CPU workers cannot all-reduce over NCCL: one clear refusal, no restarts.
    let out = train(&["--hosts", path_str(&p("hosts.txt")), "--collective", "nccl"]);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(log.contains("error: --collective nccl: rank 0 ("), "{log}");
    assert!(
        log.contains("cannot use NCCL (it trains on the CPU); use --collective auto or grpc"),
        "{log}"
    );
    assert!(!log.contains("restarting the group"), "{log}");
    // --gpus on a build without CUDA says what to build.
    fs::remove_dir_all(p("run")).ok();
    let out = train(&["--gpus", "0,1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("need a build with CUDA: cargo build --release -p sovereign-coordinator"),
        "{}",
        stderr(&out)
    );
    let out = train(&["--gpus", "0,x"]);
    assert!(
        stderr(&out).contains("--gpus 0,x: devices=0,x: give GPU numbers"),
        "{}",
        stderr(&out)
    );
}
