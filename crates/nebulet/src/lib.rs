//! The `nebulet` command's library: the demo system image embedded at build time.
#![forbid(unsafe_code)]

pub mod image;
