//! What the tests of every Sovereign crate share: running the workspace's binaries, finding
//! fixtures and outside tools or saying "NOT RUN", making test data, and comparing outputs.

mod compare;
mod data;
mod fixtures;
mod run;

pub use compare::{
    deviation, max_relative_difference, relative_l2, sha256_file, sha256_hex, tensors,
};
pub use data::{coordinator_address, patterned_tokens, write_tokens};
pub use fixtures::{programs, python_has, shared_fixtures};
pub use run::{
    binary, binary_path, path_str, sovereign, sovereign_ok, stderr, train_tokenizer, workspace,
};
