//! Small text encoders shared by the access log (`log`) and the HTTP/1.1
//! paths (`h1server`, `h1client`): numbers as decimal or hex digits without
//! the formatting machinery (they are on every request), and calendar dates.

/// `v` in decimal, written into `buf`; the digits are the returned tail.
pub(crate) fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

/// `v` in lower-case hex (a chunk size), written into `buf`; the digits
/// are the returned tail.
pub(crate) fn hex(v: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[v & 0xf];
        v >>= 4;
        if v == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_read_as_format_writes_them() {
        for v in [0u64, 7, 10, 243, 999_999, u64::MAX] {
            assert_eq!(decimal(v, &mut [0; 20]), v.to_string().as_bytes());
        }
        for v in [0usize, 9, 0x1a2f, usize::MAX] {
            assert_eq!(hex(v, &mut [0; 16]), format!("{v:x}").as_bytes());
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }
}
