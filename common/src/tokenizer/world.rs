//! The RWKV World vocabulary (`rwkv_vocab_v20230424.txt`, which the `rwkv` package ships): each
//! line is `id literal length`, the literal a Python `'…'` or `b'…'` string of the token's bytes.
//! Encoding is greedy longest match over the text's bytes, as the official `TRIE_TOKENIZER`:
//! from each position the longest token that the bytes start with, then on after it.

use std::collections::BTreeMap;

use super::TokenizerError;

/// The vocabulary size of RWKV World models: ids 0–65535 (the file uses 1–65529).
pub const VOCAB_SIZE: usize = 65_536;
/// The id that ends each document, as in RWKV-LM's data; no token of the file has it.
pub const END_OF_DOCUMENT: u32 = 0;

/// No token ends at this trie node.
const NO_TOKEN: u32 = u32::MAX;

/// A loaded World vocabulary.
pub struct World {
    /// Each id's bytes; empty for ids the file does not use.
    tokens: Vec<Vec<u8>>,
    /// The byte trie of all tokens.
    trie: Trie,
}

/// A byte trie in flat arrays: node `n`'s edges are `edges[first[n]..first[n + 1]]`, sorted by
/// byte; the root's are also in a 256-entry table.
struct Trie {
    /// The token id ending at each node, or [`NO_TOKEN`].
    ids: Vec<u32>,
    /// Where each node's edges start in `edges` (one more entry than nodes).
    first: Vec<u32>,
    /// (byte, child node) pairs.
    edges: Vec<(u8, u32)>,
    /// The root's child for each first byte (0: none; the root is node 0, never a child).
    root: [u32; 256],
}

impl Trie {
    fn build(tokens: &[Vec<u8>]) -> Self {
        let mut children: Vec<BTreeMap<u8, u32>> = vec![BTreeMap::new()];
        let mut ids = vec![NO_TOKEN];
        for (id, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                continue;
            }
            let mut node = 0usize;
            for &byte in token {
                let next = children.len() as u32;
                let child = *children[node].entry(byte).or_insert(next);
                if child == next {
                    children.push(BTreeMap::new());
                    ids.push(NO_TOKEN);
                }
                node = child as usize;
            }
            ids[node] = id as u32;
        }
        let mut first = Vec::with_capacity(children.len() + 1);
        let mut edges = Vec::with_capacity(children.len());
        for map in &children {
            first.push(edges.len() as u32);
            edges.extend(map.iter().map(|(&b, &c)| (b, c)));
        }
        first.push(edges.len() as u32);
        let mut root = [0u32; 256];
        for (&byte, &child) in &children[0] {
            root[byte as usize] = child;
        }
        Self {
            ids,
            first,
            edges,
            root,
        }
    }

    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        if node == 0 {
            let child = self.root[byte as usize];
            return (child != 0).then_some(child);
        }
        let n = node as usize;
        let edges = &self.edges[self.first[n] as usize..self.first[n + 1] as usize];
        edges
            .binary_search_by_key(&byte, |&(b, _)| b)
            .ok()
            .map(|i| edges[i].1)
    }

    /// The longest token at the start of `bytes`: its id and length.
    fn longest(&self, bytes: &[u8]) -> Option<(u32, usize)> {
        let mut node = 0;
        let mut best = None;
        for (depth, &byte) in bytes.iter().enumerate() {
            let Some(child) = self.child(node, byte) else {
                break;
            };
            node = child;
            let id = self.ids[node as usize];
            if id != NO_TOKEN {
                best = Some((id, depth + 1));
            }
        }
        best
    }
}

impl World {
    /// Whether `text` looks like a World vocabulary: its first line is `id literal length`.
    pub fn looks_like(text: &str) -> bool {
        let line = text.lines().next().unwrap_or("");
        split_line(line).is_some_and(|(_, literal, _)| {
            literal.starts_with(['\'', '"'])
                || literal.starts_with("b'")
                || literal.starts_with("b\"")
        })
    }

    /// Parses a vocabulary file's text; a line that is not `id literal length` with the length
    /// matching, a repeated token or id, or a byte with no token of its own is refused with its
    /// line.
    pub fn from_vocab(text: &str) -> Result<Self, TokenizerError> {
        let mut tokens = vec![Vec::new(); VOCAB_SIZE];
        let mut seen = std::collections::HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| TokenizerError::Unsupported(format!("line {number}: {why}"));
            let (id, literal, length) =
                split_line(line).ok_or_else(|| bad("expected `id literal length`".into()))?;
            let id: usize = id
                .parse()
                .map_err(|_| bad(format!("the id {id:?} is not a number")))?;
            if id == END_OF_DOCUMENT as usize || id >= VOCAB_SIZE {
                return Err(bad(format!(
                    "id {id} is out of range: tokens take ids 1 to {}",
                    VOCAB_SIZE - 1
                )));
            }
            let bytes = parse_literal(literal).map_err(bad)?;
            if length.parse::<usize>().ok() != Some(bytes.len()) {
                return Err(bad(format!(
                    "the token has {} bytes but the line says {length}",
                    bytes.len()
                )));
            }
            if bytes.is_empty() {
                return Err(bad("the token is empty".into()));
            }
            if !tokens[id].is_empty() {
                return Err(bad(format!("id {id} appears twice")));
            }
            if !seen.insert(bytes.clone()) {
                return Err(bad(format!("the token {literal} appears twice")));
            }
            tokens[id] = bytes;
        }
        let trie = Trie::build(&tokens);
        if let Some(byte) = (0..=255u8).find(|&b| trie.longest(&[b]).is_none()) {
            return Err(TokenizerError::Unsupported(format!(
                "byte 0x{byte:02x} has no token; a World vocabulary needs all 256 single bytes"
            )));
        }
        Ok(Self { tokens, trie })
    }

    /// Encodes bytes, greedy longest match from the start.
    pub fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        let mut ids = Vec::with_capacity(bytes.len() / 3 + 1);
        let mut at = 0;
        while at < bytes.len() {
            // Every single byte is a token (checked when loading), so a match always exists.
            let (id, length) = self.trie.longest(&bytes[at..]).unwrap_or((0, 1));
            ids.push(id);
            at += length;
        }
        ids
    }

    /// The bytes of `ids`; ids without a token (0, the end of a document, among them) add none.
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .filter_map(|&id| self.tokens.get(id as usize))
            .flatten()
            .copied()
            .collect()
    }

    /// The bytes of one id (empty for an id without a token).
    pub fn token(&self, id: u32) -> &[u8] {
        self.tokens.get(id as usize).map_or(&[], Vec::as_slice)
    }
}

/// Splits `id literal length` at its first and last space.
fn split_line(line: &str) -> Option<(&str, &str, &str)> {
    let (id, rest) = line.split_once(' ')?;
    let (literal, length) = rest.rsplit_once(' ')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(id) && digits(length)).then_some((id, literal, length))
}

/// The bytes of a Python string literal: `'…'`/`"…"` (text, UTF-8) or `b'…'`/`b"…"` (bytes),
/// with the escapes the vocabulary uses.
fn parse_literal(literal: &str) -> Result<Vec<u8>, String> {
    let (is_bytes, quoted) = match literal.strip_prefix('b') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let quote = quoted
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| format!("{literal} is not a quoted string"))?;
    let body = quoted
        .strip_prefix(quote)
        .and_then(|s| s.strip_suffix(quote))
        .filter(|_| quoted.len() >= 2)
        .ok_or_else(|| format!("{literal} does not end with its quote"))?;
    let mut out = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let push_char = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            if is_bytes && !c.is_ascii() {
                return Err(format!("{literal}: a bytes literal holds {c:?}, not ASCII"));
            }
            push_char(&mut out, c);
            continue;
        }
        let escape = chars
            .next()
            .ok_or_else(|| format!("{literal} ends inside an escape"))?;
        let mut hex = |digits: usize| -> Result<u32, String> {
            let text: String = chars.by_ref().take(digits).collect();
            u32::from_str_radix(&text, 16)
                .ok()
                .filter(|_| text.len() == digits)
                .ok_or_else(|| format!("{literal}: \\{escape}{text} is not {digits} hex digits"))
        };
        let value = match escape {
            'n' => '\n' as u32,
            't' => '\t' as u32,
            'r' => '\r' as u32,
            '\\' | '\'' | '"' => escape as u32,
            'x' => hex(2)?,
            'u' | 'U' if !is_bytes => hex(if escape == 'u' { 4 } else { 8 })?,
            other => return Err(format!("{literal}: the escape \\{other} is not supported")),
        };
        if is_bytes {
            out.push(value as u8);
        } else {
            let c = char::from_u32(value)
                .ok_or_else(|| format!("{literal}: U+{value:X} is not a character"))?;
            push_char(&mut out, c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary of the 256 bytes (ids 1–256, as the real file) and a few longer tokens.
    fn small() -> World {
        let mut text = String::new();
        for b in 0..=255u8 {
            text.push_str(&format!("{} b'\\x{b:02x}' 1\n", b as usize + 1));
        }
        text.push_str("257 'ab' 2\n258 'abc' 3\n259 'bcd' 3\n260 'é' 2\n261 '\\u00e9t' 3\n");
        World::from_vocab(&text).unwrap()
    }

    #[test]
    fn literals_parse_as_python_evaluates_them() {
        assert_eq!(parse_literal("'a b'").unwrap(), b"a b");
        assert_eq!(parse_literal("\"it's\"").unwrap(), b"it's");
        assert_eq!(parse_literal("'\\x80'").unwrap(), "\u{80}".as_bytes());
        assert_eq!(parse_literal("b'\\x80'").unwrap(), [0x80]);
        assert_eq!(parse_literal("'\\t\\n\\r\\\\\\''").unwrap(), b"\t\n\r\\'");
        assert_eq!(parse_literal("'\\u00e9'").unwrap(), "é".as_bytes());
        assert_eq!(parse_literal("'ção'").unwrap(), "ção".as_bytes());
        assert!(parse_literal("'\\q'").unwrap_err().contains("\\q"));
        assert!(parse_literal("b'é'").unwrap_err().contains("not ASCII"));
        assert!(parse_literal("'open").unwrap_err().contains("quote"));
    }

    #[test]
    fn greedy_longest_match_then_on() {
        let world = small();
        // "abcd": the longest at 0 is "abc", then "d" (not "ab" + "cd"-less "bcd").
        assert_eq!(world.encode(b"abcd"), vec![258, 101]);
        assert_eq!(world.encode(b"abx"), vec![257, 121]);
        assert_eq!(world.encode("été".as_bytes()), vec![261, 260]);
        let bytes = [0xff, 0xfe, b'a', 0xc3];
        let ids = world.encode(&bytes);
        assert_eq!(ids, vec![256, 255, 98, 196]);
        assert_eq!(world.decode(&ids), bytes);
        assert_eq!(world.decode(&[END_OF_DOCUMENT, 257]), b"ab");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let err = |text: &str| World::from_vocab(text).err().unwrap().to_string();
        assert!(err("1 'a' 2\n").contains("line 1: the token has 1 bytes but the line says 2"));
        assert!(err("1 'a' 1\n1 'b' 1\n").contains("line 2: id 1 appears twice"));
        assert!(err("0 'a' 1\n").contains("id 0 is out of range"));
        assert!(err("1 'a' 1\n").contains("byte 0x00 has no token"));
    }
}
