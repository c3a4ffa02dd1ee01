//! web-rwkv/ai00's safetensors layout, as its converter (`convert_safetensors.py`) writes it:
//! RWKV-LM's names and shapes in f16, the LoRA matrices (`w1 w2 a1 a2 g1 g2 v1 v2`) transposed,
//! and the metadata `format = pt`.

use std::path::Path;

use crate::model::weights::{ExportDtype, NamedTensor, save_safetensors_with};

/// Whether web-rwkv stores this tensor transposed: the LoRA matrices.
fn transposed(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or_default();
    matches!(last, "w1" | "w2" | "a1" | "a2" | "g1" | "g2" | "v1" | "v2")
}

/// The tensors in web-rwkv's layout.
pub fn web_rwkv_tensors(tensors: &[NamedTensor]) -> Vec<NamedTensor> {
    tensors
        .iter()
        .map(|t| {
            if !transposed(&t.name) {
                return t.clone();
            }
            NamedTensor {
                name: t.name.clone(),
                shape: vec![t.shape[1], t.shape[0]],
                values: super::hf::transpose(&t.values, t.shape[0], t.shape[1]),
            }
        })
        .collect()
}

/// Writes the model as web-rwkv/ai00's `.st` file, atomically.
pub fn save(tensors: &[NamedTensor], path: &Path) -> std::io::Result<()> {
    save_safetensors_with(
        &web_rwkv_tensors(tensors),
        path,
        ExportDtype::F16,
        Some([("format".to_string(), "pt".to_string())].into()),
    )
}
