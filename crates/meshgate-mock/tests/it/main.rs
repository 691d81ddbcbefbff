//! Integration tests of meshgate-mock over real loopback HTTP, one binary for the crate.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod batches;
mod common;
mod control;
mod gemini;
mod h2;
mod media;
mod openai;
mod stats;
mod tls;
