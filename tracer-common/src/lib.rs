//! The wire format between skbtrace's eBPF programs and its user-space CLI.
//!
//! Everything here is `#[repr(C)]` with explicit widths and explicit padding so
//! that the kernel and user side agree byte for byte; sizes are checked at
//! compile time.
#![no_std]

#[cfg(feature = "user")]
extern crate alloc;

pub mod config;
pub mod cookie;
pub mod event;
pub mod limits;
pub mod names;
pub mod skb_out;

pub use config::Config;
pub use event::Event;
