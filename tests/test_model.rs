//! `sovereign test-model` on the official rwkv7-tiny weights (../shared/fixtures): the loss of
//! the reference tokens equals the float64 reference's.

use std::fs;

use sovereign_test_support::{path_str, shared_fixtures, sovereign, stderr};

#[test]
fn test_model_reproduces_the_reference_loss() {
    let Some(fixtures) = shared_fixtures("test-model parity") else {
        return;
    };
    let dir = fixtures.join("rwkv7-tiny");
    // The reference tokens [2, 33] as a bare u16 stream: two windows of T + 1 = 33.
    let reference = fs::read(dir.join("reference.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(reference[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&reference[8..8 + header_len]).unwrap();
    let [start, end] =
        [0, 1].map(|i| header["tokens"]["data_offsets"][i].as_u64().unwrap() as usize);
    let body = &reference[8 + header_len..];
    let tokens: Vec<u8> = body[start..end]
        .chunks_exact(8)
        .flat_map(|b| (i64::from_le_bytes(b.try_into().unwrap()) as u16).to_le_bytes())
        .collect();
    let loss_offsets =
        [0, 1].map(|i| header["f64.loss"]["data_offsets"][i].as_u64().unwrap() as usize);
    let expected = f64::from_le_bytes(body[loss_offsets[0]..loss_offsets[1]].try_into().unwrap());

    let out = tempfile::tempdir().unwrap();
    let data = out.path().join("ref.bin");
    fs::write(&data, tokens).unwrap();
    let run = sovereign(&[
        "test-model",
        "--weights",
        path_str(&dir.join("model.safetensors")),
        "--data",
        path_str(&data),
        "--seq-len",
        "32",
        "--json",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let result: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let loss = result["loss"].as_f64().unwrap();
    assert!(
        ((loss - expected) / expected).abs() <= 1e-5,
        "loss {loss} vs float64 {expected}"
    );
    assert_eq!(result["tokens"], 64);

    // Exports: f32 gives the same loss to the bit, bf16 and f16 come close at half the size.
    let original = fs::metadata(dir.join("model.safetensors")).unwrap().len();
    for (dtype, tolerance) in [("f32", 0.0), ("bf16", 1e-2), ("f16", 1e-3)] {
        let exported = out.path().join(format!("{dtype}.safetensors"));
        let export = sovereign(&[
            "export",
            "--weights",
            path_str(&dir.join("model.safetensors")),
            "--dtype",
            dtype,
            "--output",
            path_str(&exported),
        ]);
        assert!(export.status.success(), "{}", stderr(&export));
        let size = fs::metadata(&exported).unwrap().len();
        if dtype != "f32" {
            assert!(
                size < original * 6 / 10,
                "{dtype}: {size} bytes vs {original}"
            );
        }
        let run = sovereign(&[
            "test-model",
            "--weights",
            path_str(&exported),
            "--data",
            path_str(&data),
            "--seq-len",
            "32",
            "--json",
        ]);
        let again: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        let again = again["loss"].as_f64().unwrap();
        assert!(
            (again - loss).abs() <= tolerance * loss,
            "{dtype}: loss {again} vs {loss}"
        );
    }
}
