//! tokenizer.json in the HuggingFace `tokenizers` format: written by us, and read back from us or
//! from HuggingFace's own byte-level BPE files. What cannot be reproduced exactly is refused with
//! the field that says so.

use super::TokenizerError;
use serde_json::{Value, json};

use super::pretokenize::SPLIT_PATTERN;

/// The special tokens, ids 0–4.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]"];

/// The parts of a tokenizer.json that encoding needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerSpec {
    /// Token strings by id (byte-level strings; special tokens as written).
    pub vocab: Vec<String>,
    /// Merges in rank order, as pairs of token strings.
    pub merges: Vec<(String, String)>,
    /// Special (added) tokens with their ids.
    pub special: Vec<(String, u32)>,
    /// The split regex applied before byte-level encoding, if any.
    pub split_pattern: Option<String>,
}

/// Serializes a spec as tokenizer.json text: keys in a fixed order, vocab by id, so the same
/// tokenizer always gives the same bytes.
pub fn to_json(spec: &TokenizerSpec) -> String {
    let added: Vec<Value> = spec
        .special
        .iter()
        .map(|(content, id)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let mut pre = vec![];
    if let Some(pattern) = &spec.split_pattern {
        pre.push(json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false}));
    }
    pre.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}));
    // serde_json's map keeps insertion order only with a feature; build the vocab text by hand.
    let vocab: Vec<String> = spec
        .vocab
        .iter()
        .enumerate()
        .map(|(id, token)| format!("{}:{id}", Value::String(token.clone())))
        .collect();
    let merges: Vec<Value> = spec
        .merges
        .iter()
        .map(|(a, b)| Value::String(format!("{a} {b}")))
        .collect();
    let fields = [
        ("version", json!("1.0")),
        ("truncation", Value::Null),
        ("padding", Value::Null),
        ("added_tokens", Value::Array(added)),
        ("normalizer", Value::Null),
        (
            "pre_tokenizer",
            json!({"type": "Sequence", "pretokenizers": pre}),
        ),
        ("post_processor", Value::Null),
        (
            "decoder",
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}),
        ),
    ];
    let mut out = String::from("{");
    for (key, value) in fields {
        out.push_str(&format!("\n  {}: {},", Value::String(key.into()), value));
    }
    out.push_str(&format!(
        "\n  \"model\": {{\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \
         \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, \
         \"byte_fallback\": false, \"ignore_merges\": false,\n    \"vocab\": {{{}}},\n    \"merges\": {}}}\n}}\n",
        vocab.join(", "),
        Value::Array(merges)
    ));
    out
}

/// The split pattern our trainer writes.
pub fn default_split_pattern() -> Option<String> {
    Some(SPLIT_PATTERN.to_string())
}

/// Reads a tokenizer.json; an unsupported setting is an error naming its field.
pub fn from_json(text: &str) -> Result<TokenizerSpec, TokenizerError> {
    parse(text).map_err(TokenizerError::Unsupported)
}

/// [`from_json`], its error the field at fault and why.
fn parse(text: &str) -> Result<TokenizerSpec, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let field = |path: &str| -> &Value { root.pointer(path).unwrap_or(&Value::Null) };
    let is_off = |path: &str| matches!(field(path), Value::Null | Value::Bool(false));
    if field("/model/type").as_str() != Some("BPE") {
        return Err(format!(
            "model.type is {}; only \"BPE\" is supported",
            field("/model/type")
        ));
    }
    if !field("/normalizer").is_null() {
        return Err("normalizer is set; only tokenizers without a normalizer are supported".into());
    }
    // Each of these would change the ids HuggingFace produces (added, cut or padded sequences),
    // so Sovereign's ids would no longer be the same. A ByteLevel post-processor only trims
    // offsets, so it (alone, or in a Sequence) is accepted.
    let offsets_only = |p: &Value| p["type"] == "ByteLevel";
    let post = field("/post_processor");
    let post_keeps_ids = post.is_null()
        || offsets_only(post)
        || (post["type"] == "Sequence"
            && post["processors"]
                .as_array()
                .is_some_and(|all| all.iter().all(offsets_only)));
    for name in ["post_processor", "truncation", "padding"] {
        let set = match name {
            "post_processor" => !post_keeps_ids,
            _ => !field(&format!("/{name}")).is_null(),
        };
        if set {
            let accepted = if name == "post_processor" {
                "null or a ByteLevel post-processor (which only trims offsets)"
            } else {
                "null"
            };
            return Err(format!(
                "{name} is set ({}); it would change the ids, so only {accepted} is accepted: \
                 remove it from the tokenizer.json",
                field(&format!("/{name}"))
            ));
        }
    }
    for name in [
        "dropout",
        "continuing_subword_prefix",
        "end_of_word_suffix",
        "byte_fallback",
        "ignore_merges",
    ] {
        if !is_off(&format!("/model/{name}")) {
            return Err(format!(
                "model.{name} is {}; it must be null or false",
                field(&format!("/model/{name}"))
            ));
        }
    }
    let split_pattern = parse_pre_tokenizer(field("/pre_tokenizer"))?;

    let vocab_map = field("/model/vocab")
        .as_object()
        .ok_or("model.vocab is missing or not an object")?;
    let mut vocab = vec![String::new(); vocab_map.len()];
    for (token, id) in vocab_map {
        let id = id
            .as_u64()
            .filter(|&i| (i as usize) < vocab.len())
            .ok_or_else(|| {
                format!(
                    "model.vocab[{token:?}] = {id} is not an id below the vocabulary size {}",
                    vocab.len()
                )
            })?;
        vocab[id as usize] = token.clone();
    }
    let mut special = Vec::new();
    for token in field("/added_tokens").as_array().into_iter().flatten() {
        let content = token["content"]
            .as_str()
            .ok_or("added_tokens[].content is missing")?;
        let id = token["id"].as_u64().ok_or("added_tokens[].id is missing")? as u32;
        if id as usize >= vocab.len() {
            vocab.resize(id as usize + 1, String::new());
        }
        vocab[id as usize] = content.to_string();
        special.push((content.to_string(), id));
    }
    let mut merges = Vec::new();
    for (rank, merge) in field("/model/merges")
        .as_array()
        .ok_or("model.merges is missing")?
        .iter()
        .enumerate()
    {
        let pair = match merge {
            Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            Value::Array(items) if items.len() == 2 => items[0]
                .as_str()
                .zip(items[1].as_str())
                .map(|(a, b)| (a.to_string(), b.to_string())),
            _ => None,
        };
        merges.push(pair.ok_or_else(|| format!("model.merges[{rank}] is not a pair of tokens"))?);
    }
    Ok(TokenizerSpec {
        vocab,
        merges,
        special,
        split_pattern,
    })
}

/// Accepts `ByteLevel` (without its GPT-2 regex), optionally after a `Split` with a regex and the
/// `Isolated` behavior; returns the split pattern.
fn parse_pre_tokenizer(pre: &Value) -> Result<Option<String>, String> {
    let steps: Vec<&Value> = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![pre],
        None => {
            return Err("pre_tokenizer is missing; a byte-level pre-tokenizer is required".into());
        }
    };
    let mut pattern = None;
    let mut byte_level = false;
    for step in steps {
        match step["type"].as_str() {
            Some("Split") if pattern.is_none() && !byte_level => {
                let regex = step["pattern"]["Regex"].as_str().ok_or(
                    "pre_tokenizer Split.pattern must be {\"Regex\": …}; string patterns are not supported",
                )?;
                if step["behavior"].as_str() != Some("Isolated")
                    || step["invert"].as_bool() == Some(true)
                {
                    return Err(
                        "pre_tokenizer Split.behavior must be \"Isolated\" (not inverted)".into(),
                    );
                }
                super::pretokenize::PreTokenizer::new(regex)
                    .map_err(|e| format!("pre_tokenizer Split.pattern: {e}"))?;
                pattern = Some(regex.to_string());
            }
            Some("ByteLevel") if !byte_level => {
                if step["use_regex"].as_bool() != Some(false) {
                    return Err(
                        "pre_tokenizer ByteLevel.use_regex is true: GPT-2's split regex (with \
                                look-ahead) is not supported; write the split as a Split step"
                            .into(),
                    );
                }
                if step["add_prefix_space"].as_bool() == Some(true) {
                    return Err(
                        "pre_tokenizer ByteLevel.add_prefix_space is true; it must be false".into(),
                    );
                }
                byte_level = true;
            }
            other => {
                return Err(format!(
                    "pre_tokenizer step {other:?} is not supported here"
                ));
            }
        }
    }
    if !byte_level {
        return Err("pre_tokenizer has no ByteLevel step; only byte-level BPE is supported".into());
    }
    Ok(pattern)
}
