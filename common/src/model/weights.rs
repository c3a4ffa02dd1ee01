//! Reading RWKV-LM x070 weights (`model.safetensors`: `emb.weight`, `blocks.{i}.att.*`,
//! `blocks.{i}.ffn.*`, `ln_out.*`, `head.weight`) into [`Rwkv`].

use std::collections::HashMap;
use std::path::Path;

use std::io::Write;

use burn::module::Param;
use burn::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::config::ModelConfig;
use super::rwkv::{Block, ChannelMix, Norm, ParamRef, Rwkv, TimeMix};
use crate::output::AtomicFile;

/// The tensors of a safetensors file as f32, with their shapes.
pub struct TensorFile {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Tensors of other dtypes (integers), named in errors if asked for.
    other_dtypes: HashMap<String, Dtype>,
    path: String,
}

impl TensorFile {
    /// Reads every float tensor of `path` (f32, f64 or bf16) as f32.
    pub fn read(path: &Path) -> Result<Self, String> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"))?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{name}: not a safetensors file: {e}"))?;
        let mut tensors = HashMap::new();
        let mut other_dtypes = HashMap::new();
        for (key, view) in file.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F64 => data
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                    .collect(),
                other => {
                    other_dtypes.insert(key, other);
                    continue;
                }
            };
            tensors.insert(key, (view.shape().to_vec(), values));
        }
        Ok(Self {
            tensors,
            other_dtypes,
            path: name,
        })
    }

    /// The tensor `key` with `numel` elements.
    pub fn get(&self, key: &str, numel: usize) -> Result<&[f32], String> {
        if let Some(dtype) = self.other_dtypes.get(key) {
            return Err(format!(
                "{}: {key} has dtype {dtype:?}; f32, f64 or bf16 expected",
                self.path
            ));
        }
        let (shape, values) = self
            .tensors
            .get(key)
            .ok_or_else(|| format!("{}: no tensor {key}", self.path))?;
        if values.len() != numel {
            return Err(format!(
                "{}: {key} has shape {shape:?}; {numel} values expected",
                self.path
            ));
        }
        Ok(values)
    }

    /// The shape of `key`, if present.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|(s, _)| s.as_slice())
    }

    /// The names of the float tensors, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether the file has `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }
}

/// The model shape a weights file holds.
pub fn config_of(file: &TensorFile) -> Result<ModelConfig, String> {
    let emb = file
        .shape("emb.weight")
        .ok_or_else(|| format!("{}: no emb.weight", file.path))?;
    let (vocab, embd) = (emb[0], emb[1]);
    let layers = (0..)
        .take_while(|i| file.contains(&format!("blocks.{i}.ln1.weight")))
        .count();
    ModelConfig::new(vocab, layers, embd).map_err(|e| format!("{}: {e}", file.path))
}

/// Builds the model from RWKV-LM weights.
pub fn load_rwkv<B: Backend>(
    file: &TensorFile,
    device: &B::Device,
) -> Result<(Rwkv<B>, ModelConfig), String> {
    let config = config_of(file)?;
    let (v, c, h) = (config.vocab, config.embd, config.heads());
    let lora = config.lora();
    let vector = |key: &str| -> Result<Param<Tensor<B, 1>>, String> {
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(file.get(key, c)?.to_vec(), [c]),
            device,
        )))
    };
    let matrix = |key: &str, rows: usize, cols: usize| -> Result<Param<Tensor<B, 2>>, String> {
        let data = TensorData::new(file.get(key, rows * cols)?.to_vec(), [rows, cols]);
        Ok(Param::from_tensor(Tensor::from_data(data, device)))
    };
    let norm = |prefix: &str| -> Result<Norm<B>, String> {
        Ok(Norm {
            weight: vector(&format!("{prefix}.weight"))?,
            bias: vector(&format!("{prefix}.bias"))?,
        })
    };
    let mut blocks = Vec::with_capacity(config.layers);
    for i in 0..config.layers {
        let p = |name: &str| format!("blocks.{i}.{name}");
        let att = TimeMix {
            x_r: vector(&p("att.x_r"))?,
            x_w: vector(&p("att.x_w"))?,
            x_k: vector(&p("att.x_k"))?,
            x_v: vector(&p("att.x_v"))?,
            x_a: vector(&p("att.x_a"))?,
            x_g: vector(&p("att.x_g"))?,
            w0: vector(&p("att.w0"))?,
            w1: matrix(&p("att.w1"), c, lora.w)?,
            w2: matrix(&p("att.w2"), lora.w, c)?,
            a0: vector(&p("att.a0"))?,
            a1: matrix(&p("att.a1"), c, lora.a)?,
            a2: matrix(&p("att.a2"), lora.a, c)?,
            v0: vector(&p("att.v0"))?,
            v1: matrix(&p("att.v1"), c, lora.v)?,
            v2: matrix(&p("att.v2"), lora.v, c)?,
            g1: matrix(&p("att.g1"), c, lora.g)?,
            g2: matrix(&p("att.g2"), lora.g, c)?,
            k_k: vector(&p("att.k_k"))?,
            k_a: vector(&p("att.k_a"))?,
            r_k: matrix(&p("att.r_k"), h, c / h)?,
            receptance: matrix(&p("att.receptance.weight"), c, c)?,
            key: matrix(&p("att.key.weight"), c, c)?,
            value: matrix(&p("att.value.weight"), c, c)?,
            output: matrix(&p("att.output.weight"), c, c)?,
            ln_x: norm(&p("att.ln_x"))?,
        };
        let ffn = ChannelMix {
            x_k: vector(&p("ffn.x_k"))?,
            key: matrix(&p("ffn.key.weight"), config.ffn_hidden(), c)?,
            value: matrix(&p("ffn.value.weight"), c, config.ffn_hidden())?,
        };
        let ln0 = if i == 0 { Some(norm(&p("ln0"))?) } else { None };
        blocks.push(Block {
            ln0,
            ln1: norm(&p("ln1"))?,
            ln2: norm(&p("ln2"))?,
            att,
            ffn,
        });
    }
    let model = Rwkv {
        emb: matrix("emb.weight", v, c)?,
        blocks,
        ln_out: norm("ln_out")?,
        head: matrix("head.weight", v, c)?,
    };
    Ok((model, config))
}

/// Whether RWKV-LM stores this vector parameter as `[1, 1, C]` (mixes and LoRA biases) rather
/// than `[C]` (norm weights and biases).
fn stored_3d(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or_default();
    matches!(
        last,
        "x_r" | "x_w" | "x_k" | "x_v" | "x_a" | "x_g" | "w0" | "a0" | "v0" | "k_k" | "k_a"
    )
}

/// Writes the model as RWKV-LM's `model.safetensors` (f32, RWKV-LM names and shapes),
/// atomically.
pub fn save_rwkv<B: Backend>(model: &Rwkv<B>, path: &Path) -> std::io::Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, param) in model.named_params() {
        let (shape, values): (Vec<usize>, Vec<f32>) = match param {
            ParamRef::Vector(p) => {
                let t = p.val();
                let c = t.dims()[0];
                let shape = if stored_3d(&name) {
                    vec![1, 1, c]
                } else {
                    vec![c]
                };
                (
                    shape,
                    t.into_data()
                        .to_vec()
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))?,
                )
            }
            ParamRef::Matrix(p) => {
                let t = p.val();
                (
                    t.dims().to_vec(),
                    t.into_data()
                        .to_vec()
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))?,
                )
            }
        };
        let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((name, shape, bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(std::io::Error::other)?;
            Ok((name.clone(), view))
        })
        .collect::<std::io::Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(std::io::Error::other)?;
    let mut file = AtomicFile::create(path)?;
    file.write_all(&bytes)?;
    file.commit()
}
