//! [`RealHost`]: the compiler's [`Host`] over the real file system and
//! process environment. The compiler itself does no IO; `gwc` hands it this.

use gw_compiler::host::Host;
use std::io;

/// Reads files relative to the current directory and variables from the
/// process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHost;

impl Host for RealHost {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
