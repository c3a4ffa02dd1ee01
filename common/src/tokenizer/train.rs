//! Byte-level BPE training: count words, then merge the most frequent adjacent pair until the
//! vocabulary is full.
//!
//! The merge loop keeps pair counts and the words each pair occurs in, and updates both from the
//! words a merge touches (as HuggingFace's `BpeTrainer` does); a max-heap orders pairs by count
//! with stale entries refreshed when they surface. Nothing recounts the corpus. Ties break on
//! the lower pair of symbol ids, and symbol ids depend only on the merges so far, so the same
//! word counts always give the same merges. Memory is bounded by the number of distinct words.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use rayon::prelude::*;

use super::pretokenize::words;

/// How many times each pre-tokenized word occurs.
pub type WordCounts = HashMap<String, u64>;

/// Counts the words of `texts` in parallel.
pub fn count_words(texts: &[String]) -> WordCounts {
    texts
        .par_iter()
        .fold(WordCounts::new, |mut counts, text| {
            for word in words(text) {
                *counts.entry(word.to_string()).or_default() += 1;
            }
            counts
        })
        .reduce(WordCounts::new, merge_counts)
}

/// Adds the counts of `b` into `a`.
pub fn merge_counts(mut a: WordCounts, b: WordCounts) -> WordCounts {
    let (mut big, small) = if a.len() >= b.len() {
        (std::mem::take(&mut a), b)
    } else {
        (b, a)
    };
    for (word, n) in small {
        *big.entry(word).or_default() += n;
    }
    big
}

/// A pair of symbols: ids 0–255 are bytes, 256 + i is the symbol made by merge i.
type Pair = (u32, u32);

/// A heap entry: higher count first, then the lower pair.
#[derive(PartialEq, Eq)]
struct Candidate {
    count: u64,
    pair: Pair,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.count
            .cmp(&other.count)
            .then_with(|| other.pair.cmp(&self.pair))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Learns up to `merges` merges from `counts`; pairs seen fewer than `min_frequency` times are
/// never merged. Returns the merges in order, as pairs of symbol ids.
pub fn learn_merges(counts: &WordCounts, merges: usize, min_frequency: u64) -> Vec<Pair> {
    // Words in a fixed order (by bytes), so that everything below is deterministic.
    let mut entries: Vec<(&String, &u64)> = counts.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut words: Vec<Vec<u32>> = entries
        .iter()
        .map(|(w, _)| w.bytes().map(u32::from).collect())
        .collect();
    let freqs: Vec<u64> = entries.iter().map(|(_, n)| **n).collect();

    let mut pair_counts: HashMap<Pair, u64> = HashMap::new();
    let mut occurs_in: HashMap<Pair, HashSet<usize>> = HashMap::new();
    for (index, word) in words.iter().enumerate() {
        for pair in word.windows(2).map(|w| (w[0], w[1])) {
            *pair_counts.entry(pair).or_default() += freqs[index];
            occurs_in.entry(pair).or_default().insert(index);
        }
    }
    let mut heap: BinaryHeap<Candidate> = pair_counts
        .iter()
        .map(|(&pair, &count)| Candidate { count, pair })
        .collect();

    let mut learned = Vec::with_capacity(merges);
    while learned.len() < merges {
        let Some(top) = heap.pop() else { break };
        let current = pair_counts.get(&top.pair).copied().unwrap_or(0);
        if current != top.count {
            if current > 0 {
                heap.push(Candidate {
                    count: current,
                    pair: top.pair,
                });
            }
            continue;
        }
        if current == 0 || current < min_frequency {
            break;
        }
        let new_id = 256 + learned.len() as u32;
        learned.push(top.pair);
        let mut touched: Vec<usize> = occurs_in
            .remove(&top.pair)
            .unwrap_or_default()
            .into_iter()
            .collect();
        touched.sort_unstable();
        let mut increased: HashSet<Pair> = HashSet::new();
        for index in touched {
            let freq = freqs[index];
            let word = &mut words[index];
            for (pair, delta) in merge_word(word, top.pair, new_id) {
                let count = pair_counts.entry(pair).or_default();
                if delta > 0 {
                    *count += freq;
                    occurs_in.entry(pair).or_default().insert(index);
                    increased.insert(pair);
                } else {
                    *count = count.saturating_sub(freq);
                }
            }
        }
        pair_counts.remove(&top.pair);
        let mut increased: Vec<Pair> = increased.into_iter().collect();
        increased.sort_unstable();
        for pair in increased {
            if let Some(&count) = pair_counts.get(&pair).filter(|&&c| c > 0) {
                heap.push(Candidate { count, pair });
            }
        }
    }
    learned
}

/// Replaces every occurrence of `pair` in `word` (left to right) by `new_id`; returns the pair
/// changes, +1 for a pair that appeared and -1 for one that went.
fn merge_word(word: &mut Vec<u32>, pair: Pair, new_id: u32) -> Vec<(Pair, i8)> {
    let mut changes = Vec::new();
    let mut i = 0;
    while i + 1 < word.len() {
        if (word[i], word[i + 1]) != pair {
            i += 1;
            continue;
        }
        if i > 0 {
            changes.push(((word[i - 1], pair.0), -1));
            changes.push(((word[i - 1], new_id), 1));
        }
        if i + 2 < word.len() {
            changes.push(((pair.1, word[i + 2]), -1));
            changes.push(((new_id, word[i + 2]), 1));
        }
        word[i] = new_id;
        word.remove(i + 1);
        i += 1;
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> WordCounts {
        pairs.iter().map(|&(w, n)| (w.to_string(), n)).collect()
    }

    #[test]
    fn merges_follow_counts_and_break_ties_on_ids() {
        // "ab" occurs 5+3 times, then "abc" 5 times; "cd" and "de" tie at 2: "cd" has lower ids.
        let learned = learn_merges(&counts(&[("abc", 5), ("ab", 3), ("cde", 2)]), 10, 1);
        let (a, b, c, d, e) = (97, 98, 99, 100, 101);
        assert_eq!(learned[0], (a, b));
        assert_eq!(learned[1], (256, c));
        assert_eq!(learned[2], (c, d));
        assert_eq!(learned[3], (258, e));
        assert_eq!(learned.len(), 4);
    }

    #[test]
    fn overlapping_occurrences_merge_left_to_right() {
        let mut word = vec![1, 1, 1];
        let changes = merge_word(&mut word, (1, 1), 9);
        assert_eq!(word, vec![9, 1]);
        assert_eq!(changes, vec![((1, 1), -1), ((9, 1), 1)]);
        let learned = learn_merges(&counts(&[("aaaa", 1)]), 5, 1);
        assert_eq!(learned, vec![(97, 97), (256, 256)]);
    }

    #[test]
    fn min_frequency_stops_rare_merges_and_counting_is_parallel_safe() {
        let learned = learn_merges(&counts(&[("xy", 3), ("zw", 1)]), 10, 2);
        assert_eq!(learned, vec![(120, 121)]);
        let texts: Vec<String> = (0..100).map(|i| format!("casa {i} casa")).collect();
        let counted = count_words(&texts);
        assert_eq!(counted["casa"], 100);
        assert_eq!(counted[" casa"], 100);
    }
}
