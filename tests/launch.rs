//! How workers reach a run, with real processes: a worker without the data, or with a copy that
//! differs, fetches its byte range from the coordinator and trains the same weights.

use std::fs;
use std::time::Duration;

use sovereign_tests::cluster::{
    assert_same_weights_as_uninterrupted, coordinator_address, setup, start_coordinator,
    wait_for_line,
};
use sovereign_tests::{binary, path_str, stderr};

#[test]
fn workers_without_the_data_fetch_their_ranges_from_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let p = |name: &str| dir.path().join(name);
    let train = fs::read(p("train.bin")).unwrap();
    fs::write(p("val.bin"), &train[..4000]).unwrap();
    fs::write(p("hosts.txt"), "localhost slots=2\n").unwrap();
    let (mut coordinator, lines) = start_coordinator(
        dir.path(),
        &["--launcher", "none", "--val-data", path_str(&p("val.bin"))],
    );
    let address = coordinator_address(&lines);
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
    assert!(rank0.status.success(), "{}", stderr(&rank0));
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
    // Evaluation ran on the fetched val.bin, and the weights are those of a run with the data.
    let metrics = fs::read_to_string(p("cluster/metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert!(
        last["val_loss"].as_f64().is_some_and(f64::is_finite),
        "{last}"
    );
    assert_same_weights_as_uninterrupted(dir.path());
}
