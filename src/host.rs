//! [`RealHost`]: the compiler's [`Host`] over the real file system and
//! process environment. The compiler itself does no IO; `gwc` hands it this.
//! Files are read as the runtime reads them
//! ([`gw_runtime::secrets::read_file`]): regular files only, symlinks
//! followed, at most [`MAX_FILE_SIZE`] bytes.

use gw_compiler::host::{Host, MAX_FILE_SIZE};
use std::io;

/// Reads files relative to the current directory and variables from the
/// process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHost;

impl Host for RealHost {
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        gw_runtime::secrets::read_file(path, MAX_FILE_SIZE)
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
