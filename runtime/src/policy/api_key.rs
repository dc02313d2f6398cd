//! `auth NAME api_key`: keys from a file (one per line, optionally `key
//! name`; blank lines and `#` comments skipped) or inline. Only SHA-256
//! digests of the keys are kept, and a presented key is compared with every
//! one of them in constant time (no early exit, no length leak). The
//! matching key's name — or, when it has none, `key-` and the first eight
//! hex digits of its digest — is what `limit ... key api_key` counts by.

use super::{credential, Rejected};
use crate::metrics::Rejection;
use gw_plan::{ApiKey, ApiKeys};
use hyper::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Keys longer than this are refused unread.
const MAX_KEY_LEN: usize = 4096;

pub(crate) struct ApiKeyAuth {
    from: gw_plan::TokenFrom,
    keys: Vec<([u8; 32], String)>,
}

/// Parses a key list: `key [name]` per line.
pub fn parse_keys(text: &str) -> Vec<([u8; 32], String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let key = words.next()?;
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            let name = match words.collect::<Vec<_>>().join(" ") {
                n if n.is_empty() => fingerprint(&digest),
                n => n,
            };
            Some((digest, name))
        })
        .collect()
}

fn fingerprint(digest: &[u8; 32]) -> String {
    let mut s = String::from("key-");
    for b in &digest[..4] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl ApiKeyAuth {
    pub fn build(k: &ApiKey) -> Result<ApiKeyAuth, String> {
        let keys = match &k.keys {
            ApiKeys::File(s) => {
                let bytes = crate::secrets::resolve(s)?;
                let text = String::from_utf8(bytes).map_err(|_| format!("{s}: not text"))?;
                parse_keys(&text)
            }
            ApiKeys::Inline(list) => {
                let mut keys = Vec::new();
                for s in list {
                    let bytes = crate::secrets::resolve(s)?;
                    keys.extend(parse_keys(&String::from_utf8_lossy(&bytes)));
                }
                keys
            }
        };
        if keys.is_empty() {
            return Err("no keys".into());
        }
        Ok(ApiKeyAuth {
            from: k.from.clone(),
            keys,
        })
    }

    /// The name of the key the request presents, or a 401.
    pub fn authenticate(&self, headers: &HeaderMap, query: Option<&str>) -> Result<String, Rejected> {
        let Some(presented) = credential(&self.from, headers, query, MAX_KEY_LEN) else {
            return Err(Rejected::new(Rejection::Unauthorized));
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, (k, _)) in self.keys.iter().enumerate() {
            let eq = k.ct_eq(&digest);
            index.conditional_assign(&(i as u32), eq);
            found |= eq;
        }
        if bool::from(found) {
            if let Some((_, name)) = self.keys.get(index as usize) {
                return Ok(name.clone());
            }
        }
        Err(Rejected::new(Rejection::Unauthorized))
    }
}
