//! The registry of diagnostic codes: one place that lists every code, its
//! severity and a one-line summary. `gwc explain` adds a page per code (the
//! `explain/` folder beside this crate's `src/`).

use crate::diagnostic::Severity;

macro_rules! codes {
    ($($code:ident $sev:ident $summary:literal,)*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($code,)* }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$code,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$code => stringify!($code),)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$code => Severity::$sev,)* }
            }

            /// One line: what the code means.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$code => $summary,)* }
            }

            /// The long page shown by `gwc explain CODE`.
            pub fn explanation(self) -> &'static str {
                match self { $(Code::$code => include_str!(concat!("../explain/", stringify!($code), ".md")),)* }
            }
        }
    };
}

codes! {
    GW0001 Error "syntax error",
    GW0002 Error "unterminated string or block",
    GW0003 Error "invalid literal (duration, size, rate, address, status, path pattern)",
    GW0004 Error "import not found, or import cycle",
    GW0005 Error "import or file is not a regular file, or too large",
    GW0006 Error "imports nested too deep, or too many imported files",
    GW0007 Error "import of a file whose name does not end in `.gw`",
    GW0101 Error "unknown name (upstream, auth, limit, store)",
    GW0102 Error "duplicate definition",
    GW0103 Error "unknown attribute in a block",
    GW0104 Error "missing required attribute",
    GW0105 Error "attribute given twice",
    GW0106 Error "value of the wrong type or out of range",
    GW0201 Error "two routes claim the same requests with equal precedence",
    GW0202 Error "route has no target, or more than one",
    GW0203 Error "bad path parameters: unknown `param.X`, `{*rest}` not last, or a duplicate name",
    GW0204 Error "`claim.X` used where no `jwt` auth applies",
    GW0205 Error "listen address used twice",
    GW0206 Error "conditioned routes may both take one request",
    GW0207 Error "split weights do not add up to 100%",
    GW0208 Error "a condition reads what a route cannot see before auth",
    GW0210 Error "`cache` on a route whose answers depend on who calls",
    GW0211 Error "mirror, compress or cache settings that cannot apply to the route",
    GW0301 Error "upstream has no usable server",
    GW0302 Error "hash key reads data the requests routed to it may not have",
    GW0401 Error "auth mixes HS* with RS*/ES* algorithms (algorithm confusion)",
    GW0402 Error "key material missing, unreadable, or not of the algorithm's kind",
    GW0403 Error "TLS listener without a usable certificate and key",
    GW0404 Error "`env(\"X\")` not set",
    GW0405 Error "upstream TLS settings unusable (a file missing, a key not its certificate's, a CA without certificates)",
    GW0406 Error "`client_ca` of a TLS listener missing, unreadable, or holding no certificate",
    GW0501 Warning "upstream, auth, limit or store defined and never used",
    GW0502 Warning "retry on a route that accepts non-idempotent methods",
    GW0503 Warning "plain-HTTP listener carries routes with auth",
    GW0504 Warning "resilience settings that contradict each other",
    GW0505 Warning "a secret written inline in the configuration",
    GW0506 Warning "a root configuration with routes and no `listen`",
    GW0507 Warning "a route reading `client_cert.*` is also served by a listener without `client_ca`",
    GW0508 Warning "mirror of non-idempotent requests onto a server that takes the original",
    GW0601 Error "an embedded `test` expectation fails",
}

impl Code {
    /// Parses `GW0101` (case-insensitive).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
