//! Orchard's services, shared by the desktop app, the HTTP server and the CLI.

pub mod doctor;
pub mod paths;
