#![no_std]
// This file exists so that tracer/build.rs can depend on this crate (see its comment).
