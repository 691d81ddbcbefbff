//! Model prices (built-in, TOML, LiteLLM JSON) and exact cost of a Usage.
