//! Thin HTTP handlers: parse (ruma), call one domain function, answer (ruma).

pub mod admin;
pub mod client;
pub mod federation;
