//! GPT-2's byte-to-unicode alphabet: every byte gets a printable character, so any UTF-8 text
//! becomes a string of 256 possible symbols and nothing is ever unknown.

use std::sync::OnceLock;

/// Whether GPT-2 lets a byte stand for itself.
fn printable(b: u32) -> bool {
    (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

/// The character standing for each byte value.
pub fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next = 256u32;
        for (b, slot) in table.iter_mut().enumerate() {
            let code = if printable(b as u32) {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
        }
        table
    })
}

/// The byte a byte-level character stands for, if it is one.
pub fn char_to_byte(c: char) -> Option<u8> {
    static TABLE: OnceLock<[Option<u8>; 324]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [None; 324];
        for (b, &c) in byte_to_char().iter().enumerate() {
            table[c as usize] = Some(b as u8);
        }
        table
    });
    table.get(c as usize).copied().flatten()
}

/// The byte-level string of some bytes.
pub fn encode_bytes(bytes: &[u8]) -> String {
    let table = byte_to_char();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_is_gpt2s_and_round_trips() {
        let table = byte_to_char();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[0xC3], 'Ã');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(table[b as usize]), Some(b));
        }
        assert_eq!(encode_bytes("ção".as_bytes()), "Ã§Ã£o");
    }
}
