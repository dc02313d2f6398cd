//! Just enough PEM, base64 and DER to tell what a key or certificate file
//! holds: the PEM blocks and their labels, and the kind of a public key
//! (RSA, EC P-256 / P-384, Ed25519) from its SubjectPublicKeyInfo algorithm
//! identifier. No cryptography: the runtime verifies signatures. Every
//! function is total — garbage in gives `None` or an error, never a panic.

/// One `-----BEGIN LABEL-----` ... `-----END LABEL-----` block, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub label: String,
    pub der: Vec<u8>,
    /// A legacy `Proc-Type: 4,ENCRYPTED` header.
    pub encrypted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemError {
    /// Not UTF-8 text (a DER file, say).
    NotText,
    /// No `-----BEGIN ...-----` line.
    NoBlocks,
    /// A block without its `-----END ...-----` line.
    Unterminated(String),
    /// A block whose body is not base64.
    BadBase64(String),
}

impl std::fmt::Display for PemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PemError::NotText => f.write_str("it is not text (a PEM file starts with `-----BEGIN`)"),
            PemError::NoBlocks => f.write_str("it has no `-----BEGIN ...-----` block"),
            PemError::Unterminated(l) => write!(f, "its `{l}` block has no `-----END {l}-----` line"),
            PemError::BadBase64(l) => write!(f, "its `{l}` block is not valid base64"),
        }
    }
}

/// The PEM blocks of a file, in order.
pub fn parse(bytes: &[u8]) -> Result<Vec<Block>, PemError> {
    let text = std::str::from_utf8(bytes).map_err(|_| PemError::NotText)?;
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = armor(line.trim(), "-----BEGIN ") else {
            continue;
        };
        let mut body = String::new();
        let mut encrypted = false;
        let mut ended = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if let Some(end) = armor(line, "-----END ") {
                ended = end == label;
                break;
            }
            if line.contains(':') {
                // RFC 1421 headers of legacy encrypted keys.
                encrypted |= line.starts_with("Proc-Type:") && line.contains("ENCRYPTED");
                continue;
            }
            body.push_str(line);
        }
        if !ended {
            return Err(PemError::Unterminated(label.to_string()));
        }
        let der = base64(&body).ok_or_else(|| PemError::BadBase64(label.to_string()))?;
        blocks.push(Block {
            label: label.to_string(),
            der,
            encrypted,
        });
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlocks);
    }
    Ok(blocks)
}

/// `LABEL` of `-----BEGIN LABEL-----`.
fn armor<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

/// Standard base64 with padding; whitespace is skipped.
pub fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut chars = 0usize;
    let mut pad = 0usize;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if pad > 0 {
            return None;
        }
        chars += 1;
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if pad > 2 || (chars + pad) & 3 != 0 || chars & 3 == 1 {
        return None;
    }
    Some(out)
}

// ------------------------------------------------------------------ DER

/// One DER element: `(tag, contents, rest of the input)`. Single-byte tags
/// and definite lengths only (all DER uses for keys).
pub fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, after) = rest.split_at(len);
    Some((tag, contents, after))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// Whether `der` is one complete DER SEQUENCE (a sanity check of
/// certificates and private keys).
pub fn is_sequence(der: &[u8]) -> bool {
    matches!(element(der), Some((SEQUENCE, _, rest)) if rest.is_empty())
}

/// The kind of a public key, as far as JWT algorithms care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    /// An EC key on a curve no JWT algorithm here uses (P-521, ...).
    EcOther,
    Ed25519,
    /// An algorithm this checker does not know (Ed448, DSA, ...).
    Other,
}

impl KeyType {
    /// "an RSA key", for messages.
    pub fn describe(self) -> &'static str {
        match self {
            KeyType::Rsa => "an RSA key",
            KeyType::EcP256 => "an EC P-256 key",
            KeyType::EcP384 => "an EC P-384 key",
            KeyType::EcOther => "an EC key on a curve JWT does not use here",
            KeyType::Ed25519 => "an Ed25519 key",
            KeyType::Other => "a key of a type JWT does not use",
        }
    }
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The key type of a DER SubjectPublicKeyInfo (`PUBLIC KEY` block):
/// `SEQUENCE { SEQUENCE { OID, params }, BIT STRING }`.
pub fn spki_key_type(der: &[u8]) -> Option<KeyType> {
    let (SEQUENCE, spki, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, alg, rest) = element(spki)? else {
        return None;
    };
    let (BIT_STRING, _, _) = element(rest)? else {
        return None;
    };
    let (OID, oid, params) = element(alg)? else { return None };
    Some(match oid {
        OID_RSA | OID_RSA_PSS => KeyType::Rsa,
        OID_ED25519 => KeyType::Ed25519,
        OID_EC => match element(params) {
            Some((OID, OID_P256, _)) => KeyType::EcP256,
            Some((OID, OID_P384, _)) => KeyType::EcP384,
            _ => KeyType::EcOther,
        },
        _ => KeyType::Other,
    })
}

/// Whether `der` is a PKCS#1 `RSA PUBLIC KEY`: `SEQUENCE { INTEGER n, INTEGER e }`.
pub fn is_pkcs1_rsa_public(der: &[u8]) -> bool {
    let Some((SEQUENCE, body, _)) = element(der) else {
        return false;
    };
    let Some((INTEGER, _, rest)) = element(body) else {
        return false;
    };
    matches!(element(rest), Some((INTEGER, _, rest)) if rest.is_empty())
}

// ------------------------------------------------------------------ certificate and key pairs

const OCTET_STRING: u8 = 0x04;
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_1: u8 = 0xa1;

/// The public half of a key, as far as it can be compared without
/// cryptography: an RSA modulus, or an EC point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicPart<'a> {
    RsaModulus(&'a [u8]),
    EcPoint(&'a [u8]),
}

/// The element at the start of `input`, tag and length included.
fn raw_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, _, rest) = element(input)?;
    let raw = input.get(..input.len() - rest.len())?;
    Some((tag, raw, rest))
}

/// The SubjectPublicKeyInfo (tag and length included) of a DER X.509
/// certificate: `SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serial,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }`.
pub fn certificate_spki(der: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if let Some((CONTEXT_0, _, after)) = element(rest) {
        rest = after;
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, spki, _) = raw_element(rest)? else {
        return None;
    };
    Some(spki)
}

/// Strips DER's sign-padding zeros from an INTEGER's contents.
fn unsigned(int: &[u8]) -> &[u8] {
    let zeros = int.iter().take_while(|&&b| b == 0).count();
    int.get(zeros.min(int.len().saturating_sub(1))..).unwrap_or(int)
}

/// The public half of a DER SubjectPublicKeyInfo.
pub fn spki_public_part(der: &[u8]) -> Option<PublicPart<'_>> {
    let (SEQUENCE, spki, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, _, rest) = element(spki)? else {
        return None;
    };
    let (BIT_STRING, bits, _) = element(rest)? else {
        return None;
    };
    match spki_key_type(der)? {
        KeyType::Rsa => {
            let (&0, key) = bits.split_first()? else { return None };
            let (SEQUENCE, body, _) = element(key)? else {
                return None;
            };
            let (INTEGER, n, _) = element(body)? else { return None };
            Some(PublicPart::RsaModulus(unsigned(n)))
        }
        KeyType::EcP256 | KeyType::EcP384 | KeyType::EcOther => Some(PublicPart::EcPoint(bits)),
        _ => None,
    }
}

/// The public half of a private key block, when the block carries it
/// (`RSA PRIVATE KEY`, `EC PRIVATE KEY` with its public key, or `PRIVATE
/// KEY` wrapping either). `None` when it cannot be told (Ed25519, say).
pub fn private_key_public_part(block: &Block) -> Option<PublicPart<'_>> {
    match block.label.as_str() {
        "RSA PRIVATE KEY" => pkcs1_private_modulus(&block.der),
        "EC PRIVATE KEY" => sec1_public_point(&block.der),
        "PRIVATE KEY" => {
            let (SEQUENCE, body, _) = element(&block.der)? else {
                return None;
            };
            let (INTEGER, _, rest) = element(body)? else {
                return None;
            };
            let (SEQUENCE, alg, rest) = element(rest)? else {
                return None;
            };
            let (OID, oid, _) = element(alg)? else { return None };
            let (OCTET_STRING, inner, _) = element(rest)? else {
                return None;
            };
            match oid {
                OID_RSA | OID_RSA_PSS => pkcs1_private_modulus(inner),
                OID_EC => sec1_public_point(inner),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `RSAPrivateKey ::= SEQUENCE { version, modulus, ... }`.
fn pkcs1_private_modulus(der: &[u8]) -> Option<PublicPart<'_>> {
    let (SEQUENCE, body, _) = element(der)? else {
        return None;
    };
    let (INTEGER, _, rest) = element(body)? else {
        return None;
    };
    let (INTEGER, n, _) = element(rest)? else { return None };
    Some(PublicPart::RsaModulus(unsigned(n)))
}

/// `ECPrivateKey ::= SEQUENCE { version, privateKey, [0] params?, [1] publicKey? }`.
fn sec1_public_point(der: &[u8]) -> Option<PublicPart<'_>> {
    let (SEQUENCE, body, _) = element(der)? else {
        return None;
    };
    let (INTEGER, _, rest) = element(body)? else {
        return None;
    };
    let (OCTET_STRING, _, mut rest) = element(rest)? else {
        return None;
    };
    while let Some((tag, contents, after)) = element(rest) {
        if tag == CONTEXT_1 {
            let (BIT_STRING, bits, _) = element(contents)? else {
                return None;
            };
            return Some(PublicPart::EcPoint(bits));
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_text_and_rejects_garbage() {
        assert_eq!(base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64("aGVs\nbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(base64("aGVsbG8"), None);
        assert_eq!(base64("a=b="), None);
        assert_eq!(base64("!!!!"), None);
    }

    #[test]
    fn der_walk_is_total_on_truncated_input() {
        let spki = [
            0x30, 0x0c, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x03, 0, 1, 2,
        ];
        assert_eq!(spki_key_type(&spki), Some(KeyType::Ed25519));
        for n in 0..spki.len() {
            assert_eq!(spki_key_type(&spki[..n]), None);
        }
        assert_eq!(element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
