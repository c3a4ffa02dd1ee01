//! GGUF for llama.cpp's `rwkv7` architecture: the tensor names, shapes and metadata that
//! llama.cpp's own converter (`convert_hf_to_gguf.py`, `Rwkv7Model`) writes, and the World
//! vocabulary embedded as its `rwkv` tokenizer.
//!
//! From the RWKV-LM tensors: the six token-shift mixes `x_r … x_g` stacked into
//! `time_mix_lerp_fused` `[6, 1, 1, C]`; the LoRA matrices transposed to `[out, in]`; vectors
//! squeezed to `[C]` (`r_k` flattened); block 0's unused value-residual LoRA replaced by copies of
//! its `a` LoRA, as the converter does; every other tensor renamed. Vectors stay f32, matrices
//! take the export dtype. Shapes are written innermost first, as GGUF stores them.

use std::collections::HashMap;

use super::ExportError;
use crate::model::config::{HEAD_SIZE, ModelConfig};
use crate::model::weights::{ExportDtype, NamedTensor, encode_values};
use crate::tokenizer::world::World;

/// GGUF's alignment of tensor data (the default, `general.alignment` unset).
const ALIGNMENT: usize = 32;

/// A metadata value.
enum Meta {
    U32(u32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// One GGUF tensor: its name, its torch-order shape and its f32 values.
struct Tensor {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// The whole `.gguf` file for `tensors` (RWKV-LM names) with the World vocabulary embedded.
pub fn gguf_bytes(
    tensors: &[NamedTensor],
    config: &ModelConfig,
    world: &World,
    name: &str,
    dtype: ExportDtype,
) -> Result<Vec<u8>, ExportError> {
    let tensors = llama_tensors(tensors, config)?;
    let lora = config.lora();
    let file_type = match dtype {
        ExportDtype::F32 => 0,
        ExportDtype::F16 => 1,
        ExportDtype::Bf16 => 32,
    };
    let arch = |key: &str| format!("rwkv7.{key}");
    let u32_of = |n: usize| Meta::U32(n as u32);
    let parameters = tensors.iter().map(|t| t.values.len()).sum();
    let mut meta: Vec<(String, Meta)> = vec![
        ("general.architecture".into(), Meta::Str("rwkv7".into())),
        ("general.type".into(), Meta::Str("model".into())),
        ("general.name".into(), Meta::Str(name.into())),
        (
            "general.size_label".into(),
            Meta::Str(size_label(parameters)),
        ),
        ("general.quantization_version".into(), Meta::U32(2)),
        ("general.file_type".into(), Meta::U32(file_type)),
        (arch("context_length"), Meta::U32(1 << 20)),
        (arch("embedding_length"), u32_of(config.embd)),
        (arch("block_count"), u32_of(config.layers)),
        (arch("attention.layer_norm_epsilon"), Meta::F32(1e-5)),
        (arch("wkv.head_size"), u32_of(HEAD_SIZE)),
        (arch("attention.decay_lora_rank"), u32_of(lora.w)),
        (arch("attention.iclr_lora_rank"), u32_of(lora.a)),
        (
            arch("attention.value_residual_mix_lora_rank"),
            u32_of(lora.v),
        ),
        (arch("attention.gate_lora_rank"), u32_of(lora.g)),
        (arch("feed_forward_length"), u32_of(config.ffn_hidden())),
        (arch("attention.head_count"), Meta::U32(0)),
    ];
    meta.extend(world_vocabulary(world, config.vocab)?);

    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    for (key, value) in &meta {
        push_string(&mut out, key);
        push_meta(&mut out, value);
    }
    let mut data = Vec::new();
    for tensor in &tensors {
        // Vectors (and the fused mixes) stay f32, as the converter keeps every tensor of one
        // dimension (after squeezing) in f32.
        let matrix = tensor.shape.iter().filter(|&&n| n > 1).count() >= 2
            && !tensor.name.ends_with("time_mix_lerp_fused.weight");
        let dtype = if matrix { dtype } else { ExportDtype::F32 };
        let ggml_type: u32 = match dtype {
            ExportDtype::F32 => 0,
            ExportDtype::F16 => 1,
            ExportDtype::Bf16 => 30,
        };
        pad(&mut data);
        push_string(&mut out, &tensor.name);
        out.extend_from_slice(&(tensor.shape.len() as u32).to_le_bytes());
        for &n in tensor.shape.iter().rev() {
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
        out.extend_from_slice(&ggml_type.to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        data.extend(encode_values(&tensor.values, dtype));
    }
    pad(&mut out);
    out.extend(data);
    Ok(out)
}

/// The tensors under llama.cpp's names and shapes (torch order).
fn llama_tensors(
    tensors: &[NamedTensor],
    config: &ModelConfig,
) -> Result<Vec<Tensor>, ExportError> {
    let by_name: HashMap<&str, &NamedTensor> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let get = |name: &str| {
        by_name
            .get(name)
            .copied()
            .ok_or_else(|| ExportError::Model(format!("the model has no tensor {name}")))
    };
    let c = config.embd;
    let as_is = |to: &str, from: &str| -> Result<Tensor, ExportError> {
        let t = get(from)?;
        Ok(Tensor {
            name: to.into(),
            shape: t.shape.clone(),
            values: t.values.clone(),
        })
    };
    let vector = |to: &str, from: &str| -> Result<Tensor, ExportError> {
        let t = get(from)?;
        Ok(Tensor {
            name: to.into(),
            shape: vec![t.values.len()],
            values: t.values.clone(),
        })
    };
    let transposed = |to: &str, from: &str| -> Result<Tensor, ExportError> {
        let t = get(from)?;
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let mut values = vec![0.0; t.values.len()];
        for r in 0..rows {
            for k in 0..cols {
                values[k * rows + r] = t.values[r * cols + k];
            }
        }
        Ok(Tensor {
            name: to.into(),
            shape: vec![cols, rows],
            values,
        })
    };
    let mut out = vec![
        as_is("token_embd.weight", "emb.weight")?,
        vector("token_embd_norm.weight", "blocks.0.ln0.weight")?,
        vector("token_embd_norm.bias", "blocks.0.ln0.bias")?,
        vector("output_norm.weight", "ln_out.weight")?,
        vector("output_norm.bias", "ln_out.bias")?,
        as_is("output.weight", "head.weight")?,
    ];
    for i in 0..config.layers {
        let from = |n: &str| format!("blocks.{i}.{n}");
        let to = |n: &str| format!("blk.{i}.{n}");
        for (norm, name) in [("ln1", "attn_norm"), ("ln2", "attn_norm_2")] {
            for part in ["weight", "bias"] {
                out.push(vector(
                    &to(&format!("{name}.{part}")),
                    &from(&format!("{norm}.{part}")),
                )?);
            }
        }
        let mut lerp = Vec::with_capacity(6 * c);
        for mix in ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g"] {
            lerp.extend_from_slice(&get(&from(&format!("att.{mix}")))?.values);
        }
        out.push(Tensor {
            name: to("time_mix_lerp_fused.weight"),
            shape: vec![6, 1, 1, c],
            values: lerp,
        });
        // Block 0 has no value residual: llama.cpp wants its slot filled with the a LoRA's shape.
        let v = if i == 0 { "a" } else { "v" };
        for (to_name, from_name) in [("w", "w"), ("a", "a"), ("v", v)] {
            out.push(vector(
                &to(&format!("time_mix_{to_name}0.weight")),
                &from(&format!("att.{from_name}0")),
            )?);
            for n in 1..=2 {
                out.push(transposed(
                    &to(&format!("time_mix_{to_name}{n}.weight")),
                    &from(&format!("att.{from_name}{n}")),
                )?);
            }
        }
        for n in 1..=2 {
            out.push(transposed(
                &to(&format!("time_mix_g{n}.weight")),
                &from(&format!("att.g{n}")),
            )?);
        }
        for (to_name, from_name) in [("k_k", "k_k"), ("k_a", "k_a"), ("r_k", "r_k")] {
            out.push(vector(
                &to(&format!("time_mix_{to_name}.weight")),
                &from(&format!("att.{from_name}")),
            )?);
        }
        for (to_name, from_name) in [
            ("time_mix_key", "att.key"),
            ("time_mix_value", "att.value"),
            ("time_mix_receptance", "att.receptance"),
            ("time_mix_output", "att.output"),
            ("channel_mix_key", "ffn.key"),
            ("channel_mix_value", "ffn.value"),
        ] {
            out.push(as_is(
                &to(&format!("{to_name}.weight")),
                &from(&format!("{from_name}.weight")),
            )?);
        }
        for part in ["weight", "bias"] {
            out.push(vector(
                &to(&format!("time_mix_ln.{part}")),
                &from(&format!("att.ln_x.{part}")),
            )?);
        }
        out.push(vector(&to("channel_mix_lerp_k.weight"), &from("ffn.x_k"))?);
    }
    Ok(out)
}

/// The `rwkv` tokenizer's metadata: `<s>` at id 0 (a control token), each id's bytes written as
/// Python's `repr` of them without the `b'…'` (which llama.cpp unescapes), `[PADn]` for the ids
/// the vocabulary does not use; `<s>` begins and ends text and `\n\n` (261) ends a turn, as the
/// converter sets them.
fn world_vocabulary(world: &World, vocab: usize) -> Result<Vec<(String, Meta)>, ExportError> {
    if vocab != crate::tokenizer::world::VOCAB_SIZE {
        return Err(ExportError::Tokenizer(format!(
            "the model has a vocabulary of {vocab}, but the World vocabulary has {} ids",
            crate::tokenizer::world::VOCAB_SIZE
        )));
    }
    let mut tokens = vec!["<s>".to_string()];
    let mut types = vec![3];
    for id in 1..vocab as u32 {
        let bytes = world.token(id);
        if bytes.is_empty() {
            tokens.push(format!("[PAD{id}]"));
            types.push(5);
        } else {
            tokens.push(python_bytes_repr(bytes));
            types.push(1);
        }
    }
    Ok(vec![
        ("tokenizer.ggml.model".into(), Meta::Str("rwkv".into())),
        ("tokenizer.ggml.tokens".into(), Meta::Strs(tokens)),
        ("tokenizer.ggml.token_type".into(), Meta::I32s(types)),
        ("tokenizer.ggml.bos_token_id".into(), Meta::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), Meta::U32(0)),
        ("tokenizer.ggml.eot_token_id".into(), Meta::U32(261)),
        (
            "tokenizer.chat_template".into(),
            Meta::Str("rwkv-world".into()),
        ),
    ])
}

/// Python's `repr(bytes)` without its `b'` and `'`: backslash escapes for `\\`, the quote,
/// tab, newline and return, `\xNN` for other bytes outside printable ASCII.
pub fn python_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if b == quote => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The size label GGUF files carry: the parameter count in K, M, B or T with at least two
/// significant digits before the point ("17M", "190M", "1.5B").
fn size_label(parameters: usize) -> String {
    let n = parameters as f64;
    let (scaled, suffix) = match n {
        _ if n > 1e12 => (n * 1e-12, "T"),
        _ if n > 1e9 => (n * 1e-9, "B"),
        _ if n > 1e6 => (n * 1e-6, "M"),
        _ => (n * 1e-3, "K"),
    };
    let integer_digits = match scaled.round() as u64 {
        0 => 0,
        whole => whole.to_string().len(),
    };
    let decimals = 2usize.saturating_sub(integer_digits);
    format!("{scaled:.decimals$}{suffix}")
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn push_meta(out: &mut Vec<u8>, value: &Meta) {
    match value {
        Meta::U32(n) => {
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        Meta::F32(x) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        Meta::Str(s) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            push_string(out, s);
        }
        Meta::Strs(items) => {
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&8u32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|s| push_string(out, s));
        }
        Meta::I32s(items) => {
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items
                .iter()
                .for_each(|n| out.extend_from_slice(&n.to_le_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{python_bytes_repr, size_label};

    #[test]
    fn size_labels_as_gguf_writes_them() {
        assert_eq!(size_label(17_301_632), "17M");
        assert_eq!(size_label(191_000_000), "191M");
        assert_eq!(size_label(1_527_000_000), "1.5B");
        assert_eq!(size_label(557_312), "557K");
        assert_eq!(size_label(9_400), "9.4K");
    }

    #[test]
    fn token_text_is_pythons_repr() {
        assert_eq!(python_bytes_repr(b"abc"), "abc");
        assert_eq!(python_bytes_repr(b"\n\t\\"), "\\n\\t\\\\");
        assert_eq!(python_bytes_repr(&[0xc3, 0xa9, 0x00]), "\\xc3\\xa9\\x00");
        assert_eq!(python_bytes_repr(b"it's"), "it's");
        assert_eq!(python_bytes_repr(b"'\""), "\\'\"");
    }
}
