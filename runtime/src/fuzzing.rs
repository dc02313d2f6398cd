//! What the fuzzing entries of the HTTP/1.1 readers share
//! (`listen::h1server::fuzz_request_reader`,
//! `upstream::h1client::fuzz_response_reader`): a stream must read the same
//! whether its bytes are all there at once or arrive in pieces.

use std::fmt::Debug;

/// Reads `stream` with `read` once whole and once in pieces of
/// `1 + split % 64` bytes (alternating with single bytes when `split` is
/// 128 or more), and panics if the two readings differ.
pub(crate) fn same_in_pieces<T: PartialEq + Debug>(
    stream: &[u8],
    split: u8,
    read: impl Fn(&mut dyn Iterator<Item = &[u8]>) -> T,
) {
    let whole = read(&mut std::iter::once(stream));
    let step = 1 + usize::from(split % 64);
    let (mut at, mut odd) = (0, false);
    let mut pieces = std::iter::from_fn(|| {
        let n = if split >= 128 && odd { 1 } else { step };
        odd = !odd;
        let piece = stream.get(at..(at + n).min(stream.len())).filter(|p| !p.is_empty())?;
        at += piece.len();
        Some(piece)
    });
    let split_up = read(&mut pieces);
    assert_eq!(
        whole, split_up,
        "the same bytes read differently when they arrive in pieces of {step}"
    );
}
