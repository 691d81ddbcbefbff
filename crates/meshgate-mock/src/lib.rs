//! A faithful mock of the OpenAI and Anthropic APIs, the upstream of tests and benchmarks.
