//! Host processes for containers: mount plans, spawning, signals, pid files.

pub mod cpu;
pub mod mounts;
pub mod pidfile;
pub mod process;

pub use mounts::{Mount, VolumeDir};
pub use process::{signal_group, spawn, spawn_beside, Launch};
