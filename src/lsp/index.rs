//! What the parse tree of one file says, for navigation and colour: the
//! names it defines and refers to (upstreams, auths, limits, stores), its
//! imports, its outline, and a class for every token. Built from the
//! grammar's parse tree (`gw_grammar`) and the formatter's token stream
//! (which adds comments); byte offsets throughout. A file that does not
//! parse has an empty index except for colours, which then come from the
//! tolerant lexer.

use gw_compiler::format::{tokens_from, Kind, Token};
use gw_compiler::schema::NameKind;
use gw_grammar::{Pair, Rule};

/// A name written in the file: where it is defined or mentioned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    pub kind: NameKind,
    pub name: String,
    pub start: usize,
    pub end: usize,
}

/// One declaration of the outline.
#[derive(Clone, Debug)]
pub struct Symbol {
    /// `upstream login`, `route GET /orders/{id}`, ...
    pub name: String,
    pub keyword: &'static str,
    pub start: usize,
    pub end: usize,
    /// The part that names it (the name, or the keyword).
    pub name_start: usize,
    pub name_end: usize,
    pub children: Vec<Symbol>,
}

/// The class of a token, for semantic tokens (see `LEGEND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A declaration keyword or a word inside a statement (`upstream`, `weight`).
    Keyword,
    /// An attribute of a block (`timeout`, `server`).
    Property,
    /// A name of an upstream, auth, limit or store.
    Name {
        declaration: bool,
    },
    Str,
    Number,
    Comment,
    Operator,
    /// `env`, `file`, `hash`.
    Function,
    /// A constant word: `round_robin`, `jwt`, `GET`, `client_ip`.
    Constant,
    /// A reference to request data: `claim.sub`, `header.x`.
    Reference,
    /// A path pattern.
    Path,
}

#[derive(Clone, Debug, Default)]
pub struct FileIndex {
    /// Whether the file parsed (else only `classes` is filled).
    pub parsed: bool,
    pub defs: Vec<Name>,
    pub refs: Vec<Name>,
    /// `import "x.gw"`: the path as written and the span of the string.
    pub imports: Vec<(String, usize, usize)>,
    pub symbols: Vec<Symbol>,
    pub classes: Vec<(usize, usize, Class)>,
}

impl FileIndex {
    pub fn build(text: &str) -> FileIndex {
        let Some(pairs) = gw_compiler::format::parse(text) else {
            return FileIndex {
                classes: lexical_classes(text),
                ..FileIndex::default()
            };
        };
        let mut index = FileIndex {
            parsed: true,
            ..FileIndex::default()
        };
        for file in pairs.clone() {
            for decl in file.into_inner() {
                if decl.as_rule() != Rule::EOI {
                    index.decl(decl);
                }
            }
        }
        index.classes = match tokens_from(text, pairs) {
            Ok(tokens) => index.token_classes(&tokens),
            Err(_) => lexical_classes(text),
        };
        index
    }

    /// The definition or reference at `offset`, if any.
    pub fn name_at(&self, offset: usize) -> Option<(&Name, bool)> {
        let hit = |n: &&Name| n.start <= offset && offset <= n.end;
        self.defs
            .iter()
            .find(hit)
            .map(|n| (n, true))
            .or_else(|| self.refs.iter().find(hit).map(|n| (n, false)))
    }

    fn decl(&mut self, pair: Pair<'_, Rule>) {
        let span = pair.as_span();
        let rule = pair.as_rule();
        let keyword: &'static str = match rule {
            Rule::import => "import",
            Rule::listen => "listen",
            Rule::admin => "admin",
            Rule::limits => "limits",
            Rule::upstream => "upstream",
            Rule::auth => "auth",
            Rule::limit => "limit",
            Rule::store => "store",
            Rule::route => "route",
            Rule::test => "test",
            _ => return,
        };
        let defines = match rule {
            Rule::upstream => Some(NameKind::Upstream),
            Rule::auth => Some(NameKind::Auth),
            Rule::limit => Some(NameKind::Limit),
            Rule::store => Some(NameKind::Store),
            _ => None,
        };
        let children: Vec<_> = pair.clone().into_inner().collect();
        let mut symbol = Symbol {
            name: keyword.to_string(),
            keyword,
            start: span.start(),
            end: span.end(),
            name_start: span.start(),
            name_end: span.start() + keyword.len(),
            children: Vec::new(),
        };
        if let Some(kind) = defines {
            if let Some(ident) = children.iter().find(|c| c.as_rule() == Rule::ident) {
                let s = ident.as_span();
                self.defs.push(Name {
                    kind,
                    name: ident.as_str().to_string(),
                    start: s.start(),
                    end: s.end(),
                });
                symbol.name = format!("{keyword} {}", ident.as_str());
                (symbol.name_start, symbol.name_end) = (s.start(), s.end());
            }
        } else {
            // The head: everything before a block, on one line.
            let head: Vec<&str> = children
                .iter()
                .take_while(|c| !matches!(c.as_rule(), Rule::route_block | Rule::lbrace | Rule::listen_tls))
                .map(|c| c.as_str())
                .collect();
            symbol.name = head.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
        }
        if rule == Rule::upstream {
            for server in children.iter().filter(|c| c.as_rule() == Rule::server) {
                let s = server.as_span();
                symbol.children.push(Symbol {
                    name: server.as_str().split_whitespace().collect::<Vec<_>>().join(" "),
                    keyword: "server",
                    start: s.start(),
                    end: s.end(),
                    name_start: s.start(),
                    name_end: s.end(),
                    children: Vec::new(),
                });
            }
        }
        if rule == Rule::import {
            if let Some(string) = pair
                .clone()
                .into_inner()
                .flat_map(|p| p.into_inner())
                .find(|p| p.as_rule() == Rule::string)
            {
                let s = string.as_span();
                let inner = string.as_str().trim_matches('"').to_string();
                self.imports.push((inner, s.start(), s.end()));
            }
        }
        self.refs_in(pair);
        self.symbols.push(symbol);
    }

    /// The names a declaration refers to.
    fn refs_in(&mut self, pair: Pair<'_, Rule>) {
        let rule = pair.as_rule();
        let children: Vec<_> = pair.into_inner().collect();
        match rule {
            // `-> NAME` of a route, a `tcp` listener, a test expectation.
            Rule::route | Rule::listen_tcp | Rule::expectation => {
                if let Some(at) = children.iter().position(|c| c.as_rule() == Rule::arrow) {
                    if let Some(v) = children.get(at + 1) {
                        self.value_name(v, NameKind::Upstream, rule == Rule::expectation);
                    }
                }
            }
            Rule::route_auth => {
                for v in children.iter().filter(|c| c.as_rule() == Rule::value) {
                    self.value_name(v, NameKind::Auth, false);
                }
            }
            Rule::route_limit => {
                for v in children.iter().filter(|c| c.as_rule() == Rule::value) {
                    self.value_name(v, NameKind::Limit, false);
                }
            }
            Rule::limit_setting if children.first().is_some_and(|k| k.as_str() == "store") => {
                if let Some(v) = children.iter().find(|c| c.as_rule() == Rule::value) {
                    self.value_name(v, NameKind::Store, false);
                }
            }
            Rule::aggregate_part => {
                if let Some(up) = children.get(1).filter(|c| c.as_rule() == Rule::ident) {
                    self.push_ref(up, NameKind::Upstream);
                }
            }
            _ => {}
        }
        for child in children {
            if !matches!(child.as_rule(), Rule::value | Rule::string) {
                self.refs_in(child);
            }
        }
    }

    /// A value that is a bare name.
    fn value_name(&mut self, value: &Pair<'_, Rule>, kind: NameKind, in_test: bool) {
        let Some(ident) = value.clone().into_inner().find(|p| p.as_rule() == Rule::ident) else {
            return;
        };
        // `-> aggregate` in a test names the aggregate routes, not an upstream.
        if in_test && ident.as_str() == "aggregate" {
            return;
        }
        self.push_ref(&ident, kind);
    }

    fn push_ref(&mut self, ident: &Pair<'_, Rule>, kind: NameKind) {
        let s = ident.as_span();
        self.refs.push(Name {
            kind,
            name: ident.as_str().to_string(),
            start: s.start(),
            end: s.end(),
        });
    }

    /// A class for every token of a file that parses.
    fn token_classes(&self, tokens: &[Token]) -> Vec<(usize, usize, Class)> {
        let mut out = Vec::with_capacity(tokens.len());
        let mut depth = 0usize;
        for t in tokens {
            let class = match &t.kind {
                Kind::Comment => Some(Class::Comment),
                Kind::Open { .. } => {
                    depth += 1;
                    None
                }
                Kind::Close => {
                    depth = depth.saturating_sub(1);
                    None
                }
                Kind::Punct => None,
                Kind::Leaf { rule, starts, .. } => self.leaf_class(*rule, *starts, depth, t.start),
            };
            if let Some(class) = class {
                out.push((t.start, t.end, class));
            }
        }
        out
    }

    fn leaf_class(&self, rule: Rule, starts: bool, depth: usize, start: usize) -> Option<Class> {
        let name = |n: &Name| n.start == start;
        Some(match rule {
            Rule::ident if self.defs.iter().any(name) => Class::Name { declaration: true },
            Rule::ident if self.refs.iter().any(name) => Class::Name { declaration: false },
            Rule::ident | Rule::method | Rule::star => Class::Constant,
            Rule::string | Rule::unterminated_string => Class::Str,
            Rule::integer
            | Rule::percent
            | Rule::duration
            | Rule::size
            | Rule::rate
            | Rule::status_range
            | Rule::address => Class::Number,
            Rule::path => Class::Path,
            Rule::reference => Class::Reference,
            Rule::call_name => Class::Function,
            Rule::arrow | Rule::require_op => Class::Operator,
            Rule::lbrace | Rule::rbrace | Rule::comma | Rule::bad => return None,
            // What is left is a keyword (`k_*`, `*_kw`): an attribute when
            // it starts a statement in a block.
            _ if starts && depth > 0 => Class::Property,
            _ => Class::Keyword,
        })
    }
}

/// Classes from the tolerant lexer, for a file that does not parse:
/// keywords by the schema, the rest by their shape.
pub fn lexical_classes(text: &str) -> Vec<(usize, usize, Class)> {
    use super::lexer::{lex, Lex};
    let tokens = lex(text);
    let mut out = Vec::with_capacity(tokens.len());
    let mut depth = 0usize;
    let mut statement_start = true;
    for (n, t) in tokens.iter().enumerate() {
        let word = t.text(text);
        let class = match t.kind {
            Lex::Comment => Some(Class::Comment),
            Lex::Str => Some(Class::Str),
            Lex::Number => Some(Class::Number),
            Lex::Path => Some(Class::Path),
            Lex::Operator => Some(Class::Operator),
            Lex::Open | Lex::Close | Lex::Punct => None,
            Lex::Word
                if tokens
                    .get(n + 1)
                    .is_some_and(|next| next.start == t.end && next.text(text) == "(") =>
            {
                Some(Class::Function)
            }
            Lex::Word if word.contains('.') => Some(Class::Reference),
            Lex::Word if gw_compiler::schema::all_named(word).next().is_some() => {
                Some(if depth > 0 && statement_start {
                    Class::Property
                } else {
                    Class::Keyword
                })
            }
            Lex::Word => None,
        };
        match t.kind {
            Lex::Open => depth += 1,
            Lex::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        statement_start = matches!(t.kind, Lex::Open | Lex::Close) || word == ";";
        if let Some(class) = class {
            out.push((t.start, t.end, class));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "import \"common.gw\"\nupstream app { server 127.0.0.1:1 }\nauth users jwt { issuer \"i\" }\nlimit l { rate 1/s store s }\nstore s redis \"redis://x\"\nroute GET /x -> app { auth users limit l aggregate { a app GET \"/\" } }\nlisten :1 tcp -> app\ntest \"t\" { GET /x -> app GET /y -> aggregate }\n";

    #[test]
    fn definitions_references_and_imports() {
        let index = FileIndex::build(TEXT);
        let defs: Vec<_> = index.defs.iter().map(|n| (n.kind, n.name.as_str())).collect();
        assert_eq!(
            defs,
            vec![
                (NameKind::Upstream, "app"),
                (NameKind::Auth, "users"),
                (NameKind::Limit, "l"),
                (NameKind::Store, "s")
            ]
        );
        let refs: Vec<_> = index.refs.iter().map(|n| (n.kind, n.name.as_str())).collect();
        assert_eq!(
            refs,
            vec![
                (NameKind::Store, "s"),
                (NameKind::Upstream, "app"),
                (NameKind::Auth, "users"),
                (NameKind::Limit, "l"),
                (NameKind::Upstream, "app"),
                (NameKind::Upstream, "app"),
                (NameKind::Upstream, "app"),
            ]
        );
        assert_eq!(index.imports[0].0, "common.gw");
        let names: Vec<_> = index.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names[1], "upstream app");
        assert_eq!(names[5], "route GET /x -> app");
    }

    #[test]
    fn classes_of_tokens() {
        let text = "upstream limit { server 1.2.3.4:80 balance hash(claim.sub) } # c\nroute /x -> limit";
        let index = FileIndex::build(text);
        let class_of = |word: &str, nth: usize| {
            let at = text.match_indices(word).nth(nth).unwrap().0;
            index.classes.iter().find(|c| c.0 == at).map(|c| c.2)
        };
        assert_eq!(class_of("upstream", 0), Some(Class::Keyword));
        assert_eq!(class_of("limit", 0), Some(Class::Name { declaration: true }));
        assert_eq!(class_of("server", 0), Some(Class::Property));
        assert_eq!(class_of("hash", 0), Some(Class::Function));
        assert_eq!(class_of("claim.sub", 0), Some(Class::Reference));
        assert_eq!(class_of("# c", 0), Some(Class::Comment));
        assert_eq!(class_of("limit", 1), Some(Class::Name { declaration: false }));
        assert_eq!(class_of("/x", 0), Some(Class::Path));
    }
}
