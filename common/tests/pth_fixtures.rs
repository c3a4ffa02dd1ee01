//! The `.pth` reader against checkpoints written by real `torch.save` (torch 2.15.0, in
//! ../shared/fixtures/rwkv7-pth): the rwkv7-tiny weights in bf16, fp16 and fp32 read as the
//! reference safetensors rounded to that dtype; five views of one storage (offsets, a transpose,
//! a stride of 2) read as torch's `.contiguous()`; the pre-1.6 format is refused with what to do.
//! Says "NOT RUN" without ../shared (CI requires it).

use std::path::Path;

use sovereign_common::model::weights::{TensorFile, config_of};
use sovereign_test_support::shared_fixtures;

/// bf16 from f32, rounding to nearest even (as torch's `.to(torch.bfloat16)`).
fn to_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    f32::from_bits(((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16)
}

fn read(path: &Path) -> TensorFile {
    TensorFile::read(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_dtype_reads_as_the_reference_weights() {
    let Some(fixtures) = shared_fixtures("pth reader") else {
        return;
    };
    let reference = read(&fixtures.join("rwkv7-tiny/model.safetensors"));
    let names = reference.names();
    assert_eq!(names.len(), 72);
    // f32 and bf16 must be exact; f16 within half its unit in the last place (subnormals
    // included: 2^-25 absolute).
    for (file, round, tolerance) in [
        ("tiny-f32.pth", (|x| x) as fn(f32) -> f32, 0.0),
        ("tiny-bf16.pth", to_bf16, 0.0),
        ("tiny-f16.pth", |x| x, 1.0 / 2048.0),
    ] {
        let pth = read(&fixtures.join("rwkv7-pth").join(file));
        assert_eq!(pth.names(), names, "{file}");
        for name in &names {
            let shape = reference.shape(name).unwrap();
            assert_eq!(pth.shape(name), Some(shape), "{file} {name}");
            let numel = shape.iter().product();
            let expected: Vec<f32> = reference
                .get(name, numel)
                .unwrap()
                .iter()
                .map(|&x| round(x))
                .collect();
            let got = pth.get(name, numel).unwrap();
            for (i, (&a, &b)) in got.iter().zip(&expected).enumerate() {
                let bound =
                    tolerance * b.abs() + if tolerance > 0.0 { 2f32.powi(-25) } else { 0.0 };
                assert!((a - b).abs() <= bound, "{file} {name}[{i}]: {a} vs {b}");
            }
        }
        let config = config_of(&pth).unwrap();
        assert_eq!((config.vocab, config.layers, config.embd), (300, 2, 128));
    }
}

#[test]
fn views_of_one_storage_read_as_their_contiguous_copies() {
    let Some(fixtures) = shared_fixtures("pth reader, views") else {
        return;
    };
    let dir = fixtures.join("rwkv7-pth");
    let views = read(&dir.join("views-f32.pth"));
    let expected = read(&dir.join("views-f32.expected.safetensors"));
    assert_eq!(views.names(), expected.names());
    for name in expected.names() {
        let shape = expected.shape(&name).unwrap();
        assert_eq!(views.shape(&name), Some(shape), "{name}");
        let numel = shape.iter().product();
        assert_eq!(
            views.get(&name, numel).unwrap(),
            expected.get(&name, numel).unwrap(),
            "{name}"
        );
    }
    // The strided view really is strided: every other element of each row.
    let strided = views.get("strided", 12).unwrap();
    assert_eq!(&strided[..3], &[0.0, 2.0, 4.0]);
}

#[test]
fn the_old_format_and_other_files_are_refused_with_what_to_do() {
    let Some(fixtures) = shared_fixtures("pth reader, refusals") else {
        return;
    };
    let legacy = fixtures.join("rwkv7-pth/tiny-f32-legacy.pth");
    let err = TensorFile::read(&legacy).err().unwrap().to_string();
    assert!(err.contains("tiny-f32-legacy.pth"), "{err}");
    assert!(err.contains("before PyTorch 1.6"), "{err}");
    assert!(
        err.contains("torch.save(torch.load(PATH), NEW_PATH)"),
        "{err}"
    );
    let text = fixtures.join("README.md");
    let err = TensorFile::read(&text).err().unwrap().to_string();
    assert!(
        err.contains("neither a safetensors file nor a PyTorch zip checkpoint"),
        "{err}"
    );
}
