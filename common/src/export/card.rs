//! The model card (README.md) written beside every export: the model's sizes, what it was trained
//! on, how far, how well it does on held-out data, its tokenizer, and how to load it in each
//! runtime.

use std::path::{Path, PathBuf};

use super::{ExportError, ExportFormat};
use crate::model::config::{HEAD_SIZE, ModelConfig};

/// The first line of every card Sovereign writes: an existing README.md without it is never
/// overwritten.
const MARKER: &str = "<!-- model card written by `sovereign export` -->";

/// What a card says beyond the model's shape; `None` where it is not known (weights exported
/// from a bare file rather than a checkpoint).
#[derive(Clone, Debug, Default)]
pub struct ModelCard {
    /// Where the weights came from (a checkpoint directory or a weights file).
    pub source: String,
    /// The weights training started from (`--init-from`, or a fresh initialization).
    pub init_from: Option<String>,
    /// The training data.
    pub data: Option<String>,
    /// Optimizer steps taken.
    pub steps: Option<u64>,
    /// Training tokens seen.
    pub tokens_seen: Option<u64>,
    /// The last validation loss (mean cross-entropy in nats per token).
    pub val_loss: Option<f64>,
    /// That loss in bits per byte of the validation text.
    pub bits_per_byte: Option<f64>,
    /// The tokenizer: its kind and file.
    pub tokenizer: Option<String>,
}

/// Refuses to replace a README.md that is not a card Sovereign wrote.
pub fn refuse_foreign(path: &Path) -> Result<(), ExportError> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.starts_with(MARKER) => Err(ExportError::ForeignReadme(path.into())),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(ExportError::ForeignReadme(path.into())),
    }
}

/// The card's Markdown.
pub fn render(
    card: &ModelCard,
    config: &ModelConfig,
    format: ExportFormat,
    files: &[PathBuf],
) -> String {
    let unknown = || "not recorded".to_string();
    let lora = config.lora();
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name().map_or(f.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            })
        })
        .collect();
    let file = names.first().cloned().unwrap_or_default();
    let stem = file.strip_suffix(".pth").unwrap_or(&file);
    let mut out = format!(
        "{MARKER}\n# RWKV-7 (x070), {layers} layers × {embd}\n\n\
         Exported by Sovereign as `{format}`: {files}.\n\n\
         ## Model\n\n\
         | | |\n|---|---|\n\
         | architecture | RWKV-7 \"Goose\" (x070) |\n\
         | layers | {layers} |\n\
         | width | {embd} ({heads} heads of {HEAD_SIZE}) |\n\
         | feed-forward | {ffn} |\n\
         | LoRA ranks (w, a, v, g) | {w}, {a}, {v}, {g} |\n\
         | vocabulary | {vocab} |\n\
         | parameters | {params} |\n\n\
         ## Training\n\n\
         | | |\n|---|---|\n\
         | weights from | {source} |\n\
         | started from | {init} |\n\
         | data | {data} |\n\
         | steps | {steps} |\n\
         | tokens seen | {tokens} |\n\
         | validation loss | {val} |\n\
         | bits per byte | {bpb} |\n\
         | tokenizer | {tokenizer} |\n\n",
        layers = config.layers,
        embd = config.embd,
        format = format.name(),
        files = names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
        heads = config.heads(),
        ffn = config.ffn_hidden(),
        w = lora.w,
        a = lora.a,
        v = lora.v,
        g = lora.g,
        vocab = config.vocab,
        params = config.parameter_count(),
        source = card.source,
        init = card.init_from.clone().unwrap_or_else(unknown),
        data = card.data.clone().unwrap_or_else(unknown),
        steps = card.steps.map_or_else(unknown, |s| s.to_string()),
        tokens = card.tokens_seen.map_or_else(unknown, |t| t.to_string()),
        val = card
            .val_loss
            .map_or_else(unknown, |l| format!("{l:.4} nats/token")),
        bpb = card
            .bits_per_byte
            .map_or_else(unknown, |b| format!("{b:.4}")),
        tokenizer = card.tokenizer.clone().unwrap_or_else(unknown),
    );
    out.push_str("## Loading it\n\n");
    out.push_str(&match format {
        ExportFormat::Pth => format!(
            "The `rwkv` package (`pip install rwkv torch`), as ChatRWKV and RWKV Runner load it:\n\n\
             ```python\nimport os\nos.environ[\"RWKV_V7_ON\"] = \"1\"\n\
             from rwkv.model import RWKV\nfrom rwkv.utils import PIPELINE\n\
             model = RWKV(model=\"{stem}\", strategy=\"cpu fp32\")  # the path without .pth\n\
             pipeline = PIPELINE(model, \"rwkv_vocab_v20230424\")  # with the World vocabulary\n\
             print(pipeline.generate(\"Olá\", token_count=50))\n```\n\n"
        ),
        ExportFormat::Gguf => format!(
            "llama.cpp (architecture `rwkv7`, the World vocabulary embedded):\n\n\
             ```sh\nllama-cli -m {file} -p \"Olá\" -n 50\nllama-perplexity -m {file} -f text.txt\n```\n\n\
             or `llama_cpp.Llama(model_path=\"{file}\")` from `llama-cpp-python`; ollama imports \
             it with `FROM ./{file}` in a Modelfile.\n\n"
        ),
        ExportFormat::WebRwkv => format!(
            "web-rwkv and ai00 (its fp16 safetensors layout): put `{file}` in ai00's `assets/models` \
             and name it in `assets/configs/Config.toml` (`model.path`), with the World \
             vocabulary as its tokenizer.\n\n"
        ),
        ExportFormat::Hf => "HuggingFace transformers with flash-linear-attention (`pip install \
             flash-linear-attention transformers`; it needs Triton and a GPU):\n\n\
             ```python\nimport fla  # registers RWKV7ForCausalLM\n\
             from transformers import AutoModelForCausalLM\n\
             model = AutoModelForCausalLM.from_pretrained(\"THIS_DIRECTORY\").cuda()\n```\n\n"
            .to_string(),
        ExportFormat::Safetensors => format!(
            "Sovereign itself: `sovereign generate --weights {file} --tokenizer TOKENIZER --prompt \
             \"Olá\"`; the tensors carry RWKV-LM's names and shapes.\n\n"
        ),
    });
    out.push_str(
        "Every runtime has its own format: `sovereign export --format safetensors|pth|gguf|st|hf \
         --output PATH` writes each from the same checkpoint.\n",
    );
    out
}
