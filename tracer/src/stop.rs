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
    requested: bool,
}

impl Stop {
    /// Must be called inside the tokio runtime.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            sigint: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            requested: false,
        })
    }

    /// Whether a stop signal arrived, without waiting.
    pub fn requested(&mut self) -> bool {
        if self.requested {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let int = matches!(self.sigint.poll_recv(&mut cx), Poll::Ready(_));
        let term = matches!(self.sigterm.poll_recv(&mut cx), Poll::Ready(_));
        self.requested = int || term;
        self.requested
    }

    /// Waits for a stop signal.
    pub async fn wait(&mut self) {
        if self.requested {
            return;
        }
        let int = pin!(self.sigint.recv());
        let term = pin!(self.sigterm.recv());
        tokio::select! {
            _ = int => {}
            _ = term => {}
        }
        self.requested = true;
    }
}
