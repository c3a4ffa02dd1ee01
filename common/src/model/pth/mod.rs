//! PyTorch checkpoints (`.pth`, the zip format `torch.save` has written since 1.6): the state
//! dict of float tensors that released RWKV-7 files are, read and written.
//!
//! Such a file is a zip archive `NAME/data.pkl` + `NAME/data/KEY` + `NAME/byteorder` +
//! `NAME/version`. `data.pkl` is a pickle (protocol 2) of a dict from names to
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`, where each storage is a
//! persistent id `('storage', torch.<Type>Storage, KEY, location, numel)` whose bytes are
//! `NAME/data/KEY`. Tensors may be views: several share one storage at different offsets and
//! strides. The reader runs the small subset of the pickle machine that torch writes and refuses
//! any other callable; the older non-zip format is refused with what to do.

mod pickle;

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};

use pickle::{TensorView, Unpickler, Value};

/// A float element type that a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PthDtype {
    /// torch.float32 (`FloatStorage`).
    F32,
    /// torch.float16 (`HalfStorage`).
    F16,
    /// torch.bfloat16 (`BFloat16Storage`).
    Bf16,
    /// torch.float64 (`DoubleStorage`).
    F64,
}

impl PthDtype {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::Bf16,
            "DoubleStorage" => Self::F64,
            _ => return None,
        })
    }

    fn storage_name(self) -> &'static str {
        match self {
            Self::F32 => "FloatStorage",
            Self::F16 => "HalfStorage",
            Self::Bf16 => "BFloat16Storage",
            Self::F64 => "DoubleStorage",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F16 | Self::Bf16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// Element `index` of little-endian `bytes` as f32.
    fn value(self, bytes: &[u8], index: usize) -> f32 {
        let at = index * self.size();
        let b = &bytes[at..at + self.size()];
        match self {
            Self::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Self::F16 => super::weights::f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Self::Bf16 => f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16),
            Self::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
        }
    }
}

/// One tensor of a checkpoint, made contiguous and widened to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct PthTensor {
    /// Its name in the state dict.
    pub name: String,
    /// Its dtype in the file.
    pub dtype: PthDtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values in row-major order.
    pub values: Vec<f32>,
}

/// Whether `bytes` start like a zip archive (a torch checkpoint since 1.6).
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Whether `bytes` start like a pickle stream: torch's format before 1.6.
pub fn is_legacy_torch(bytes: &[u8]) -> bool {
    bytes.len() > 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1])
}

/// Reads the state dict of a zip checkpoint; anything else than a dict of float tensors is
/// refused with what was found.
pub fn read_pth(bytes: &[u8]) -> Result<Vec<PthTensor>, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    let pickle_name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or("no NAME/data.pkl inside: not a torch.save checkpoint")?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let mut entry = |name: &str| -> Result<Option<Vec<u8>>, String> {
        let mut file = match archive.by_name(name) {
            Ok(file) => file,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(format!("{name}: {e}")),
        };
        let mut out = Vec::with_capacity((file.size() as usize).min(bytes.len()));
        file.read_to_end(&mut out)
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(Some(out))
    };
    if let Some(order) = entry(&format!("{prefix}byteorder"))?
        && order != b"little"
    {
        return Err(format!(
            "byteorder is {:?}; only little-endian checkpoints are read",
            String::from_utf8_lossy(&order)
        ));
    }
    let pickle = entry(&pickle_name)?.ok_or("data.pkl vanished")?;
    let root = Unpickler::new(&pickle).run()?;
    let Value::Dict(items) = root else {
        return Err(format!(
            "data.pkl holds {}, not a state dict (save model.state_dict(), a dict of tensors)",
            root.kind()
        ));
    };
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(items.len());
    for (key, value) in items {
        let Value::Str(name) = key else {
            return Err(format!("a state dict key is {}, not a string", key.kind()));
        };
        let Value::Tensor(tensor) = value else {
            return Err(format!(
                "{name} is {}, not a tensor; only a flat dict of tensors is read",
                value.kind()
            ));
        };
        if !storages.contains_key(&tensor.storage.key) {
            let path = format!("{prefix}data/{}", tensor.storage.key);
            let data = entry(&path)?.ok_or_else(|| format!("{name}: no {path} in the archive"))?;
            storages.insert(tensor.storage.key.clone(), data);
        }
        let storage = &storages[&tensor.storage.key];
        tensors.push(tensor.gather(name, storage)?);
    }
    Ok(tensors)
}

impl TensorView {
    /// Copies the view's elements out of `bytes` (its storage) in row-major order.
    fn gather(self, name: String, bytes: &[u8]) -> Result<PthTensor, String> {
        let Self {
            storage,
            offset,
            shape,
            strides,
        } = self;
        let dtype = storage.dtype;
        if shape.len() != strides.len() {
            return Err(format!(
                "{name}: {} sizes but {} strides",
                shape.len(),
                strides.len()
            ));
        }
        let stored = storage.numel.min(bytes.len() / dtype.size());
        let cut_short = || {
            format!(
                "{name} reaches past the {stored} elements of its storage: the file is cut short \
                 or damaged"
            )
        };
        let numel = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(cut_short)?;
        if numel > stored {
            return Err(format!(
                "{name} has {numel} elements over a storage of {stored} (an expanded view); save \
                 it with .contiguous()"
            ));
        }
        if numel > 0 {
            let last = shape
                .iter()
                .zip(&strides)
                .try_fold(offset, |at, (&n, &s)| {
                    at.checked_add((n - 1).checked_mul(s)?)
                })
                .ok_or_else(cut_short)?;
            if last >= stored {
                return Err(cut_short());
            }
        }
        let mut values = Vec::with_capacity(numel);
        let mut index = vec![0usize; shape.len()];
        for _ in 0..numel {
            let at = offset
                + index
                    .iter()
                    .zip(&strides)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            values.push(dtype.value(bytes, at));
            for d in (0..shape.len()).rev() {
                index[d] += 1;
                if index[d] < shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(PthTensor {
            name,
            dtype,
            shape,
            values,
        })
    }
}

/// One tensor to write: its name, shape, dtype and little-endian bytes (row-major).
pub struct PthEntry<'a> {
    /// Its name in the state dict.
    pub name: &'a str,
    /// Its shape.
    pub shape: &'a [usize],
    /// Its element type.
    pub dtype: PthDtype,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// A checkpoint as `torch.save(state_dict, path)` writes it (zip, protocol-2 pickle, one storage
/// per tensor, 64-byte aligned), named `archive` inside.
pub fn write_pth(archive: &str, tensors: &[PthEntry<'_>]) -> std::io::Result<Vec<u8>> {
    let mut pickle = vec![0x80, 2, b'}', b'('];
    for (key, tensor) in tensors.iter().enumerate() {
        let numel = tensor.bytes.len() / tensor.dtype.size();
        push_str(&mut pickle, tensor.name);
        pickle.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        push_str(&mut pickle, "storage");
        pickle.extend_from_slice(format!("ctorch\n{}\n", tensor.dtype.storage_name()).as_bytes());
        push_str(&mut pickle, &key.to_string());
        push_str(&mut pickle, "cpu");
        push_int(&mut pickle, numel);
        pickle.extend_from_slice(b"tQ");
        push_int(&mut pickle, 0);
        let mut strides = vec![1usize; tensor.shape.len()];
        for d in (0..tensor.shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * tensor.shape[d + 1];
        }
        for sizes in [tensor.shape, &strides] {
            pickle.push(b'(');
            sizes.iter().for_each(|&n| push_int(&mut pickle, n));
            pickle.push(b't');
        }
        pickle.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    pickle.extend_from_slice(b"u.");

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let mut add = |name: String, bytes: &[u8]| -> std::io::Result<()> {
        zip.start_file(name, options)
            .map_err(std::io::Error::other)?;
        zip.write_all(bytes)
    };
    add(format!("{archive}/data.pkl"), &pickle)?;
    add(format!("{archive}/byteorder"), b"little")?;
    for (key, tensor) in tensors.iter().enumerate() {
        add(format!("{archive}/data/{key}"), tensor.bytes)?;
    }
    add(format!("{archive}/version"), b"3\n")?;
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

fn push_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'X');
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn push_int(out: &mut Vec<u8>, n: usize) {
    if n < 0x100 {
        out.extend_from_slice(&[b'K', n as u8]);
    } else if n < 0x1_0000 {
        out.push(b'M');
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < 0x8000_0000 {
        out.push(b'J');
        out.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&[0x8a, 8]);
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::pickle::Storage;
    use super::*;

    #[test]
    fn what_we_write_reads_back() {
        let a: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let b: Vec<u8> = [0x3f80u16, 0xc000]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let bytes = write_pth(
            "model",
            &[
                PthEntry {
                    name: "a",
                    shape: &[2, 3],
                    dtype: PthDtype::F32,
                    bytes: &a,
                },
                PthEntry {
                    name: "blocks.0.b",
                    shape: &[1, 1, 2],
                    dtype: PthDtype::Bf16,
                    bytes: &b,
                },
            ],
        )
        .unwrap();
        assert!(is_zip(&bytes));
        let read = read_pth(&bytes).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].shape, vec![2, 3]);
        assert_eq!(read[0].values, vec![1.5, -2.0, 3.25, 0.0, 7.0, 8.0]);
        assert_eq!(read[1].name, "blocks.0.b");
        assert_eq!(read[1].dtype, PthDtype::Bf16);
        assert_eq!(read[1].values, vec![1.0, -2.0]);
    }

    #[test]
    fn a_view_past_its_storage_is_refused() {
        let view = TensorView {
            storage: Storage {
                dtype: PthDtype::F32,
                key: "0".into(),
                numel: 4,
            },
            offset: 1,
            shape: vec![2, 2],
            strides: vec![2, 1],
        };
        let err = view.gather("w".into(), &[0; 16]).unwrap_err();
        assert!(
            err.contains("reaches past the 4 elements of its storage"),
            "{err}"
        );
    }
}
