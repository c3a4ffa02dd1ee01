//! train-tokenizer's map and reduce. A task counts the pre-tokenized words of its documents and
//! returns them sorted and front-coded (each word as the length it shares with the previous one
//! plus the rest), with the byte-pair counts they imply; the coordinator checks the two agree,
//! adds the counts up (addition does not care about order, so any split gives the same totals)
//! and runs the merge loop once every task is in.

use std::path::Path;

use super::TaskError;
use super::wire::ResultError;
use super::wire::{Reader, put_bytes, put_varint};
use super::{Reducer, read_input_length};
use crate::data::PrepError;
use crate::data::corpus::{DocumentReader, Utf8Policy};
use crate::data::train_tokenizer::TrainTokenizerStats;
use crate::tokenizer::train::{WordCounts, count_words, merge_counts};

/// The map: counts the words of the documents in `input` (bytes `start..` of `path`).
pub fn map(
    input: &[u8],
    path: &Path,
    start: u64,
    line_docs: bool,
    lossy: bool,
) -> Result<Vec<u8>, TaskError> {
    let mut reader =
        DocumentReader::new(input, path, line_docs, Utf8Policy::new(lossy)).starting_at(start);
    let mut counts = WordCounts::new();
    let mut documents = 0u64;
    loop {
        let batch = reader
            .next_batch(16_384, 16 << 20)
            .map_err(|e| TaskError::Input(e.to_string()))?;
        if batch.is_empty() {
            break;
        }
        documents += batch.len() as u64;
        counts = merge_counts(counts, count_words(&batch));
    }
    let mut words: Vec<(&String, &u64)> = counts.iter().collect();
    words.sort_unstable();
    let mut out = Vec::new();
    put_varint(&mut out, input.len() as u64);
    put_varint(&mut out, documents);
    put_varint(&mut out, reader.invalid_utf8());
    put_varint(&mut out, words.len() as u64);
    let mut previous: &[u8] = &[];
    for &(word, &count) in &words {
        let word = word.as_bytes();
        let shared = previous
            .iter()
            .zip(word)
            .take_while(|(a, b)| a == b)
            .count();
        put_varint(&mut out, shared as u64);
        put_bytes(&mut out, &word[shared..]);
        put_varint(&mut out, count);
        previous = word;
    }
    let pairs = byte_pair_counts(words.iter().map(|&(w, &n)| (w.as_bytes(), n)));
    let nonzero: Vec<(usize, u64)> = pairs
        .into_iter()
        .enumerate()
        .filter(|&(_, n)| n > 0)
        .collect();
    put_varint(&mut out, nonzero.len() as u64);
    let mut last = 0;
    for (pair, count) in nonzero {
        put_varint(&mut out, (pair - last) as u64);
        put_varint(&mut out, count);
        last = pair;
    }
    Ok(out)
}

/// How often each pair of adjacent bytes occurs in the words, weighted by their counts: the
/// pair counts the merge loop starts from, indexed `first * 256 + second`.
pub fn byte_pair_counts<'a>(words: impl Iterator<Item = (&'a [u8], u64)>) -> Vec<u64> {
    let mut pairs = vec![0u64; 1 << 16];
    for (word, count) in words {
        for pair in word.windows(2) {
            pairs[usize::from(pair[0]) << 8 | usize::from(pair[1])] += count;
        }
    }
    pairs
}

/// One task's decoded counts.
pub struct WordPart {
    bytes: u64,
    documents: u64,
    invalid_utf8: u64,
    words: Vec<(String, u64)>,
}

/// Adds up the tasks' word counts.
#[derive(Default)]
pub struct WordCountReducer {
    /// The word counts so far.
    pub counts: WordCounts,
    /// Documents, bytes and replaced sequences so far.
    pub stats: TrainTokenizerStats,
}

impl Reducer for WordCountReducer {
    type Part = WordPart;

    fn decode(&self, range: (u64, u64), payload: &[u8]) -> Result<WordPart, ResultError> {
        let mut reader = Reader::new(payload);
        let bytes = read_input_length(&mut reader, range)?;
        let documents = reader.varint("the document count")?;
        let invalid_utf8 = reader.varint("the replaced-sequence count")?;
        let n = reader.varint("the word count")?;
        let mut words: Vec<(String, u64)> = Vec::with_capacity(n.min(1 << 20) as usize);
        let mut previous: Vec<u8> = Vec::new();
        for i in 0..n {
            let shared = reader.varint("a word's shared length")? as usize;
            if shared > previous.len() {
                return Err(ResultError::Content(format!(
                    "word {i} shares more bytes than the word before it has"
                )));
            }
            let mut word = previous[..shared].to_vec();
            word.extend_from_slice(reader.bytes("a word")?);
            if i > 0 && word <= previous {
                return Err(ResultError::Content(format!("word {i} is out of order")));
            }
            let count = reader.varint("a word's count")?;
            if count == 0 {
                return Err(ResultError::Content(format!("word {i} has a count of 0")));
            }
            let text = String::from_utf8(word.clone())
                .map_err(|_| ResultError::Content(format!("word {i} is not UTF-8")))?;
            words.push((text, count));
            previous = word;
        }
        let implied = byte_pair_counts(words.iter().map(|(w, n)| (w.as_bytes(), *n)));
        let mut sent = vec![0u64; 1 << 16];
        let mut pair = 0usize;
        for i in 0..reader.varint("the pair count")? {
            let step = reader.varint("a pair")?;
            pair = usize::try_from(step)
                .ok()
                .and_then(|step| pair.checked_add(step))
                .filter(|&p| p < sent.len() && (i == 0 || step > 0))
                .ok_or_else(|| {
                    ResultError::Content(format!("pair entry {i} is out of order or out of range"))
                })?;
            sent[pair] = reader.varint("a pair's count")?;
        }
        reader.finish()?;
        if sent != implied {
            return Err(ResultError::Content(
                "its byte-pair counts differ from the ones its word counts imply".into(),
            ));
        }
        Ok(WordPart {
            bytes,
            documents,
            invalid_utf8,
            words,
        })
    }

    fn accept(&mut self, part: WordPart) -> Result<(), PrepError> {
        self.stats.bytes += part.bytes;
        self.stats.documents += part.documents;
        self.stats.invalid_utf8 += part.invalid_utf8;
        let counts: WordCounts = part.words.into_iter().collect();
        self.counts = merge_counts(std::mem::take(&mut self.counts), counts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_travel_and_add_up_to_the_single_pass_counts() {
        let text = "casa da casa\n\nda casa água\n\nágua";
        let whole = map(text.as_bytes(), Path::new("c.txt"), 0, false, false).unwrap();
        let cut = text.find("\n\nda").unwrap();
        let mut reducer = WordCountReducer::default();
        for (start, end) in [(0, cut), (cut, text.len())] {
            let payload = map(
                &text.as_bytes()[start..end],
                Path::new("c.txt"),
                start as u64,
                false,
                false,
            )
            .unwrap();
            let part = reducer
                .decode((start as u64, end as u64), &payload)
                .unwrap();
            reducer.accept(part).unwrap();
        }
        let mut single = WordCountReducer::default();
        let part = single.decode((0, text.len() as u64), &whole).unwrap();
        single.accept(part).unwrap();
        assert_eq!(reducer.counts, single.counts);
        assert_eq!(reducer.counts[" casa"], 2);
        assert_eq!(reducer.counts["água"], 1);
        assert_eq!(
            (reducer.stats.documents, reducer.stats.bytes),
            (3, text.len() as u64)
        );
    }

    #[test]
    fn damaged_or_mismatched_results_are_refused() {
        let text = b"casa da casa";
        let payload = map(text, Path::new("c.txt"), 0, true, false).unwrap();
        let reducer = WordCountReducer::default();
        let err = reducer.decode((0, 5), &payload).err().unwrap().to_string();
        assert!(err.contains("the task is bytes [0, 5)"), "{err}");
        let err = reducer
            .decode((0, 12), &payload[..payload.len() - 1])
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("the result ends inside"), "{err}");
        // One count changed: the pair counts no longer match the words.
        let mut changed = payload.clone();
        let at = 1 + 1 + 1 + 1 + 1 + 1 + " casa".len();
        changed[at] += 1;
        let err = reducer.decode((0, 12), &changed).err().unwrap().to_string();
        assert!(err.contains("byte-pair counts differ"), "{err}");
    }
}
