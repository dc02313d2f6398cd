//! `redis://` URLs: the one parser that the checker (GW0003 at a `store`)
//! and the runtime (when it connects) share, so that a URL the checker
//! passes is the URL the runtime uses. A URL is
//! `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB][?...][#...]`, with `%XX`
//! escapes in the user and password. Its errors never quote a part of the
//! URL: a password is in it.

use std::fmt;

/// Where a `redis://` URL points, its parts decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Why a URL is not a usable Redis URL, in words that quote none of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub why: &'static str,
    /// What to write instead.
    pub help: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.why)
    }
}

impl std::error::Error for Invalid {}

const SHAPE: &str = "write `\"redis://[USER:PASSWORD@]HOST[:PORT][/DB]\"`";
const ENCODE: &str = "percent-encode `/ ? # @` in the password (`%2F %3F %23 %40`), and a space or a quote too";

fn invalid(why: &'static str) -> Invalid {
    Invalid { why, help: SHAPE }
}

/// Whether `url` asks for TLS (`rediss://`).
pub fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// Parses a `redis://` or `rediss://` URL.
pub fn parse(url: &str) -> Result<RedisUrl, Invalid> {
    let Some(rest) = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://")) else {
        return Err(Invalid {
            why: "not a `redis://` URL",
            help: "write `\"redis://127.0.0.1:6379\"`",
        });
    };
    if let Some(bad) = rest.chars().find(|c| !allowed(*c)) {
        return Err(Invalid {
            why: if bad.is_whitespace() || bad.is_control() {
                "a URL cannot hold a space or a control character"
            } else {
                "a URL cannot hold this character unencoded (a quote, a backtick, `<`, `>`, `\\`, `{`, `}`, `|` or `^`)"
            },
            help: ENCODE,
        });
    }
    // The authority ends at the first `/`, `?` or `#`; an `@` after it is a
    // password holding one of them unencoded, which would cut the URL in
    // the wrong place (and show the password as a path).
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.contains('@') {
        return Err(Invalid {
            why: "an `@` after the host: the password holds a `/`, `?` or `#` that must be percent-encoded",
            help: ENCODE,
        });
    }
    let (userinfo, hostport) = match authority.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if hostport.contains('@') {
        return Err(Invalid {
            why: "more than one `@`: an `@` in the password must be percent-encoded",
            help: ENCODE,
        });
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => {
                let user = percent_decode(user)?;
                (Some(user).filter(|u| !u.is_empty()), Some(percent_decode(pass)?))
            }
            None if u.is_empty() => (None, None),
            None => {
                return Err(Invalid {
                    why: "a user name without a password",
                    help: "write `\"redis://USER:PASSWORD@HOST\"`, or `\"redis://:PASSWORD@HOST\"` without a user",
                })
            }
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(invalid("an unclosed `[` in the host"))?;
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(invalid("not an IPv6 address between `[` and `]`"));
        }
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(invalid("unexpected text after the `]` of the host")),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if !hostport.starts_with('[') && host.contains(['[', ']', ':', '%']) {
        return Err(invalid("not a host name or address"));
    }
    let port = match port {
        None | Some("") => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(invalid("the port is not a number from 1 to 65535"))?,
    };
    // `/DB`, a query and a fragment (both ignored).
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let db = match path.trim_start_matches('/').trim_end_matches('/') {
        "" => 0,
        p if p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u32>()
            .map_err(|_| invalid("the database number is too large"))?,
        _ => return Err(invalid("the path is not a database number")),
    };
    if path.len() > 1 && path[1..].trim_end_matches('/').contains('/') {
        return Err(invalid("the path is not a database number"));
    }
    Ok(RedisUrl {
        host: host.to_string(),
        port,
        db,
        username,
        password,
    })
}

/// What a URL may hold as it is (RFC 3986: unreserved, sub-delims,
/// gen-delims, and `%` for escapes).
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?#[]%".contains(c)
}

fn percent_decode(s: &str) -> Result<String, Invalid> {
    let bad = Invalid {
        why: "a `%` in the user or password not followed by two hex digits",
        help: "write a `%` as `%25`",
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or(bad)?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| bad)?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Invalid {
        why: "a percent-encoded user or password that is not UTF-8",
        help: SHAPE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, db: u32, user: Option<&str>, pass: Option<&str>) -> RedisUrl {
        RedisUrl {
            host: host.into(),
            port,
            db,
            username: user.map(Into::into),
            password: pass.map(Into::into),
        }
    }

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse("redis://127.0.0.1:6379"),
            Ok(url("127.0.0.1", 6379, 0, None, None))
        );
        assert_eq!(parse("rediss://cache"), Ok(url("cache", 6379, 0, None, None)));
        assert_eq!(parse("redis://cache:7000/2/"), Ok(url("cache", 7000, 2, None, None)));
        assert_eq!(
            parse("redis://:pw@cache/?x=1#y"),
            Ok(url("cache", 6379, 0, None, Some("pw")))
        );
        assert_eq!(
            parse("redis://gw:p%40ss%2F%3F%23@[::1]:6380/1"),
            Ok(url("::1", 6380, 1, Some("gw"), Some("p@ss/?#")))
        );
    }

    /// A password that holds `/ ? # @`, a space, a quote or a backtick
    /// unencoded is refused, and no error quotes any of it.
    #[test]
    fn passwords_that_cut_the_url_are_refused_without_being_quoted() {
        for pw in [
            "q7Zk/9vR+PASSWORD/aXe2=",
            "q7Zk?PASSWORD",
            "q7Zk#PASSWORD",
            "q7Zk@PASSWORD",
            "q7Zk PASSWORD",
            "q7Zk\"PASSWORD",
            "q7Zk`PASSWORD",
        ] {
            for user in ["", "gw"] {
                let u = format!("redis://{user}:{pw}@127.0.0.1:6379/0");
                let e = parse(&u).expect_err(&u);
                assert!(!e.why.contains("PASSWORD") && !e.help.contains("PASSWORD"), "{u}: {e}");
                assert!(e.help.contains("percent-encode"), "{u}: {}", e.help);
            }
        }
    }

    #[test]
    fn other_mistakes_are_refused_without_being_quoted() {
        for u in [
            "http://SECRET@h",
            "redis://",
            "redis://h:0",
            "redis://h:SECRET",
            "redis://h/SECRET",
            "redis://h/1/SECRET",
            "redis://SECRET@h",
            "redis://[SECRET",
            "redis://[::1]SECRET",
            "redis://:%zSECRET@h",
            "redis://h/99999999999",
        ] {
            let e = parse(u).expect_err(u);
            assert!(!e.why.contains("SECRET"), "{u}: {e}");
        }
    }
}
