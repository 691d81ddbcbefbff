//! Incremental SSE framing and usage meters for every OpenAI and Anthropic endpoint.
