//! Everything that leaves the process: `/metrics`, the HTTP server and its landing page.

pub mod budget;
pub mod contract;
pub mod dcgm_compat;
pub mod listen_address;
pub mod listener;
pub mod metrics;
pub mod otlp;
pub mod page;
pub mod routes;
pub mod web_config;
