//! Shared vocabulary of meshgate: [`Usage`], [`Money`], [`Surface`] and [`Endpoint`].
//!
//! This crate does no I/O and holds no business rules; it only names things that the
//! pricing, provider, store and gateway crates exchange.
#![deny(clippy::float_arithmetic)]

mod endpoint;
mod money;
mod usage;

pub use endpoint::{Endpoint, Surface};
pub use money::Money;
pub use usage::{ServiceTier, Usage};
