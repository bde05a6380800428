//! Everything that leaves the process: `/metrics`, the HTTP server and its landing page.

pub mod http;
pub mod metrics;
pub mod page;
