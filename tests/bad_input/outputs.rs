//! Outputs never destroy inputs or special files.

use crate::support::*;

#[test]
fn an_output_that_is_an_input_is_refused_by_path_hard_link_and_symlink() {
    let (dir, data) = prepared_copy();
    let corpus = data.join("corpus.txt");
    let before = fs::read(&corpus).unwrap();
    let hard = dir.path().join("hard.txt");
    fs::hard_link(&corpus, &hard).unwrap();
    let soft = dir.path().join("soft.txt");
    symlink(&corpus, &soft).unwrap();
    let tokenizer = data.join("tokenizer.json");
    for output in [&corpus, &hard, &soft] {
        let (input, output) = (path_str(&corpus), path_str(output));
        for args in [
            vec!["clean-corpus", "--input", input, "--output", output],
            vec!["train-tokenizer", "--corpus", input, "--output", output],
            vec!["tokenize", "--input", input, "--output", output]
                .into_iter()
                .chain(["--tokenizer", path_str(&tokenizer)])
                .collect(),
        ] {
            let err = refused(&args);
            assert!(
                err.contains("is the same file as the input"),
                "{args:?}: {err}"
            );
        }
    }
    let err = refused(&[
        "tokenize",
        "--input",
        path_str(&corpus),
        "--tokenizer",
        path_str(&tokenizer),
        "--output",
        path_str(&tokenizer),
    ]);
    assert!(err.contains("is the same file as the input"), "{err}");
    let dump = dir.path().join("dump.xml");
    fs::write(&dump, demo_dump()).unwrap();
    let err = check_refused(&process_wiki(&dump, &dump, &[]), &["process-wiki"]);
    assert!(err.contains("is the same file as the input"), "{err}");
    // Two outputs of one command that are one file.
    let err = refused(&[
        "tokenize",
        "--input",
        path_str(&corpus),
        "--tokenizer",
        path_str(&tokenizer),
        "--output",
        path_str(&data.join("train.bin")),
        "--val-output",
        path_str(&data.join("train.bin")),
    ]);
    assert!(err.contains("are the same file"), "{err}");
    assert_eq!(fs::read(&corpus).unwrap(), before);
    assert_eq!(fs::read_to_string(&dump).unwrap(), demo_dump());
}

#[test]
fn a_device_is_written_in_place_and_a_symlink_writes_its_target() {
    let (dir, data) = prepared_copy();
    let corpus = data.join("corpus.txt");
    let null = device(dir.path(), "null", "3");
    sovereign_ok(&[
        "clean-corpus",
        "--input",
        path_str(&corpus),
        "--output",
        path_str(&null),
    ]);
    assert!(fs::metadata(&null).unwrap().file_type().is_char_device());
    let full = device(dir.path(), "full", "7");
    if full.exists() {
        let err = refused(&[
            "clean-corpus",
            "--input",
            path_str(&corpus),
            "--output",
            path_str(&full),
        ]);
        assert!(err.contains("No space left on device"), "{err}");
        assert!(fs::metadata(&full).unwrap().file_type().is_char_device());
    }
    let target = dir.path().join("target.txt");
    let link = dir.path().join("link.txt");
    symlink("target.txt", &link).unwrap();
    sovereign_ok(&[
        "clean-corpus",
        "--input",
        path_str(&corpus),
        "--output",
        path_str(&link),
    ]);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fs::read_to_string(&target).unwrap().len() > 100);
    // A FIFO gets the bytes, and stays a FIFO.
    let fifo = dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    sovereign_ok(&[
        "clean-corpus",
        "--input",
        path_str(&corpus),
        "--output",
        path_str(&fifo),
    ]);
    assert_eq!(reader.join().unwrap(), fs::read(&target).unwrap());
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
}
