//! Reading RWKV-LM x070 weights (`emb.weight`, `blocks.{i}.att.*`, `blocks.{i}.ffn.*`,
//! `ln_out.*`, `head.weight`) into [`Rwkv`], from safetensors or an official `.pth`.

use super::ModelError;
use std::collections::HashMap;
use std::path::Path;

use std::io::Write;

use burn::module::Param;
use burn::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::config::ModelConfig;
use super::pth;
use super::rwkv::{Block, ChannelMix, Norm, ParamRef, Rwkv, TimeMix};
use crate::output::AtomicFile;

/// The tensors of a weights file (safetensors or a PyTorch `.pth`) as f32, with their shapes.
pub struct TensorFile {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Tensors of other dtypes (integers), named in errors if asked for.
    other_dtypes: HashMap<String, Dtype>,
    path: String,
}

impl TensorFile {
    /// Reads every float tensor of `path` (f32, f64, bf16 or f16) as f32: a safetensors file or
    /// a PyTorch zip checkpoint (`.pth`), told apart by content.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let problem = |problem: String| ModelError::Weights {
            path: name.clone(),
            problem,
        };
        if pth::is_zip(&bytes) {
            let tensors = pth::read_pth(&bytes).map_err(problem)?;
            return Ok(Self {
                tensors: tensors
                    .into_iter()
                    .map(|t| (t.name, (t.shape, t.values)))
                    .collect(),
                other_dtypes: HashMap::new(),
                path: name,
            });
        }
        if pth::is_legacy_torch(&bytes) {
            return Err(problem(
                "this is torch.save's format from before PyTorch 1.6, which is not read; re-save \
                 it with a newer torch: torch.save(torch.load(PATH), NEW_PATH)"
                    .into(),
            ));
        }
        let file = SafeTensors::deserialize(&bytes).map_err(|e| {
            problem(format!(
                "neither a safetensors file nor a PyTorch zip checkpoint: {e}"
            ))
        })?;
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
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
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
    pub fn get(&self, key: &str, numel: usize) -> Result<&[f32], ModelError> {
        let problem = |problem: String| ModelError::Weights {
            path: self.path.clone(),
            problem,
        };
        if let Some(dtype) = self.other_dtypes.get(key) {
            return Err(problem(format!(
                "{key} has dtype {dtype:?}; f32, f64 or bf16 expected"
            )));
        }
        let (shape, values) = self
            .tensors
            .get(key)
            .ok_or_else(|| problem(format!("no tensor {key}")))?;
        if values.len() != numel {
            return Err(problem(format!(
                "{key} has shape {shape:?}; {numel} values expected"
            )));
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
pub fn config_of(file: &TensorFile) -> Result<ModelConfig, ModelError> {
    let problem = |problem: String| ModelError::Weights {
        path: file.path.clone(),
        problem,
    };
    let emb = file
        .shape("emb.weight")
        .ok_or_else(|| problem("no emb.weight".into()))?;
    let (vocab, embd) = (emb[0], emb[1]);
    let layers = (0..)
        .take_while(|i| file.contains(&format!("blocks.{i}.ln1.weight")))
        .count();
    ModelConfig::new(vocab, layers, embd).map_err(|e| problem(e.to_string()))
}

/// Builds the model from RWKV-LM weights.
pub fn load_rwkv<B: Backend>(
    file: &TensorFile,
    device: &B::Device,
) -> Result<(Rwkv<B>, ModelConfig), ModelError> {
    let config = config_of(file)?;
    let (v, c, h) = (config.vocab, config.embd, config.heads());
    let lora = config.lora();
    let vector = |key: &str| -> Result<Param<Tensor<B, 1>>, ModelError> {
        Ok(Param::from_tensor(Tensor::from_data(
            TensorData::new(file.get(key, c)?.to_vec(), [c]),
            device,
        )))
    };
    let matrix = |key: &str, rows: usize, cols: usize| -> Result<Param<Tensor<B, 2>>, ModelError> {
        let data = TensorData::new(file.get(key, rows * cols)?.to_vec(), [rows, cols]);
        Ok(Param::from_tensor(Tensor::from_data(data, device)))
    };
    let norm = |prefix: &str| -> Result<Norm<B>, ModelError> {
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

/// The element type of exported weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    /// 32-bit float.
    F32,
    /// bfloat16 (truncated to nearest-even from f32).
    Bf16,
    /// IEEE half.
    F16,
}

/// Writes the model as RWKV-LM's `model.safetensors` (f32, RWKV-LM names and shapes),
/// atomically.
pub fn save_rwkv<B: Backend>(model: &Rwkv<B>, path: &Path) -> std::io::Result<()> {
    save_rwkv_as(model, path, ExportDtype::F32)
}

/// Converts one f32 to the bytes of `dtype`.
fn encode(x: f32, dtype: ExportDtype, out: &mut Vec<u8>) {
    match dtype {
        ExportDtype::F32 => out.extend_from_slice(&x.to_le_bytes()),
        ExportDtype::Bf16 => {
            let bits = x.to_bits();
            let rounded = if x.is_nan() {
                (bits >> 16) | 0x40
            } else {
                (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            };
            out.extend_from_slice(&(rounded as u16).to_le_bytes());
        }
        ExportDtype::F16 => out.extend_from_slice(&f32_to_f16(x).to_le_bytes()),
    }
}

/// IEEE binary16 from f32, rounding to nearest even; overflow becomes infinity.
fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xFF) as i32;
    let mant = bits & 0x7F_FFFF;
    if exp == 0xFF {
        return sign | 0x7C00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1F {
        return sign | 0x7C00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1 << (shift - 1);
        let rounded = (m + half - 1 + ((m >> shift) & 1)) >> shift;
        return sign | rounded as u16;
    }
    let rounded = mant + 0xFFF + ((mant >> 13) & 1);
    if rounded & 0x80_0000 != 0 {
        return sign | (((e + 1) as u16) << 10);
    }
    sign | ((e as u16) << 10) | (rounded >> 13) as u16
}

/// One of the model's tensors under its RWKV-LM name and shape, as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// The RWKV-LM name (`blocks.0.att.key.weight`, ...).
    pub name: String,
    /// The RWKV-LM shape (Linear weights `[out, in]`, mix vectors `[1, 1, C]`).
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// Every parameter of `model` in RWKV-LM names and shapes, in a fixed order.
pub fn rwkv_tensors<B: Backend>(model: &Rwkv<B>) -> Result<Vec<NamedTensor>, ModelError> {
    let values = |data: burn::tensor::TensorData, name: &str| {
        data.to_vec::<f32>().map_err(|e| ModelError::Weights {
            path: "the model".into(),
            problem: format!("{name}: {e:?}"),
        })
    };
    model
        .named_params()
        .into_iter()
        .map(|(name, param)| {
            let (shape, data) = match param {
                ParamRef::Vector(p) => {
                    let c = p.val().dims()[0];
                    let shape = if stored_3d(&name) {
                        vec![1, 1, c]
                    } else {
                        vec![c]
                    };
                    (shape, values(p.val().into_data(), &name)?)
                }
                ParamRef::Matrix(p) => {
                    (p.val().dims().to_vec(), values(p.val().into_data(), &name)?)
                }
            };
            Ok(NamedTensor {
                name,
                shape,
                values: data,
            })
        })
        .collect()
}

/// The little-endian bytes of `values` as `dtype`.
pub fn encode_values(values: &[f32], dtype: ExportDtype) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    values.iter().for_each(|&x| encode(x, dtype, &mut bytes));
    bytes
}

/// Writes tensors as a safetensors file (`dtype`), atomically.
pub fn save_safetensors(
    tensors: &[NamedTensor],
    path: &Path,
    dtype: ExportDtype,
) -> std::io::Result<()> {
    save_safetensors_with(tensors, path, dtype, None)
}

/// [`save_safetensors`] with the header's `__metadata__`.
pub fn save_safetensors_with(
    tensors: &[NamedTensor],
    path: &Path,
    dtype: ExportDtype,
    metadata: Option<HashMap<String, String>>,
) -> std::io::Result<()> {
    let st_dtype = match dtype {
        ExportDtype::F32 => Dtype::F32,
        ExportDtype::Bf16 => Dtype::BF16,
        ExportDtype::F16 => Dtype::F16,
    };
    let encoded: Vec<(&NamedTensor, Vec<u8>)> = tensors
        .iter()
        .map(|t| (t, encode_values(&t.values, dtype)))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = encoded
        .iter()
        .map(|(t, bytes)| {
            let view =
                TensorView::new(st_dtype, t.shape.clone(), bytes).map_err(std::io::Error::other)?;
            Ok((t.name.clone(), view))
        })
        .collect::<std::io::Result<_>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(std::io::Error::other)?;
    let mut file = AtomicFile::create(path)?;
    file.write_all(&bytes)?;
    file.commit()
}

/// Writes the model's weights in RWKV-LM names and shapes as `dtype`, atomically.
pub fn save_rwkv_as<B: Backend>(
    model: &Rwkv<B>,
    path: &Path,
    dtype: ExportDtype,
) -> std::io::Result<()> {
    let tensors = rwkv_tensors(model).map_err(std::io::Error::other)?;
    save_safetensors(&tensors, path, dtype)
}

/// f32 from IEEE binary16.
pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1F);
    let mant = u32::from(h & 0x3FF);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalize.
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((m << shift) & 0x3FF) << 13
        }
        (0x1F, m) => sign | 0x7F80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_round_trips_representable_values() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            -2.5,
            65504.0,
            6.1035156e-5,
            5.9604645e-8,
            0.333_251_95,
        ] {
            assert_eq!(f16_to_f32(f32_to_f16(x)), x, "{x}");
        }
        assert_eq!(f32_to_f16(1e6), 0x7C00);
        assert_eq!(
            f32_to_f16(1.0 + 1.0 / 4096.0),
            f32_to_f16(1.0),
            "ties round to even"
        );
        let mut bf = Vec::new();
        encode(1.0 + 1.0 / 256.0, ExportDtype::Bf16, &mut bf);
        assert_eq!(
            u16::from_le_bytes([bf[0], bf[1]]),
            0x3F80,
            "bf16 ties round to even"
        );
    }
}
