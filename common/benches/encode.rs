//! Encode throughput of [`Tokenizer::encode_batch`] (not a test): bench/tokenizer.sh runs it as
//! `cargo bench -p sovereign-common --bench encode -- TOKENIZER CORPUS` (a tokenizer.json or the
//! World vocabulary) and compares it with
//! HuggingFace `tokenizers` and tiktoken in the same run. Prints one line per thread count.

use std::time::Instant;

use sovereign_common::tokenizer::Tokenizer;

/// The allocator the binaries run on (common/src/allocator.rs), so that timings are theirs.
#[global_allocator]
static ALLOCATOR: sovereign_common::allocator::MiMalloc = sovereign_common::allocator::MiMalloc;

fn main() {
    sovereign_common::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(tokenizer), Some(corpus)) = (args.first(), args.get(1)) else {
        eprintln!("usage: cargo bench -p sovereign-common --bench encode -- TOKENIZER_JSON CORPUS");
        return;
    };
    let path = std::path::Path::new(tokenizer);
    let tokenizer = Tokenizer::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(corpus).unwrap_or_else(|e| panic!("{corpus}: {e}"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let mut best = f64::MAX;
        let mut tokens = 0;
        for _ in 0..3 {
            // A fresh tokenizer each round, so the word cache starts cold as in a real run.
            let fresh = Tokenizer::from_file(path).expect("reload");
            let start = Instant::now();
            let ids = pool.install(|| fresh.encode_batch(&lines, false));
            best = best.min(start.elapsed().as_secs_f64());
            tokens = ids.iter().map(Vec::len).sum::<usize>();
        }
        println!(
            "sovereign {} encode_batch, {threads} thread(s): {:.1} MB/s ({tokens} tokens)",
            tokenizer.kind().name(),
            bytes as f64 / best / 1e6
        );
    }
}
