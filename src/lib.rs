//! gradscale: exploding gradients and domain collapse in randomly initialised networks, predicted in closed
//! form, measured by Monte Carlo, and compared.
//!
//! The shape: one [`arch::Network`] description is read by two engines that never import each other,
//! [`theory`] (infinite width, closed form) and [`montecarlo`] (sampled networks); [`verify`] puts their
//! numbers side by side. Each formula's derivation is in the repository's `theory/` folder.

pub mod arch;
pub mod bench;
pub mod checkpoint;
pub mod claims;
pub mod data;
pub mod error;
pub mod gauss;
pub mod montecarlo;
pub mod nonlin;
pub mod plot;
pub mod stats;
pub mod theory;
pub mod train;
pub mod verify;

pub use arch::Network;
pub use error::{Error, Result};
pub use nonlin::Nonlinearity;
