//! Storage traits and their SQLite implementation: keys and usage events.
