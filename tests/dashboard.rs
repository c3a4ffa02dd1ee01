//! The dashboard as a person and a scraper see it: a two-worker run watched in headless Chromium
//! (driven through chromedriver) while it trains and after a worker is killed; `/metrics` read
//! by a Prometheus text-format parser and `/api/status` against the run's own files; 200 idle
//! connections and garbage requests while steps go on; the token off loopback; the events a run
//! leaves in events.jsonl, with the sample of each evaluation.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;
use sovereign_test_support::{binary, path_str, programs};
use sovereign_tests::cluster::{signal, spawn_logged, wait_for_line, worker_pids};
use sovereign_tests::prepare_demo_data;

/// The demo dump as a corpus, a 300-token tokenizer and its ids as train.bin and val.bin (the
/// same ids: the demo has four documents, too few to hold some out), made once.
fn prepared() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        prepare_demo_data(dir.path(), &["train.bin", "val.bin"]);
        dir
    })
    .path()
}

/// `sovereign train` of the micro model on [`prepared`] data into `out`, `steps` steps with an
/// evaluation and a checkpoint every `every`, and `extra` flags; its log lines on a channel.
fn start_train(out: &Path, steps: u64, every: u64, extra: &[&str]) -> (Child, Receiver<String>) {
    let data = prepared();
    let mut command = binary("sovereign");
    command
        .args([
            "train",
            "--model",
            "micro",
            "--seq-len",
            "32",
            "--micro-bsz",
            "2",
        ])
        .args(["--warmup", "5", "--lr", "0.003", "--eval-batches", "2"])
        .args(["--steps", &steps.to_string()])
        .args(["--eval-every", &every.to_string()])
        .args(["--checkpoint-every", &every.to_string()])
        .arg("--data")
        .arg(data.join("train.bin"))
        .arg("--val-data")
        .arg(data.join("val.bin"))
        .arg("--tokenizer")
        .arg(data.join("tokenizer.json"))
        .arg("--out")
        .arg(out)
        .args(extra);
    spawn_logged(command)
}

/// The host:port of the "dashboard: http://HOST:PORT/" log line.
fn dashboard_address(lines: &Receiver<String>) -> String {
    let (line, _) = wait_for_line(lines, "dashboard: http://", Duration::from_secs(60));
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

/// A plain HTTP/1.1 request; the status code and the body.
fn http(address: &str, request_line: &str, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (code, body)
}

fn get(address: &str, path: &str) -> (u16, String) {
    http(address, &format!("GET {path}"), "")
}

fn metrics_lines(run: &Path) -> Vec<Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sovereign dashboard RUN --bind BIND`, its address once it serves.
fn serve_run_dir(run: &Path, bind: &str) -> (Killed, String) {
    let mut command = binary("sovereign");
    command.arg("dashboard").arg(run).args(["--bind", bind]);
    let (child, lines) = spawn_logged(command);
    let child = Killed(child);
    let address = dashboard_address(&lines);
    (child, address.replace("0.0.0.0", "127.0.0.1"))
}

#[test]
fn metrics_and_status_hold_the_runs_facts_and_hostile_clients_do_not_stall_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let steps = 120;
    let (trainer, lines) = start_train(&run, steps, 40, &["--dashboard"]);
    let mut trainer = Killed(trainer);
    let address = dashboard_address(&lines);
    wait_until("step 5", Duration::from_secs(120), || {
        metrics_lines(&run).len() >= 5
    });
    // `sovereign dashboard RUN_DIR` follows the run's files from here on.
    let (follower, followed) = serve_run_dir(&run, "127.0.0.1:0");

    // 200 idle connections and 20 that send garbage, held open while the run goes on.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    let garbage: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut stream = TcpStream::connect(&address).unwrap();
            let junk: Vec<u8> = (0..4096u32).map(|b| (b * 7 + i) as u8).collect();
            let _ = stream.write_all(&junk);
            stream
        })
        .collect();
    let before = metrics_lines(&run).len();
    let started = Instant::now();
    wait_until("five more steps", Duration::from_secs(60), || {
        metrics_lines(&run).len() >= before + 5
    });
    eprintln!(
        "with 200 idle and 20 garbage connections open: steps {before} → {} in {:.2?}",
        metrics_lines(&run).len(),
        started.elapsed()
    );
    let (code, body) = get(&address, "/api/status");
    assert_eq!(code, 200, "{body}");
    let live: Value = serde_json::from_str(&body).unwrap();
    assert!(
        live["step"].as_u64().unwrap() >= before as u64 + 5,
        "{live}"
    );
    let (code, _) = http(&address, "POST /api/status", "Content-Length: 0\r\n");
    assert_eq!(code, 405, "the dashboard is read-only");
    drop((idle, garbage));
    assert!(trainer.0.wait().unwrap().success());

    // The run followed from its files: once it finished, the same facts as its metrics.jsonl.
    let address = followed;
    wait_until(
        "the follower to see the end",
        Duration::from_secs(10),
        || {
            let (_, body) = get(&address, "/api/status");
            serde_json::from_str::<Value>(&body)
                .is_ok_and(|s| s["state"] == "finished" && s["step"] == steps)
        },
    );
    let metrics = metrics_lines(&run);
    let last = metrics.last().unwrap();
    let (code, body) = get(&address, "/api/status");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["step"], steps);
    assert_eq!(status["steps"], steps);
    assert_eq!(status["state"], "finished");
    assert_eq!(status["tokens_seen"], steps * 32 * 2);
    assert_eq!(status["loss"], last["loss"]);
    assert_eq!(status["val_loss"], last["val_loss"]);
    assert_eq!(status["workers"].as_array().unwrap().len(), 1);
    assert_eq!(status["workers"][0]["pid"], trainer.0.id());

    let (code, text) = get(&address, "/metrics");
    assert_eq!(code, 200, "{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    use prometheus_parse::Value::{Counter, Gauge};
    assert!(matches!(value("sovereign_step").value, Gauge(v) if v == steps as f64));
    assert!(matches!(value("sovereign_tokens_seen").value, Gauge(v) if v == (steps * 64) as f64));
    assert!(
        matches!(value("sovereign_loss").value, Gauge(v) if v == last["loss"].as_f64().unwrap())
    );
    assert!(matches!(value("sovereign_up").value, Gauge(v) if v == 0.0));
    assert!(matches!(value("sovereign_restarts_total").value, Counter(v) if v == 0.0));
    let worker = value("sovereign_worker_step");
    assert_eq!(worker.labels.get("rank"), Some("0"));
    assert!(worker.labels.get("host").is_some_and(|h| !h.is_empty()));
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.metric.starts_with("sovereign_"))
    );
    drop(follower);

    // events.jsonl: the start, the rank, every evaluation with its sample, every checkpoint.
    let events: Vec<Value> = fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "joined",
            "evaluation",
            "checkpoint",
            "evaluation",
            "checkpoint",
            "evaluation",
            "checkpoint",
            "finished"
        ]
    );
    for (event, step) in events
        .iter()
        .filter(|e| e["kind"] == "evaluation")
        .zip([40, 80, 120])
    {
        assert_eq!(event["step"], step);
        let sample = event["sample"].as_str().unwrap();
        assert!(sample.starts_with("O Brasil é"), "{sample:?}");
        assert!(sample.len() > "O Brasil é".len(), "{sample:?}");
        let line = &metrics[step as usize - 1];
        assert_eq!(event["val_loss"], line["val_loss"]);
    }

    // Off loopback, every request needs the run's token.
    let (_server, address) = serve_run_dir(&run, "0.0.0.0:0");
    let token = fs::read_to_string(run.join("token")).unwrap();
    assert_eq!(get(&address, "/api/status").0, 401);
    assert_eq!(get(&address, "/?token=wrong").0, 401);
    assert_eq!(get(&address, &format!("/?token={token}")).0, 200);
    let bearer = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(http(&address, "GET /metrics", &bearer).0, 200);
}

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    _driver: Killed,
    client: fantoccini::Client,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Killed(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let capabilities: serde_json::Map<String, Value> =
            serde_json::from_value(serde_json::json!({
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1500"],
                }
            }))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Self {
                        _driver: driver,
                        client,
                    };
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "chromedriver: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// What the page shows: per worker row its rank, pid and state; the points of the loss
    /// curve; the step in the progress line; the event log's lines; the states each row went
    /// through since [`WATCH_ROWS`] ran; the validation curve's points and its step labels.
    async fn page(&self) -> Value {
        self.client
            .execute(
                r##"
                const rows = [...document.querySelectorAll("#workers tr")].map((r) => ({
                  rank: Number(r.dataset.rank),
                  pid: Number(r.children[2].textContent),
                  state: r.querySelector(".state").textContent,
                }));
                const progress = document.getElementById("progress").textContent;
                return {
                  rows,
                  points: document.querySelector("#chart-loss polyline").points.length,
                  step: Number((progress.match(/step (\d+) of/) || [0, -1])[1]),
                  events: [...document.querySelectorAll("#events li")].map((li) => li.textContent),
                  seen: window.seenStates || null,
                  val_points: Number(document.getElementById("chart-val_loss").dataset.points),
                  val_axis: [...document.querySelectorAll("#chart-val_loss text")]
                    .slice(2)
                    .map((t) => t.textContent),
                };"##,
                vec![],
            )
            .await
            .unwrap()
    }

    async fn until(&self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let page = self.page().await;
            if done(&page) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; page: {page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

/// Records, per worker row, every state it shows as the page redraws (a row's state may last
/// only as long as one message).
const WATCH_ROWS: &str = r##"
    window.seenStates = {};
    const note = () => {
      for (const row of document.querySelectorAll("#workers tr")) {
        const seen = (window.seenStates[row.dataset.rank] ||= []);
        const state = row.querySelector(".state").textContent;
        if (seen[seen.length - 1] !== state) seen.push(state);
      }
    };
    new MutationObserver(note).observe(document.getElementById("workers"),
      { childList: true, subtree: true, characterData: true });
    note();
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_worker_run_seen_in_chromium_while_it_trains_and_after_a_worker_is_killed() {
    let test = "dashboard::a_two_worker_run_seen_in_chromium";
    let Some(tools) = programs(test, &["chromium", "chromedriver"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    fs::write(dir.path().join("hosts.txt"), "localhost slots=2\n").unwrap();
    let steps = 300;
    let hosts = dir.path().join("hosts.txt");
    let (coordinator, lines) = start_train(
        &run,
        steps,
        20,
        &["--hosts", path_str(&hosts), "--dashboard"],
    );
    let mut coordinator = Killed(coordinator);
    let address = dashboard_address(&lines);
    let browser = Browser::start(&tools[0], &tools[1]).await;
    browser
        .client
        .goto(&format!("http://{address}/"))
        .await
        .unwrap();

    // Mid-run: one row per worker, their real pids, a curve with one point per step that grows.
    let first = browser
        .until(
            "two training workers and three steps",
            Duration::from_secs(120),
            |p| {
                p["rows"].as_array().is_some_and(|rows| {
                    rows.len() == 2 && rows.iter().all(|r| r["state"] == "training")
                }) && p["step"].as_i64() >= Some(3)
            },
        )
        .await;
    let mut pids: Vec<u64> = first["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    pids.sort();
    let mut started: Vec<u64> = worker_pids(&coordinator.0)
        .iter()
        .map(|&p| u64::from(p))
        .collect();
    started.sort();
    assert_eq!(pids, started, "the rows name the worker processes");
    assert_eq!(first["points"], first["step"], "{first}");
    let later = browser
        .until("the curve to grow", Duration::from_secs(60), |p| {
            p["step"].as_i64() >= first["step"].as_i64().map(|s| s + 10)
        })
        .await;
    assert_eq!(later["points"], later["step"], "{later}");
    eprintln!(
        "the loss curve grew from {} to {} points while the run went on",
        first["points"], later["points"]
    );
    browser.screenshot("mid-run.png").await;

    // SIGKILL rank 1 after its first checkpoint: dead, then restarted, the cause in the log.
    browser
        .until("the first checkpoint", Duration::from_secs(120), |p| {
            p["events"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|l| l.as_str().unwrap().contains("checkpoint at step"))
            })
        })
        .await;
    browser.client.execute(WATCH_ROWS, vec![]).await.unwrap();
    let victim = later["rows"][1]["pid"].as_u64().unwrap() as u32;
    signal(victim, "-KILL");
    let after = browser
        .until("rank 1 back after the kill", Duration::from_secs(60), |p| {
            // Rank 0 is restarted too when its ring broke and it exited before the group stopped.
            p["rows"][1]["state"] == "restarted"
                && (p["rows"][0]["state"] == "training" || p["rows"][0]["state"] == "restarted")
                && p["step"].as_i64() > later["step"].as_i64()
        })
        .await;
    let seen: Vec<&str> = after["seen"]["1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let dead = seen.iter().position(|&s| s == "dead");
    let restarted = seen.iter().rposition(|&s| s == "restarted");
    assert!(
        dead.is_some() && restarted > dead,
        "rank 1 should show dead, then restarted: {seen:?}"
    );
    let events: Vec<&str> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|l| l.contains(&format!("rank 1 (pid {victim}) died: signal: 9 (SIGKILL)"))),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|l| l.contains("the group restarted (generation 1) from step")),
        "{events:#?}"
    );
    assert_eq!(after["points"], after["step"], "{after}");
    // Evaluations every 20 steps: the validation curve's axis names its first and last step
    // (a lone point's axis names just its own).
    let evaluations = after["val_points"].as_u64().unwrap();
    let last_label = match evaluations {
        1 => String::new(),
        n => format!("step {}", 20 * n),
    };
    assert_eq!(
        after["val_axis"],
        serde_json::json!(["step 20", last_label]),
        "{after}"
    );
    browser.screenshot("after-kill.png").await;
    eprintln!(
        "rank 1 went through {seen:?}; the page's events:\n{}",
        events.join("\n")
    );

    assert!(coordinator.0.wait().unwrap().success());
    let _ = browser.client.close().await;
}

#[test]
fn a_terminal_gets_a_progress_bar_and_a_pipe_gets_a_line_per_step() {
    let dir = tempfile::tempdir().unwrap();
    sovereign_tests::cluster::setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    // A two-worker run, whose coordinator logs while its bar is shown.
    fs::write(p("hosts.txt"), "localhost slots=2\n").unwrap();
    let train = format!(
        "{} train --config {} --data {} --hosts {} --out {}",
        sovereign_test_support::binary_path("sovereign").display(),
        p("run.toml").display(),
        p("train.bin").display(),
        p("hosts.txt").display(),
        p("tty").display()
    );
    // `script` runs the command on a pseudo-terminal and copies what it drew to its output.
    let on_terminal = Command::new("script")
        .args(["-qefc", &train, "/dev/null"])
        .output()
        .unwrap();
    assert!(on_terminal.status.success());
    let drawn = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(drawn.contains("step 20/20 loss "), "{drawn}");
    assert!(drawn.contains("ETA"), "{drawn}");
    assert!(!drawn.contains("step 20/20: loss"), "{drawn}");
    // A log line goes above the bar: the bar's line is cleared first, then drawn again below.
    let joined = drawn
        .lines()
        .find(|line| line.contains(") joined as rank 0"))
        .unwrap_or_else(|| panic!("no join logged in {drawn}"));
    let written = joined.rsplit("\x1b[2K").next().unwrap_or_default();
    assert!(
        written.contains("INFO") && !written.contains("step 0/20"),
        "{joined:?}"
    );
    let piped = binary("sovereign")
        .args(["train", "--config", path_str(&p("run.toml")), "--data"])
        .arg(p("train.bin"))
        .arg("--out")
        .arg(p("piped"))
        .output()
        .unwrap();
    assert!(piped.status.success());
    let log = String::from_utf8_lossy(&piped.stderr);
    for step in 1..=20 {
        assert!(log.contains(&format!("step {step}/20: loss ")), "{log}");
    }
    assert_eq!(
        fs::read_to_string(p("tty/metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        20
    );
}

#[test]
fn an_emulated_world_shows_a_row_per_rank_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (trainer, _lines) = start_train(&run, 6, 3, &["--emulate-world", "2"]);
    let mut trainer = Killed(trainer);
    assert!(trainer.0.wait().unwrap().success());
    let (_server, address) = serve_run_dir(&run, "127.0.0.1:0");
    let (code, body) = get(&address, "/api/status");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["world"].as_u64(), status["step"].as_u64()),
        (Some(2), Some(6))
    );
    assert_eq!(status["tokens_seen"], 6 * 2 * 32 * 2);
    let rows: Vec<(u64, u64, &str)> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["rank"].as_u64().unwrap(),
                w["pid"].as_u64().unwrap(),
                w["state"].as_str().unwrap(),
            )
        })
        .collect();
    let pid = u64::from(trainer.0.id());
    assert_eq!(rows, [(0, pid, "finished"), (1, pid, "finished")]);
}
