//! A HuggingFace directory in flash-linear-attention's `RWKV7ForCausalLM` layout, with the names,
//! transposes and config that fla's converter (`utils/convert_from_rwkv7.py`) produces:
//! `config.json` (`model_type: "rwkv7"`), `model.safetensors`, and the tokenizer file
//! (tokenizer.json for BPE, which `transformers` loads as is; rwkv_vocab_v20230424.txt for the
//! World vocabulary, which needs fla-hub's tokenizer code).
//!
//! RWKV-LM → fla: `emb` → `model.embeddings`, `ln_out` → `model.norm`, `head` → `lm_head`,
//! `blocks.i` → `model.layers.i` with `ln0/ln1/ln2` → `pre_norm/attn_norm/ffn_norm`,
//! `att` → `attn` (`receptance/key/value/output/ln_x` → `r_proj/k_proj/v_proj/o_proj/g_norm`);
//! each LoRA `X0, X1, X2` → `X_lora.lora.2.bias` (squeezed), `X_lora.lora.0.weight` and
//! `X_lora.lora.2.weight` (both transposed to `[out, in]`); `[1, 1, C]` vectors squeezed except
//! the token-shift mixes `attn.x_*`; block 0's unused `v0 v1 v2` dropped.

use std::path::{Path, PathBuf};

use super::{ExportError, ExportSource, write_file};
use crate::model::config::HEAD_SIZE;
use crate::model::weights::{ExportDtype, NamedTensor, save_safetensors_with};
use crate::tokenizer::Tokenizer;

/// `values` of a `[rows, cols]` matrix, transposed to `[cols, rows]`.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// fla's name for an RWKV-LM tensor, and whether it is transposed; `None` for block 0's unused
/// value-residual LoRA.
pub fn fla_name(name: &str) -> Option<(String, bool)> {
    let fixed = match name {
        "emb.weight" => Some("model.embeddings.weight"),
        "ln_out.weight" => Some("model.norm.weight"),
        "ln_out.bias" => Some("model.norm.bias"),
        "head.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Some((fixed.to_string(), false));
    }
    let parts: Vec<&str> = name.split('.').collect();
    let &["blocks", layer, module, ref rest @ ..] = parts.as_slice() else {
        return Some((name.to_string(), false));
    };
    let module = match module {
        "att" => "attn",
        "ln0" => "pre_norm",
        "ln1" => "attn_norm",
        "ln2" => "ffn_norm",
        other => other,
    };
    let mut rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
    let mut transposed = false;
    if module == "attn" {
        let first = rest[0].as_str();
        let lora = first.len() == 2
            && matches!(&first[..1], "w" | "a" | "v" | "g")
            && matches!(&first[1..], "0" | "1" | "2");
        if lora {
            if layer == "0" && first.starts_with('v') {
                return None;
            }
            let (kind, index) = first.split_at(1);
            transposed = index != "0";
            let part = match index {
                "0" => "lora.2.bias",
                "1" => "lora.0.weight",
                _ => "lora.2.weight",
            };
            rest[0] = format!("{kind}_lora.{part}");
        } else if let Some(proj) = match first {
            "receptance" => Some("r_proj"),
            "key" => Some("k_proj"),
            "value" => Some("v_proj"),
            "output" => Some("o_proj"),
            "ln_x" => Some("g_norm"),
            _ => None,
        } {
            rest[0] = proj.to_string();
        }
    }
    Some((
        format!("model.layers.{layer}.{module}.{}", rest.join(".")),
        transposed,
    ))
}

/// The tensors in fla's names, shapes and transposes.
pub fn fla_tensors(tensors: &[NamedTensor]) -> Vec<NamedTensor> {
    tensors
        .iter()
        .filter_map(|t| {
            let (name, transposed) = fla_name(&t.name)?;
            let (shape, values) = if transposed {
                (
                    vec![t.shape[1], t.shape[0]],
                    transpose(&t.values, t.shape[0], t.shape[1]),
                )
            } else if t.shape.len() == 3 && !name.contains(".attn.x_") {
                (vec![t.shape[2]], t.values.clone())
            } else {
                (t.shape.clone(), t.values.clone())
            };
            Some(NamedTensor {
                name,
                shape,
                values,
            })
        })
        .collect()
}

/// Writes the directory `dir` (config.json, model.safetensors, the tokenizer file); returns the
/// files written.
pub fn save(
    source: &ExportSource<'_>,
    dir: &Path,
    dtype: ExportDtype,
) -> Result<Vec<PathBuf>, ExportError> {
    std::fs::create_dir_all(dir).map_err(|error| ExportError::Write {
        path: dir.to_path_buf(),
        error,
    })?;
    let config = &source.config;
    let lora = config.lora();
    let torch_dtype = match dtype {
        ExportDtype::F32 => "float32",
        ExportDtype::F16 => "float16",
        ExportDtype::Bf16 => "bfloat16",
    };
    let (bos, eos) = match source.tokenizer {
        Some((Tokenizer::Bpe(bpe), _)) => (
            bpe.token_id("[BOS]").unwrap_or(0),
            bpe.eos_id().unwrap_or(0),
        ),
        _ => (0, 0),
    };
    let json = serde_json::json!({
        "architectures": ["RWKV7ForCausalLM"],
        "model_type": "rwkv7",
        "attn_mode": "chunk",
        "hidden_size": config.embd,
        "hidden_ratio": config.ffn_hidden() as f64 / config.embd as f64,
        "intermediate_size": config.ffn_hidden(),
        "num_hidden_layers": config.layers,
        "head_dim": HEAD_SIZE,
        "num_heads": config.heads(),
        "decay_low_rank_dim": lora.w,
        "gate_low_rank_dim": lora.g,
        "a_low_rank_dim": lora.a,
        "v_low_rank_dim": lora.v,
        "hidden_act": "sqrelu",
        "norm_first": true,
        "norm_bias": true,
        "norm_eps": 1e-5,
        "value_dim": vec![config.embd; config.layers],
        "vocab_size": config.vocab,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "tie_word_embeddings": false,
        "use_cache": true,
        "torch_dtype": torch_dtype,
    });
    let config_path = dir.join("config.json");
    let text =
        serde_json::to_string_pretty(&json).map_err(|e| ExportError::Model(e.to_string()))?;
    write_file(&config_path, format!("{text}\n").as_bytes())?;
    let weights = dir.join("model.safetensors");
    save_safetensors_with(
        &fla_tensors(&source.tensors),
        &weights,
        dtype,
        Some([("format".to_string(), "pt".to_string())].into()),
    )
    .map_err(|error| ExportError::Write {
        path: weights.clone(),
        error,
    })?;
    let mut written = vec![config_path, weights];
    if let Some((tokenizer, path)) = source.tokenizer {
        let name = match tokenizer {
            Tokenizer::Bpe(_) => "tokenizer.json",
            Tokenizer::World(_) => "rwkv_vocab_v20230424.txt",
        };
        let bytes = std::fs::read(path).map_err(|error| ExportError::Write {
            path: path.to_path_buf(),
            error,
        })?;
        let copy = dir.join(name);
        write_file(&copy, &bytes)?;
        written.push(copy);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::fla_name;

    #[test]
    fn names_follow_flas_converter() {
        let name = fla_name;
        assert_eq!(
            name("emb.weight"),
            Some(("model.embeddings.weight".into(), false))
        );
        assert_eq!(
            name("blocks.0.ln0.bias"),
            Some(("model.layers.0.pre_norm.bias".into(), false))
        );
        assert_eq!(
            name("blocks.3.att.w1"),
            Some(("model.layers.3.attn.w_lora.lora.0.weight".into(), true))
        );
        assert_eq!(
            name("blocks.3.att.a0"),
            Some(("model.layers.3.attn.a_lora.lora.2.bias".into(), false))
        );
        assert_eq!(
            name("blocks.3.att.g2"),
            Some(("model.layers.3.attn.g_lora.lora.2.weight".into(), true))
        );
        assert_eq!(name("blocks.0.att.v1"), None);
        assert_eq!(
            name("blocks.1.att.ln_x.weight"),
            Some(("model.layers.1.attn.g_norm.weight".into(), false))
        );
        assert_eq!(
            name("blocks.1.att.key.weight"),
            Some(("model.layers.1.attn.k_proj.weight".into(), false))
        );
        assert_eq!(
            name("blocks.1.ffn.key.weight"),
            Some(("model.layers.1.ffn.key.weight".into(), false))
        );
        assert_eq!(
            name("blocks.1.att.k_k"),
            Some(("model.layers.1.attn.k_k".into(), false))
        );
    }
}
