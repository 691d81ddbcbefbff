//! Integration tests of the gateway over real loopback sockets, with the mock provider as
//! the upstream. One test binary; every test starts its own gateway and mock on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod admin;
mod admin_projects;
mod admin_providers;
mod admin_signing;
mod anthropic;
mod azure;
mod gemini;
mod lanes;
mod openai;
mod policy;
mod pool;
mod postgres;
mod refusals;
mod relay;
mod routing;
mod tenancy;
mod tls;
mod tokens;
mod usage_events;
