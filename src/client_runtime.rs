//! The small runtime a blocking client (the kubelet's, the Kubernetes API's)
//! runs its requests on, from the poller's blocking thread.
//!
//! The poller, and with it each client, is dropped wherever its task ends:
//! on SIGTERM, inside the exporter's async runtime, where dropping a tokio
//! runtime panics ("Cannot drop a runtime in a context where blocking is not
//! allowed"). So this one is shut down in the background instead, which
//! never blocks.

use std::future::Future;
use std::mem::ManuallyDrop;

pub struct ClientRuntime(ManuallyDrop<tokio::runtime::Runtime>);

impl ClientRuntime {
    /// A current-thread runtime with I/O and timers.
    pub fn new() -> std::io::Result<ClientRuntime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(ClientRuntime(ManuallyDrop::new(runtime)))
    }

    /// Runs `future` to its end. Call it from a thread that runs no async
    /// code (the poller's blocking thread).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        // SAFETY: the runtime is taken once, here, and never used after.
        let runtime = unsafe { ManuallyDrop::take(&mut self.0) };
        runtime.shutdown_background();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_it_inside_an_async_runtime_does_not_panic() {
        let client = ClientRuntime::new().unwrap();
        assert_eq!(client.block_on(async { 7 }), 7);
        let outer = tokio::runtime::Builder::new_current_thread().build().unwrap();
        outer.block_on(async move { drop(client) });
    }
}
