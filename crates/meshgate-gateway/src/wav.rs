//! The duration of a WAV upload, from its header: some transcription answers report no
//! usage, and per-second models are then billed on the audio's own length.

use rust_decimal::Decimal;

/// Seconds of audio in a RIFF/WAVE file whose first bytes are `head`, exact, or `None`
/// when `head` is not a WAV header meshgate can read.
pub fn duration(head: &[u8]) -> Option<Decimal> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let mut byte_rate: Option<u32> = None;
    let mut at = 12;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let size = u32::from_le_bytes(head[at + 4..at + 8].try_into().ok()?);
        let body = at + 8;
        if id == b"fmt " {
            let rate = head.get(body + 8..body + 12)?;
            byte_rate = Some(u32::from_le_bytes(rate.try_into().ok()?));
        } else if id == b"data" {
            let rate = byte_rate.filter(|r| *r > 0)?;
            return Some(Decimal::from(size) / Decimal::from(rate));
        }
        // Chunks are padded to an even size.
        at = body
            .checked_add(usize::try_from(size).ok()?)?
            .checked_add((size % 2) as usize)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(seconds_of_data: u32, sample_rate: u32) -> Vec<u8> {
        let byte_rate = sample_rate * 2; // mono, 16-bit
        let data_len = byte_rate * seconds_of_data + byte_rate / 2; // plus half a second
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&sample_rate.to_le_bytes());
        out.extend_from_slice(&byte_rate.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"LIST");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(b"abc\0");
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        out
    }

    #[test]
    fn reads_the_duration_past_other_chunks() {
        assert_eq!(duration(&wav(3, 16_000)), Some(Decimal::new(35, 1)));
        assert_eq!(duration(&wav(0, 8_000)), Some(Decimal::new(5, 1)));
    }

    #[test]
    fn other_bytes_are_not_wav() {
        assert_eq!(duration(b"ID3\x03 not a wav file at all"), None);
        assert_eq!(duration(&wav(3, 16_000)[..20]), None);
        assert_eq!(duration(b""), None);
    }
}
