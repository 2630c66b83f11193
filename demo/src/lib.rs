//! The demo's settings, as a library beside the binary: the documentation check (`doccheck`) lists
//! the variables the demo reads from [`config::Env`] itself.
#![forbid(unsafe_code)]

pub mod config;
