//! Everything that leaves the process: `/metrics`, the HTTP server and its landing page.

pub mod dcgm_compat;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod otlp;
pub mod page;
pub mod server;
pub mod web_config;
