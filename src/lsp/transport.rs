//! JSON-RPC over stdio, `Content-Length` framed, that survives any input.
//! lsp-server's own stdio transport stops at the first malformed message;
//! this reader answers it instead (`-32700` for text that is not JSON,
//! `-32600` for JSON that is not a message, with the request's id when it
//! has one), skips what it cannot frame, caps a message at [`MAX_MESSAGE`],
//! and only stops at the end of the input. Messages are lsp-server's.

use crossbeam_channel::Sender;
use lsp_server::Message;
use std::io::{self, BufRead, Read, Write};

/// The largest message read; a longer one is skipped and answered with an error.
pub const MAX_MESSAGE: usize = 64 << 20;
/// The longest header line.
const MAX_HEADER: usize = 8 << 10;

/// What the reader hands the main loop.
pub enum Incoming {
    Message(Message),
    /// Something that was not a message: the error response to send.
    Malformed(serde_json::Value),
    /// The input ended.
    End,
}

/// Reads messages from `input` until it ends, sending each to `tx`.
pub fn read_loop(mut input: impl BufRead, tx: Sender<Incoming>) {
    loop {
        let incoming = match read_one(&mut input) {
            Ok(Some(i)) => i,
            Ok(None) | Err(_) => Incoming::End,
        };
        let end = matches!(incoming, Incoming::End);
        if tx.send(incoming).is_err() || end {
            return;
        }
    }
}

fn error(id: serde_json::Value, code: i32, message: &str) -> Incoming {
    Incoming::Malformed(serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    }))
}

/// One framed message; `Ok(None)` at the end of the input.
fn read_one(input: &mut impl BufRead) -> io::Result<Option<Incoming>> {
    let mut length: Option<usize> = None;
    let mut bad_header = false;
    let mut saw_header = false;
    loop {
        let mut line = Vec::new();
        let n = input.by_ref().take(MAX_HEADER as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") {
            // An endless header line: drop the rest of it.
            bad_header = true;
            let mut sink = Vec::new();
            input.read_until(b'\n', &mut sink)?;
            continue;
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if saw_header {
                break;
            }
            continue; // blank lines between messages
        }
        saw_header = true;
        match line.split_once(':') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("content-length") => {
                match value.trim().parse::<usize>() {
                    Ok(l) => length = Some(l),
                    Err(_) => bad_header = true,
                }
            }
            Some(_) => {}
            None => bad_header = true,
        }
    }
    let Some(length) = length.filter(|_| !bad_header) else {
        return Ok(Some(error(
            serde_json::Value::Null,
            -32700,
            "malformed header: no valid Content-Length",
        )));
    };
    if length > MAX_MESSAGE {
        io::copy(&mut input.by_ref().take(length as u64), &mut io::sink())?;
        return Ok(Some(error(serde_json::Value::Null, -32600, "message too large")));
    }
    let mut body = vec![0; length];
    input.read_exact(&mut body)?;
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return Ok(Some(error(serde_json::Value::Null, -32700, "parse error: not JSON"))),
    };
    let id = match value.get("id") {
        Some(id @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => id.clone(),
        _ => serde_json::Value::Null,
    };
    match serde_json::from_value::<Message>(value) {
        Ok(m) => Ok(Some(Incoming::Message(m))),
        Err(_) => Ok(Some(error(id, -32600, "invalid request: not a JSON-RPC message"))),
    }
}

/// Writes one raw JSON value as a framed message.
pub fn write_raw(out: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    let text = value.to_string();
    write!(out, "Content-Length: {}\r\n\r\n{text}", text.len())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<String> {
        let (tx, rx) = crossbeam_channel::unbounded();
        read_loop(input, tx);
        rx.iter()
            .map(|i| match i {
                Incoming::Message(Message::Request(r)) => format!("request {}", r.method),
                Incoming::Message(Message::Notification(n)) => format!("notification {}", n.method),
                Incoming::Message(Message::Response(_)) => "response".into(),
                Incoming::Malformed(v) => format!("error {} {}", v["error"]["code"], v["id"]),
                Incoming::End => "end".into(),
            })
            .collect()
    }

    fn frame(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn malformed_messages_are_answered_and_reading_goes_on() {
        let mut input = String::new();
        input.push_str(&frame("{not json"));
        input.push_str(&frame("[1,2]"));
        input.push_str(&frame(r#"{"jsonrpc":"2.0","id":7,"params":{}}"#));
        input.push_str("Content-Length: x\r\n\r\n");
        input.push_str("Garbage\r\n\r\n");
        input.push_str(&frame(r#"{"jsonrpc":"2.0","id":1,"method":"shutdown"}"#));
        input.push_str(&frame(r#"{"jsonrpc":"2.0","method":"exit"}"#));
        assert_eq!(
            all(input.as_bytes()),
            vec![
                "error -32700 null",
                "error -32600 null",
                "error -32600 7",
                "error -32700 null",
                "error -32700 null",
                "request shutdown",
                "notification exit",
                "end"
            ]
        );
    }

    #[test]
    fn a_truncated_message_ends_the_input() {
        assert_eq!(all(b"Content-Length: 100\r\n\r\n{\"a\""), vec!["end"]);
        assert_eq!(all(b""), vec!["end"]);
    }
}
