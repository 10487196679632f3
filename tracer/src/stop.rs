//! SIGINT and SIGTERM, registered before anything is attached so that they
//! always end skbtrace through the same clean path (detach, flush, report).
//! Registering also un-ignores SIGINT, which a shell leaves ignored for the
//! background jobs of a script.

use std::{
    pin::pin,
    task::{Context, Poll, Waker},
};

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Stop {
    sigint: Signal,
    sigterm: Signal,
    /// A signal seen by [`requested`](Self::requested) and not yet returned
    /// by [`wait`](Self::wait).
    pending: Option<i32>,
    requested: bool,
}

impl Stop {
    /// Must be called inside the tokio runtime.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            sigint: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            pending: None,
            requested: false,
        })
    }

    /// Whether a stop signal arrived, without waiting.
    pub fn requested(&mut self) -> bool {
        if self.requested {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        if matches!(self.sigint.poll_recv(&mut cx), Poll::Ready(_)) {
            self.pending = Some(libc::SIGINT);
        } else if matches!(self.sigterm.poll_recv(&mut cx), Poll::Ready(_)) {
            self.pending = Some(libc::SIGTERM);
        }
        self.requested = self.pending.is_some();
        self.requested
    }

    /// Waits for the next stop signal and returns it (`SIGINT` or
    /// `SIGTERM`), so that it can be passed on to a command. Cancel-safe.
    pub async fn wait(&mut self) -> i32 {
        if let Some(signal) = self.pending.take() {
            return signal;
        }
        let int = pin!(self.sigint.recv());
        let term = pin!(self.sigterm.recv());
        let signal = tokio::select! {
            _ = int => libc::SIGINT,
            _ = term => libc::SIGTERM,
        };
        self.requested = true;
        signal
    }
}
