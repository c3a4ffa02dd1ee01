//! The command-line interface: every subcommand of docs/cli.md and its flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sovereign_common::train::settings::RunFlags;
use sovereign_proto::transport::TlsArgs;

/// Sovereign turns a Wikipedia dump (or any UTF-8 corpus) into a trained RWKV-7 language model.
///
/// Pipeline: process-wiki → clean-corpus → train-tokenizer → tokenize → train → test-model /
/// generate / export. `sovereign demo` runs it on a small bundled corpus.
#[derive(Parser, Debug)]
#[command(
    name = "sovereign",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The stage to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Extract clean article text from a MediaWiki XML dump (.xml.bz2 or .xml).
    ///
    /// Reads single-stream and multistream bz2 (multistream streams are decoded in parallel) or
    /// plain XML, in UTF-8 or UTF-16 with a byte-order mark. Keeps namespace 0, skips redirects,
    /// cleans the markup (docs/cleaner.md) and writes the articles in dump order. The output is
    /// written under a temporary name and renamed only when the whole dump has been read.
    ProcessWiki(ProcessWikiArgs),
    /// Clean and normalize a corpus, dropping duplicate and short paragraphs.
    ///
    /// Runs the markup cleaner and the normalizer (NFC; optionally accents stripped and
    /// lowercase) over each paragraph, drops exact-duplicate paragraphs and paragraphs under
    /// --min-chars, and reports how many it dropped and why.
    CleanCorpus(CleanCorpusArgs),
    /// Train a byte-level BPE tokenizer and write a HuggingFace tokenizer.json.
    ///
    /// Byte-level BPE on GPT-2's byte alphabet (nothing is ever unknown), with a pre-tokenizer
    /// split suited to Portuguese that HuggingFace `tokenizers` reproduces exactly. Special tokens
    /// [PAD] [UNK] [BOS] [EOS] [SEP] take ids 0-4, the 256 bytes ids 5-260, merges follow. The
    /// same corpus always gives a byte-identical file.
    TrainTokenizer(TrainTokenizerArgs),
    /// Encode a corpus into train.bin / val.bin (u16 little-endian ids) with .json sidecars.
    ///
    /// Each document's ids are followed by [EOS] (id 0 with the RWKV World vocabulary,
    /// rwkv_vocab_v20230424.txt, which encodes by greedy longest match as the official
    /// TRIE_TOKENIZER). Documents are encoded in parallel and written
    /// in corpus order: the output is byte-identical whatever --threads is. numpy reads it with
    /// np.memmap(path, dtype=np.uint16).
    Tokenize(TokenizeArgs),
    /// Train an RWKV-7 model: in this process, or data-parallel on workers with --hosts/--gpus.
    ///
    /// Settings come from --config run.toml (fields named like the flags, with underscores) and
    /// are overridden by flags. Writes RUN_DIR/metrics.jsonl and checkpoints RUN_DIR/ckpt-<step>/
    /// (model.safetensors in RWKV-LM's layout, optimizer.safetensors, meta.json), with `latest`
    /// naming the newest whole one.
    Train(Box<TrainArgs>),
    /// Continue a training run from its latest checkpoint, or an earlier one with --from.
    ///
    /// Sampling depends only on (seed, step), so the continued run is identical to one that never
    /// stopped: the same batches, weights and metrics.
    Resume(ResumeArgs),
    /// Evaluate a model: mean cross-entropy and perplexity on held-out tokens.
    ///
    /// Reads consecutive, non-overlapping windows of T+1 tokens (input the first T, targets the
    /// next T); no L2Wrap. The model's shape is read from the weights.
    TestModel(TestModelArgs),
    /// Generate text from a model, one token at a time with the recurrent state.
    ///
    /// Streams the text as it is produced, stops at [EOS], and reports tokens/s.
    Generate(GenerateArgs),
    /// Export a model for the tools people run RWKV-7 with: safetensors (RWKV-LM layout), pth
    /// (the rwkv package), gguf (llama.cpp), st (web-rwkv/ai00) or hf (flash-linear-attention),
    /// with a model card (README.md) beside it.
    Export(ExportArgs),
    /// Plot a run's loss curves to a PNG.
    ///
    /// Reads RUN_DIR/metrics.jsonl and draws the training loss of every step and the validation
    /// loss of every evaluation against the step.
    Plot(PlotArgs),
    /// Serve the dashboard of a run (finished or running) from its files.
    ///
    /// Follows RUN_DIR/metrics.jsonl and RUN_DIR/events.jsonl (the lines added to them every
    /// half second) and serves the page `train --dashboard` serves, with /api/status and
    /// /metrics, until interrupted.
    Dashboard(DashboardCommandArgs),
    /// Run the whole pipeline on a small bundled Portuguese corpus.
    ///
    /// process-wiki → clean-corpus → train-tokenizer → tokenize → train (the micro model) →
    /// plot → generate, on a bundled Portuguese mini-dump; prints what each stage produced and
    /// where it went.
    Demo(DemoArgs),
}

/// Output layout of process-wiki.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// Corpus text: paragraphs on consecutive lines, documents separated by a blank line.
    Text,
    /// One JSON object per line: {"id", "title", "text"}.
    Jsonl,
}

/// Normalization flags shared by the text stages.
#[derive(Args, Debug, Clone, Copy)]
pub struct NormalizeArgs {
    /// Remove accents (NFD, combining marks dropped): "São Paulo" → "Sao Paulo".
    #[arg(long)]
    pub strip_accents: bool,
    /// Lowercase all text.
    #[arg(long)]
    pub lowercase: bool,
}

/// Flags of process-wiki.
#[derive(Args, Debug)]
pub struct ProcessWikiArgs {
    /// The dump: .xml.bz2 (single- or multistream) or .xml.
    #[arg(long, value_name = "DUMP")]
    pub input: PathBuf,
    /// Where to write the corpus.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Output layout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Drop articles whose cleaned text has fewer characters than this.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_chars: usize,
    /// Worker threads for decompression and cleaning (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Start each document with its title on a line of its own.
    #[arg(long)]
    pub title: bool,
    /// On failure, keep what was written as FILE.partial.
    #[arg(long)]
    pub keep_partial: bool,
    #[command(flatten)]
    pub normalize: NormalizeArgs,
    #[command(flatten)]
    pub cluster: PrepClusterArgs,
}

/// Flags of clean-corpus.
#[derive(Args, Debug)]
pub struct CleanCorpusArgs {
    /// The corpus to clean (documents separated by blank lines).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the cleaned corpus.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Drop paragraphs with fewer characters than this (after cleaning).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub min_chars: usize,
    /// Treat each input line as a document.
    #[arg(long)]
    pub line_docs: bool,
    /// Memory for the duplicate-paragraph detector, in MiB (16 bytes per distinct paragraph).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub dedup_memory_mb: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// On failure, keep what was written as FILE.partial.
    #[arg(long)]
    pub keep_partial: bool,
    #[command(flatten)]
    pub normalize: NormalizeArgs,
}

/// How the tokenizer stages read a corpus.
#[derive(Args, Debug, Clone, Copy)]
pub struct CorpusReadArgs {
    /// Treat each input line as a document.
    #[arg(long)]
    pub line_docs: bool,
    /// Replace invalid UTF-8 (and count it) instead of stopping at it.
    #[arg(long)]
    pub lossy: bool,
    /// Worker threads (default: all cores); the output does not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Flags of train-tokenizer.
#[derive(Args, Debug)]
pub struct TrainTokenizerArgs {
    /// Corpus files (documents separated by blank lines, or one per line with --line-docs).
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub corpus: Vec<PathBuf>,
    /// Vocabulary size, special tokens and the 256 bytes included (261 to 65535).
    #[arg(long, default_value_t = 32000)]
    pub vocab_size: usize,
    /// Never merge a pair seen fewer times than this.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub min_frequency: u64,
    /// Where to write tokenizer.json.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub read: CorpusReadArgs,
    #[command(flatten)]
    pub cluster: PrepClusterArgs,
}

/// Flags of tokenize.
#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// The corpus to encode.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The tokenizer to encode with: a tokenizer.json or the World vocabulary
    /// rwkv_vocab_v20230424.txt (recognised by its content).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,
    /// Where to write the training ids (train.bin; its sidecar is train.bin.json).
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Where to write held-out documents (val.bin); without it every document goes to --output.
    #[arg(long, value_name = "FILE")]
    pub val_output: Option<PathBuf>,
    /// Share of documents held out for val.bin, chosen by a hash of the document index.
    #[arg(long, default_value_t = 0.005, value_name = "F")]
    pub val_fraction: f64,
    #[command(flatten)]
    pub read: CorpusReadArgs,
    #[command(flatten)]
    pub cluster: PrepClusterArgs,
}

/// Flags of train: the run settings (each also a run.toml field), the device and the cluster.
#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// A TOML file of run settings (the flags' names with underscores); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The run settings.
    #[command(flatten)]
    pub settings: RunFlags,
    /// Device: cpu, cuda:N or wgpu:N (GPU backends need a build with --features cuda or wgpu).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Distributed training.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The live dashboard.
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

/// The live dashboard of a run.
#[derive(Args, Debug, Default, Clone)]
pub struct DashboardArgs {
    /// Serve a live dashboard of the run (curves, workers, events; /metrics for Prometheus) on
    /// ADDR, loopback on a free port unless given; the address is printed at the start. An
    /// address that is not loopback needs the run's token (RUN_DIR/token) on every request.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    pub dashboard: Option<String>,
}

/// Distributed training: where the workers are and how the coordinator runs them.
#[derive(Args, Debug, Default, Clone)]
pub struct ClusterArgs {
    /// Train data-parallel on the workers of this hosts file (`hostname slots=N` per line).
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Single-node multi-GPU: one local worker per listed CUDA device, as a hosts file
    /// `localhost slots=N devices=LIST` would (needs a build with --features cuda).
    #[arg(long, value_name = "LIST", conflicts_with = "hosts")]
    pub gpus: Option<String>,
    /// With --hosts: how many times the group may restart after a worker dies or stalls.
    #[arg(long, default_value_t = 3)]
    pub max_restarts: u32,
    /// How workers average gradients: NCCL when every worker can (a CUDA device, a build with
    /// --features nccl, libnccl present) and the gRPC ring otherwise (auto); or insist on one.
    #[arg(long, value_enum, default_value_t = Collective::Auto)]
    pub collective: Collective,
    /// How the workers start and reach the coordinator.
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// How a coordinator (of training or of a data-prep job) starts its workers and serves them.
#[derive(Args, Debug, Clone)]
pub struct LaunchArgs {
    /// How workers start with --hosts: local processes, over ssh on every host of the file, or
    /// none (they are started elsewhere and dial in with the token file).
    #[arg(long, value_enum, default_value_t = Launcher::Local)]
    pub launcher: Launcher,
    /// With --launcher ssh: the ssh command and its options, split at spaces (for example
    /// "ssh -p 2222 -i ~/.ssh/cluster").
    #[arg(long, default_value = "ssh -o BatchMode=yes", value_name = "COMMAND")]
    pub ssh_command: String,
    /// With --launcher ssh: the worker binary on the remote hosts.
    #[arg(long, default_value = "sovereign-worker", value_name = "PATH")]
    pub remote_worker: String,
    /// The coordinator's listening address with --hosts (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub bind: String,
    /// With --hosts: a worker not heard from for this many seconds is named as stalled (a
    /// training group restarts from the last checkpoint; a data-prep task goes to another
    /// worker).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stall_timeout: u64,
    /// Mutual TLS between the coordinator and the workers (passed on to the workers it starts).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// A data-prep stage spread over workers (`--hosts`): map tasks over byte ranges of the input,
/// reduced in input order into the same output as one process writes.
#[derive(Args, Debug, Clone)]
pub struct PrepClusterArgs {
    /// Spread the work over the workers of this hosts file (`hostname slots=N` per line); the
    /// output is byte-identical to the single-process one.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// With --hosts: the size of one map task, in MiB of input (ranges end at document, page
    /// or bz2 stream boundaries).
    #[arg(long, default_value_t = 8.0, value_name = "MIB")]
    pub task_mib: f64,
    /// How the workers start and reach the coordinator.
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// The live dashboard of the job (with --hosts).
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

impl Default for LaunchArgs {
    fn default() -> Self {
        flag_defaults()
    }
}

impl Default for PrepClusterArgs {
    fn default() -> Self {
        flag_defaults()
    }
}

/// A group of flags as a command line without any of them sets it: the declared defaults.
fn flag_defaults<T: Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("sovereign"));
    T::from_arg_matches(&command.get_matches_from(["sovereign"]))
        .expect("every flag of the group has a default")
}

/// How the workers average gradients.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Collective {
    /// NCCL when every worker can use it, else the gRPC ring (with one log line saying why).
    #[default]
    Auto,
    /// The gRPC ring between the workers' Peer services.
    Grpc,
    /// NCCL; a worker that cannot use it is refused.
    Nccl,
}

/// How the coordinator starts workers.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Launcher {
    /// Spawn every slot as a local `sovereign-worker` process.
    #[default]
    Local,
    /// Start one worker per slot on every host over ssh; the token goes over ssh's stdin, and
    /// a worker stops when its ssh connection closes.
    Ssh,
    /// Start nothing: workers started by Slurm, systemd or by hand dial in.
    None,
}

/// Flags of resume.
#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run directory.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// A checkpoint directory to continue from instead of `latest` (to roll back).
    #[arg(long, value_name = "CKPT_DIR")]
    pub from: Option<PathBuf>,
    /// Device: cpu, cuda:N or wgpu:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Distributed training: continue a `train --hosts` run on these workers.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The training data, moved since the run started (accepted when its sha256 is the one the
    /// run used).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// The validation data, moved since the run started.
    #[arg(long, value_name = "FILE")]
    pub val_data: Option<PathBuf>,
    /// Skip the sha256 check of the data against its sidecar.
    #[arg(long)]
    pub skip_checksum: bool,
    /// The live dashboard.
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

/// Where a model's weights come from.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct WeightsArgs {
    /// A checkpoint directory (ckpt-<step>/).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// RWKV-7 weights: an RWKV-LM model.safetensors or an official PyTorch .pth (a released
    /// RWKV-7 checkpoint, bf16, fp16 or fp32).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
}

/// Flags of test-model.
#[derive(Args, Debug)]
pub struct TestModelArgs {
    #[command(flatten)]
    pub source: WeightsArgs,
    /// The tokens to evaluate on (val.bin).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Tokens per window, a multiple of 16.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Windows evaluated at a time.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Print one JSON object {"loss", "perplexity", "tokens"}.
    #[arg(long)]
    pub json: bool,
    /// Also write the logits of the first window (its first --seq-len tokens, from a zero
    /// state) to this .npy file, float32 [T, V]: for comparing with other runtimes.
    #[arg(long, value_name = "FILE")]
    pub logits: Option<PathBuf>,
}

/// Flags of generate.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub source: WeightsArgs,
    /// The tokenizer: a tokenizer.json or the World vocabulary rwkv_vocab_v20230424.txt
    /// (default: the one the checkpoint's run names).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// The text to continue.
    #[arg(long)]
    pub prompt: String,
    /// The most tokens to generate.
    #[arg(long, default_value_t = 200)]
    pub max_tokens: usize,
    /// Softmax temperature; 0 always picks the most likely token.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling: draw among the most likely tokens that sum to this probability.
    #[arg(long, default_value_t = 0.85)]
    pub top_p: f64,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The element type of an export.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ExportDtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

/// The format of an export.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormat {
    /// RWKV-LM names and shapes in one safetensors file (Sovereign's own layout).
    Safetensors,
    /// A PyTorch checkpoint as released RWKV-7 files are, for the `rwkv` package.
    Pth,
    /// llama.cpp's GGUF (architecture rwkv7, the World vocabulary embedded).
    Gguf,
    /// web-rwkv/ai00's fp16 safetensors.
    St,
    /// A HuggingFace directory for flash-linear-attention's RWKV7ForCausalLM.
    Hf,
}

/// Flags of export.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: WeightsArgs,
    /// The format: each runtime reads its own.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: ExportFormat,
    /// Element type of the exported weights (st is always f16; gguf keeps vectors in f32).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: ExportDtype,
    /// The tokenizer, which gguf and hf carry (default: the one the checkpoint's run names).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Where to write: the weights file (a directory for hf). README.md, the model card, goes
    /// beside it.
    #[arg(long, value_name = "PATH")]
    pub output: PathBuf,
}

/// Flags of demo.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory for the demo's outputs.
    #[arg(long, default_value = "demo-run", value_name = "DIR")]
    pub out: PathBuf,
    /// Training steps of the micro model.
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
}

/// Arguments of `dashboard`.
#[derive(Args, Debug)]
pub struct DashboardCommandArgs {
    /// The run directory (it holds metrics.jsonl and events.jsonl).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Where to serve the page: loopback on TensorBoard's port unless given. An address that
    /// is not loopback needs the run's token (RUN_DIR/token, written when missing).
    #[arg(long, default_value = "127.0.0.1:6006", value_name = "ADDR")]
    pub bind: String,
}

/// Arguments of `plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// The run directory (it holds metrics.jsonl).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Where the PNG goes (default RUN_DIR/loss.png).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}
