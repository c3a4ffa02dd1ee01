//! End-to-end tests of the distributed data prep (`--hosts` on process-wiki, train-tokenizer and
//! tokenize): real coordinator and worker processes over loopback gRPC, outputs compared byte
//! for byte (by sha256) with the single-process run, and the failure paths: a worker killed or
//! frozen mid-task, a client that sends wrong results, a worker without the input file.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sovereign_proto::v1::coordinator_client::CoordinatorClient;
use sovereign_proto::v1::prep_client::PrepClient;
use sovereign_proto::v1::training_client::TrainingClient;
use sovereign_proto::v1::{
    JoinRequest, ResultChunk, StepReport, TaskRequest, join_reply, prep_job, task,
};
use sovereign_test_support::{
    binary, coordinator_address, path_str, sha256_file, shared_fixtures, sovereign, sovereign_ok,
    stderr,
};
use sovereign_tests::cluster::{signal, spawn_logged, wait_for_line};
use sovereign_tests::{bz2_multistream, demo_dump};

/// Asserts that every output of the distributed run has the single-process output's sha256.
fn assert_same_files(single: &[PathBuf], distributed: &[PathBuf], what: &str) {
    for (a, b) in single.iter().zip(distributed) {
        let (x, y) = (sha256_file(a), sha256_file(b));
        eprintln!("{what}: {} {x} / {} {y}", a.display(), b.display());
        assert_eq!(x, y, "{what}: {} differs from {}", b.display(), a.display());
    }
}

/// A hosts file of `n` local slots in `dir`.
fn hosts(dir: &Path, n: u32) -> PathBuf {
    let path = dir.join(format!("hosts-{n}.txt"));
    fs::write(&path, format!("localhost slots={n}\n")).unwrap();
    path
}

/// Runs a stage in one process and on 1, 2 and 3 workers; the outputs (named by `outputs`
/// under a per-run prefix) must be the same bytes. `args(prefix)` builds the stage's flags.
fn same_on_1_2_3_workers(
    dir: &Path,
    what: &str,
    task_mib: &str,
    outputs: &[&str],
    args: impl Fn(&str) -> Vec<String>,
) {
    let files = |prefix: &str| -> Vec<PathBuf> {
        outputs
            .iter()
            .map(|o| dir.join(format!("{prefix}{o}")))
            .collect()
    };
    let single = args("single-");
    let single: Vec<&str> = single.iter().map(String::as_str).collect();
    sovereign_ok(&single);
    for n in 1..=3 {
        let prefix = format!("w{n}-");
        let mut flags = args(&prefix);
        let hosts = hosts(dir, n);
        flags.extend(["--hosts".into(), path_str(&hosts).into()]);
        flags.extend(["--task-mib".into(), task_mib.into()]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let log = sovereign_ok(&flags);
        assert!(log.contains(&format!("map on {n} workers")), "{log}");
        assert_same_files(
            &files("single-"),
            &files(&prefix),
            &format!("{what}, {n} workers"),
        );
    }
}

/// The three stages on 1, 2 and 3 workers, chained like the pipeline: a multistream dump (one
/// page per stream) → corpus → tokenizer → train.bin/val.bin.
fn pipeline_on_1_2_3_workers(dir: &Path, dump: &Path, vocab: &str, task_mib: &str) {
    let d = |name: &str| dir.join(name).display().to_string();
    same_on_1_2_3_workers(dir, "process-wiki", task_mib, &["corpus.txt"], |p| {
        vec![
            "process-wiki".into(),
            "--input".into(),
            dump.display().to_string(),
            "--output".into(),
            d(&format!("{p}corpus.txt")),
            "--title".into(),
        ]
    });
    let corpus = d("single-corpus.txt");
    same_on_1_2_3_workers(dir, "train-tokenizer", task_mib, &["tokenizer.json"], |p| {
        vec![
            "train-tokenizer".into(),
            "--corpus".into(),
            corpus.clone(),
            "--vocab-size".into(),
            vocab.into(),
            "--output".into(),
            d(&format!("{p}tokenizer.json")),
        ]
    });
    let tokenizer = d("single-tokenizer.json");
    let outputs = ["train.bin", "train.bin.json", "val.bin", "val.bin.json"];
    same_on_1_2_3_workers(dir, "tokenize", task_mib, &outputs, |p| {
        vec![
            "tokenize".into(),
            "--input".into(),
            corpus.clone(),
            "--tokenizer".into(),
            tokenizer.clone(),
            "--output".into(),
            d(&format!("{p}train.bin")),
            "--val-output".into(),
            d(&format!("{p}val.bin")),
            "--val-fraction".into(),
            "0.3".into(),
            "--line-docs".into(),
        ]
    });
}

#[test]
fn the_demo_dump_gives_the_same_bytes_on_1_2_3_workers() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("demo.xml.bz2");
    fs::write(&dump, bz2_multistream(&demo_dump(), 1)).unwrap();
    // Tasks of about 1 KiB: several streams, paragraphs and documents per worker.
    pipeline_on_1_2_3_workers(dir.path(), &dump, "300", "0.001");
}

#[test]
fn the_ptbr_fixture_gives_the_same_bytes_on_1_2_3_workers() {
    let Some(fixtures) = shared_fixtures("the_ptbr_fixture_gives_the_same_bytes_on_1_2_3_workers")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let corpus = fixtures.join("ptbr/corpus.txt").display().to_string();
    let d = |name: &str| dir.path().join(name).display().to_string();
    same_on_1_2_3_workers(
        dir.path(),
        "train-tokenizer",
        "0.5",
        &["tokenizer.json"],
        |p| {
            vec![
                "train-tokenizer".into(),
                "--corpus".into(),
                corpus.clone(),
                "--line-docs".into(),
                "--output".into(),
                d(&format!("{p}tokenizer.json")),
            ]
        },
    );
    let tokenizer = d("single-tokenizer.json");
    let outputs = ["train.bin", "train.bin.json", "val.bin", "val.bin.json"];
    same_on_1_2_3_workers(dir.path(), "tokenize", "0.5", &outputs, |p| {
        vec![
            "tokenize".into(),
            "--input".into(),
            corpus.clone(),
            "--tokenizer".into(),
            tokenizer.clone(),
            "--line-docs".into(),
            "--output".into(),
            d(&format!("{p}train.bin")),
            "--val-output".into(),
            d(&format!("{p}val.bin")),
        ]
    });
}

#[test]
fn the_wiki_fixtures_give_the_same_corpus_on_workers() {
    let Some(fixtures) = shared_fixtures("the_wiki_fixtures_give_the_same_corpus_on_workers")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["testcorpus", "enwiki-table-markup"] {
        let original = fixtures.join(format!("wiki/{name}.xml.bz2"));
        let mut xml = String::new();
        bzip2::read::MultiBzDecoder::new(fs::File::open(&original).unwrap())
            .read_to_string(&mut xml)
            .unwrap();
        // The fixture as it is (one stream: one task) and cut into one stream per page.
        let multistream = dir.path().join(format!("{name}-multistream.xml.bz2"));
        fs::write(&multistream, bz2_multistream(&xml, 1)).unwrap();
        for dump in [original, multistream] {
            let single = dir.path().join("single.txt");
            let spread = dir.path().join("spread.txt");
            sovereign_ok(&[
                "process-wiki",
                "--input",
                path_str(&dump),
                "--output",
                path_str(&single),
            ]);
            let hosts = hosts(dir.path(), 2);
            let flags = ["--hosts", path_str(&hosts), "--task-mib", "0.001"];
            let mut args = vec!["process-wiki", "--input", path_str(&dump), "--output"];
            args.push(path_str(&spread));
            args.extend(flags);
            sovereign_ok(&args);
            assert_same_files(&[single], &[spread], &dump.display().to_string());
        }
    }
    // A UTF-16 dump is refused with --hosts, with what to do.
    let utf16 = fixtures.join("wiki/bgwiki-latest-pages-articles-shortened.xml.bz2");
    let hosts = hosts(dir.path(), 2);
    let out = sovereign(&[
        "process-wiki",
        "--input",
        path_str(&utf16),
        "--output",
        path_str(&dir.path().join("bg.txt")),
        "--hosts",
        path_str(&hosts),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the distributed process-wiki reads UTF-8 dumps"),
        "{err}"
    );
    assert!(err.contains("run it without --hosts"), "{err}");
    assert!(!dir.path().join("bg.txt").exists());
}

#[test]
fn an_input_error_on_a_worker_stops_the_job_naming_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut text: Vec<u8> = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("linha {i} do corpus\n").as_bytes());
    }
    let bad = text.len() + "ruim ".len();
    text.extend_from_slice(b"ruim \xff aqui\n");
    let corpus = dir.path().join("corpus.txt");
    fs::write(&corpus, &text).unwrap();
    let output = dir.path().join("tokenizer.json");
    let hosts = hosts(dir.path(), 2);
    let out = sovereign(&[
        "train-tokenizer",
        "--corpus",
        path_str(&corpus),
        "--line-docs",
        "--output",
        path_str(&output),
        "--hosts",
        path_str(&hosts),
        "--task-mib",
        "0.1",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let expected = format!(
        "{}: byte {bad}: invalid UTF-8 (use --lossy",
        corpus.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("no output was written"), "{err}");
    assert!(!output.exists());
}

/// A corpus of about 3 MB and a tokenizer trained on it (single process): inputs for the
/// failure tests, large enough that a 0.5 MiB task takes a while to encode.
fn big_corpus(dir: &Path) -> (PathBuf, PathBuf) {
    let corpus = dir.join("corpus.txt");
    let mut text = String::new();
    let words = [
        "casa", "rio", "cidade", "água", "são", "paulo", "brasil", "língua",
    ];
    for i in 0..40_000u64 {
        let line: Vec<&str> = (0..10)
            .map(|j| words[((i * 7 + j * 13 + i / 5) % 8) as usize])
            .collect();
        text.push_str(&format!("{} {i}.\n", line.join(" ")));
    }
    fs::write(&corpus, text).unwrap();
    let tokenizer = dir.join("tokenizer.json");
    sovereign_ok(&[
        "train-tokenizer",
        "--corpus",
        path_str(&corpus),
        "--line-docs",
        "--vocab-size",
        "400",
        "--output",
        path_str(&tokenizer),
    ]);
    (corpus, tokenizer)
}

/// `tokenize` of the big corpus into `dir/<prefix>train.bin`, with `extra` flags.
fn tokenize_args(dir: &Path, prefix: &str, extra: &[&str]) -> Vec<String> {
    let d = |name: &str| dir.join(name).display().to_string();
    let mut args: Vec<String> = [
        "tokenize",
        "--input",
        &d("corpus.txt"),
        "--tokenizer",
        &d("tokenizer.json"),
        "--line-docs",
        "--output",
        &d(&format!("{prefix}train.bin")),
        "--val-output",
        &d(&format!("{prefix}val.bin")),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The single-process and the `prefix` outputs of the big corpus's tokenize are the same.
fn assert_same_tokens(dir: &Path, prefix: &str) {
    let outputs = ["train.bin", "train.bin.json", "val.bin", "val.bin.json"];
    let files = |p: &str| -> Vec<PathBuf> {
        outputs
            .iter()
            .map(|o| dir.join(format!("{p}{o}")))
            .collect()
    };
    let single = tokenize_args(dir, "single-", &[]);
    sovereign_ok(&single.iter().map(String::as_str).collect::<Vec<_>>());
    assert_same_files(&files("single-"), &files(prefix), prefix);
}

/// Starts tokenize on 2 local workers; once task `n` goes to worker 1, sends it `how`; returns
/// the coordinator's log after it exits successfully.
fn hit_worker_1_mid_task(dir: &Path, how: &str, extra: &[&str]) -> Vec<String> {
    let hosts = hosts(dir, 2);
    let mut flags = vec!["--hosts", path_str(&hosts), "--task-mib", "0.5"];
    flags.extend(extra);
    let mut command = binary("sovereign");
    command
        .args(tokenize_args(dir, "spread-", &flags))
        .env("RUST_LOG", "info,sovereign::mapreduce=debug");
    let (mut coordinator, lines) = spawn_logged(command);
    let (line, _) = wait_for_line(&lines, "goes to worker 1 (pid ", Duration::from_secs(60));
    let pid: u32 = line
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    signal(pid, how);
    let status = coordinator.wait().unwrap();
    let log: Vec<String> = std::iter::once(line).chain(lines.try_iter()).collect();
    assert!(status.success(), "{}", log.join("\n"));
    // The task worker 1 holds when the signal lands: the first one it got, or a later one when
    // it finished that first (a task is small).
    let task_of = |l: &String| {
        l.split("task ")
            .nth(1)?
            .split(' ')
            .next()
            .map(str::to_string)
    };
    let given: Vec<String> = log
        .iter()
        .filter(|l| l.contains(&format!("goes to worker 1 (pid {pid}")))
        .filter_map(task_of)
        .collect();
    assert!(
        log.iter().any(|l| {
            l.contains(&format!("dropped worker 1 (pid {pid}"))
                && given
                    .iter()
                    .any(|t| l.contains(&format!("task(s) [{t}] go back to the queue")))
        }),
        "no task of worker 1 ({given:?}) was requeued:\n{}",
        log.join("\n")
    );
    log
}

/// Hits worker 1 mid-task with `how`, checks the log for `expected`, and the output.
fn loses_nothing(how: &str, extra: &[&str], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    big_corpus(dir.path());
    let log = hit_worker_1_mid_task(dir.path(), how, extra);
    assert!(
        log.iter().any(|l| l.contains(expected)),
        "{}",
        log.join("\n")
    );
    assert_same_tokens(dir.path(), "spread-");
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    loses_nothing("-KILL", &[], "its process died");
}

#[test]
fn a_frozen_worker_is_dropped_and_its_task_runs_elsewhere() {
    loses_nothing(
        "-STOP",
        &["--stall-timeout", "2"],
        "stalled: no heartbeat for",
    );
}

#[test]
fn wrong_results_are_refused_and_a_worker_without_the_input_fetches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _) = big_corpus(dir.path());
    let hosts = hosts(dir.path(), 1);
    let flags = [
        "--hosts",
        path_str(&hosts),
        "--launcher",
        "none",
        "--task-mib",
        "0.5",
    ];
    let mut command = binary("sovereign");
    command.args(tokenize_args(dir.path(), "spread-", &flags));
    let (mut coordinator, lines) = spawn_logged(command);
    let (line, _) = wait_for_line(&lines, "token in ", Duration::from_secs(60));
    let address = coordinator_address(&line).expect("the line names an address");
    let token_file = PathBuf::from(line.split("token in ").nth(1).unwrap().trim());
    let token = fs::read_to_string(&token_file).unwrap().trim().to_string();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let endpoint = format!("http://{address}");
        let mut join = CoordinatorClient::connect(endpoint.clone()).await.unwrap();
        let mut prep = PrepClient::connect(endpoint).await.unwrap();
        let request = |token: &str| JoinRequest {
            token: token.to_string(),
            host: "liar".into(),
            binary_version: env!("CARGO_PKG_VERSION").into(),
            pid: 1,
            ..JoinRequest::default()
        };
        let refused = join.join(request("wrong")).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let reply = join.join(request(&token)).await.unwrap().into_inner();
        let Some(join_reply::Job::Prep(job)) = reply.job else {
            panic!(
                "a prep coordinator answers a join with its job: {:?}",
                reply.job
            );
        };
        assert!(
            matches!(job.map, Some(prep_job::Map::Encode(_))),
            "{:?}",
            job.map
        );
        // A prep coordinator serves no training RPCs at all.
        let mut training = TrainingClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        let unserved = training.report(StepReport::default()).await.unwrap_err();
        assert_eq!(unserved.code(), tonic::Code::Unimplemented);
        let worker = reply.rank;
        let ask = TaskRequest {
            token: token.clone(),
            worker,
        };
        let task = prep.next_task(ask.clone()).await.unwrap().into_inner();
        assert_eq!((task.kind(), task.id), (task::Kind::Work, 0));
        let result = |task: u64, data: &[u8], sha256: &str| ResultChunk {
            token: token.clone(),
            worker,
            task,
            data: data.to_vec().into(),
            sha256: sha256.into(),
            error: String::new(),
        };
        // A result for a task it was not given (a bad range), then one whose sha256 is wrong.
        let chunks = vec![result(1, b"x", "00")];
        let refused = prep.submit(tokio_stream::iter(chunks)).await.unwrap_err();
        assert!(
            refused
                .message()
                .contains("task 1 is not assigned to worker 0"),
            "{refused:?}"
        );
        let chunks = vec![result(0, b"not a result", "00")];
        let refused = prep.submit(tokio_stream::iter(chunks)).await.unwrap_err();
        assert!(
            refused.message().contains("not the 00 it announced"),
            "{refused:?}"
        );
        // Dropped: no more tasks for it.
        let refused = prep.next_task(ask).await.unwrap_err();
        assert!(
            refused.message().contains("was dropped from the job"),
            "{refused:?}"
        );
    });
    drop(runtime);
    let (line, _) = wait_for_line(
        &lines,
        "refused the result of task 1",
        Duration::from_secs(10),
    );
    assert!(line.contains("is not assigned"), "{line}");
    let (line, _) = wait_for_line(
        &lines,
        "dropped worker 0 (pid 1 on liar)",
        Duration::from_secs(10),
    );
    assert!(line.contains("task(s) [0] go back to the queue"), "{line}");

    // A real worker whose --data-dir lacks the corpus: it fetches every range.
    let empty = dir.path().join("elsewhere");
    fs::create_dir(&empty).unwrap();
    let worker = binary("sovereign-worker")
        .args([
            "--coordinator",
            &address,
            "--token-file",
            path_str(&token_file),
        ])
        .args(["--data-dir", path_str(&empty)])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = coordinator.wait().unwrap();
    let log: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains("sending bytes [0, ") && l.contains("corpus.txt")),
        "{}",
        log.join("\n")
    );
    let out = worker.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.contains(&format!("fetching the ranges of {}", corpus.display())),
        "{out}"
    );
    assert_same_tokens(dir.path(), "spread-");
}

#[test]
fn bad_settings_are_refused_before_any_worker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    fs::write(&corpus, "um\ndois\n").unwrap();
    let output = dir.path().join("tokenizer.json");
    let run = |hosts_text: &str, extra: &[&str]| {
        let hosts = dir.path().join("hosts.txt");
        fs::write(&hosts, hosts_text).unwrap();
        let mut args = vec!["train-tokenizer", "--corpus", path_str(&corpus), "--output"];
        args.extend([path_str(&output), "--hosts", path_str(&hosts)]);
        args.extend(extra);
        let out = sovereign(&args);
        assert!(!out.status.success());
        stderr(&out)
    };
    let err = run("localhost slots=1\n", &["--task-mib", "0"]);
    assert!(
        err.contains("--task-mib 0 must be a positive number"),
        "{err}"
    );
    let err = run("box7 slots=2\n", &[]);
    assert!(err.contains("host box7 is not this machine"), "{err}");
    let err = run("localhost slots=two\n", &[]);
    assert!(err.contains("hosts.txt:1: slots=two"), "{err}");
    assert!(!output.exists());
}
