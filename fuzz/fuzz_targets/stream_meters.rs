//! Fuzz target: arbitrary bytes, split at arbitrary points, into every meter and the
//! usage-chunk filter. Checks that nothing panics and that the split never changes a result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshgate_providers::{meter_for, stream_cut_error, Metered, RequestFacts, UsageChunkFilter};
use meshgate_types::{Endpoint, Surface};

/// Splits `bytes` into chunks whose lengths come from `seed` (a small xorshift).
fn split(bytes: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut state = seed | 1;
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = ((state % 17) as usize).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

fn run(surface: Surface, endpoint: Endpoint, streaming: bool, chunks: &[&[u8]]) -> (Metered, bool) {
    let facts = RequestFacts {
        model: Some("m".into()),
        speech_input_chars: Some(3),
        image_n: Some(2),
        image_size: Some("1024x1024".into()),
        image_quality: Some("low".into()),
        transcription_format: None,
    };
    let mut m = meter_for(surface, endpoint, streaming, &facts);
    for c in chunks {
        m.observe(c);
    }
    let mid = m.mid_event();
    (m.finish(), mid)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (seed, bytes) = data.split_at(8);
    let mut s = [0u8; 8];
    s.copy_from_slice(seed);
    let chunks = split(bytes, u64::from_le_bytes(s));
    for surface in [Surface::OpenAi, Surface::Anthropic] {
        for endpoint in Endpoint::ALL {
            for streaming in [false, true] {
                let whole = run(surface, endpoint, streaming, &[bytes]);
                let pieces = run(surface, endpoint, streaming, &chunks);
                assert_eq!(
                    whole, pieces,
                    "{surface:?} {endpoint:?} streaming={streaming}"
                );
                let _ = stream_cut_error(surface, endpoint, whole.1, "cut");
            }
        }
    }
    let filter = |chunks: &[&[u8]]| {
        let mut f = UsageChunkFilter::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&f.push(c));
        }
        out.extend_from_slice(&f.finish());
        out
    };
    let whole = filter(&[bytes]);
    assert!(whole.len() <= bytes.len());
    assert_eq!(whole, filter(&chunks));
});
