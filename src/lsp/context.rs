//! Where the cursor is, in the language's terms, read from the text being
//! typed (which need not parse): the block around it (an upstream, a
//! route, a `health` block...), the statement it is in and the keyword that
//! started it. Blocks and statements are found the way the grammar finds
//! them: a `{` opens the block its statement's keyword names, and a keyword
//! of the block starts a new statement unless a value is expected there.

use super::lexer::{Lex, Token};
use gw_compiler::schema::{self, Context, Keyword};

/// The cursor's surroundings.
#[derive(Debug)]
pub struct Cursor {
    /// The innermost block; `None` inside a block the language does not have.
    pub block: Option<Context>,
    /// The tokens of the statement before the cursor (comments left out,
    /// the word being typed too).
    pub statement: Vec<Token>,
    /// The word being typed (or under the cursor), if any.
    pub word: Option<Token>,
}

impl Cursor {
    /// The keyword that started the statement, in its block.
    pub fn keyword(&self, text: &str) -> Option<&'static Keyword> {
        let first = self.statement.first()?;
        schema::lookup(self.block?, first.text(text))
    }

    /// The token just before the cursor (or before the word being typed).
    pub fn previous(&self) -> Option<&Token> {
        self.statement.last()
    }
}

struct Frame {
    block: Option<Context>,
}

/// The surroundings of byte `offset` in `text` (lexed as `tokens`).
/// `through_word`: a word the cursor touches is the word being typed (for
/// completion and hover); otherwise only tokens before it count.
pub fn at(text: &str, tokens: &[Token], offset: usize) -> Cursor {
    let mut frames = vec![Frame {
        block: Some(Context::Top),
    }];
    let mut statement: Vec<Token> = Vec::new();
    let mut word = None;
    for t in tokens {
        if t.start >= offset {
            break;
        }
        if t.end >= offset && matches!(t.kind, Lex::Word | Lex::Number | Lex::Path | Lex::Str) {
            // The cursor touches it: it is being typed (or hovered).
            word = Some(*t);
            break;
        }
        let block = frames.last().and_then(|f| f.block);
        match t.kind {
            Lex::Comment => {}
            Lex::Open => {
                let opened = block.and_then(|b| opens(text, b, &statement));
                frames.push(Frame { block: opened });
                statement.clear();
            }
            Lex::Close => {
                if frames.len() > 1 {
                    frames.pop();
                }
                statement.clear();
            }
            Lex::Punct if t.text(text) == ";" => statement.clear(),
            _ => {
                if starts_statement(text, block, &statement, t) {
                    statement.clear();
                }
                statement.push(*t);
            }
        }
    }
    Cursor {
        block: frames.last().and_then(|f| f.block),
        statement,
        word,
    }
}

/// The block a `{` opens after `statement` in `block`.
fn opens(text: &str, block: Context, statement: &[Token]) -> Option<Context> {
    let first = statement.first()?.text(text);
    let has = |w: &str| statement.iter().any(|t| t.text(text) == w);
    match (block, first) {
        (Context::Top, "route") => Some(Context::Route),
        (Context::Top, "listen") if has("tls") => Some(Context::Tls),
        (Context::Top, "auth") => match statement.get(2).map(|t| t.text(text)) {
            Some("jwt") => Some(Context::Jwt),
            Some("api_key") => Some(Context::ApiKey),
            _ => None,
        },
        _ => schema::lookup(block, first)?.opens.filter(|c| c.is_block()),
    }
}

/// Whether `t` starts a new statement of `block` after `statement`.
fn starts_statement(text: &str, block: Option<Context>, statement: &[Token], t: &Token) -> bool {
    let Some(block) = block else { return false };
    let Some(prev) = statement.last() else { return false };
    let word = t.text(text);
    let prev_text = prev.text(text);
    if matches!(prev_text, "," | "->" | "==" | "!=") {
        return false;
    }
    // A word right after a keyword that takes a value is that value.
    let takes_value =
        |k: &Keyword| !k.value.is_empty() || !k.values.is_empty() || k.refers.is_some() || k.defines.is_some();
    let first = statement.first().map(|f| f.text(text)).unwrap_or("");
    let own = schema::lookup(block, first);
    let part = own.and_then(|k| k.opens).and_then(|c| schema::lookup(c, prev_text));
    if statement.len() == 1 && own.is_some_and(takes_value) || part.is_some() {
        return false;
    }
    match block {
        Context::Test => {
            schema::lookup(Context::Top, "route").is_some_and(|r| r.values.contains(&word) && !prev_text.ends_with(','))
        }
        Context::Aggregate => word == "timeout" || (statement.len() >= 4 && word != "optional"),
        _ => schema::lookup(block, word).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsp::lexer::lex;

    fn cursor(text_with_bar: &str) -> (Option<Context>, Vec<String>, Option<String>) {
        let offset = text_with_bar.find('|').unwrap();
        let text = text_with_bar.replacen('|', "", 1);
        let tokens = lex(&text);
        let c = at(&text, &tokens, offset);
        (
            c.block,
            c.statement.iter().map(|t| t.text(&text).to_string()).collect(),
            c.word.map(|w| w.text(&text).to_string()),
        )
    }

    #[test]
    fn blocks_and_statements() {
        assert_eq!(cursor("upstream a { server 1.2.3.4:80 | }").0, Some(Context::Upstream));
        assert_eq!(cursor("upstream a { health { path /h | } }").0, Some(Context::Health));
        assert_eq!(cursor("auth u jwt { | }").0, Some(Context::Jwt));
        assert_eq!(cursor("auth u api_key { | }").0, Some(Context::ApiKey));
        assert_eq!(cursor("listen :1 tls { | }").0, Some(Context::Tls));
        assert_eq!(cursor("route /x { cors { | } }").0, Some(Context::Cors));
        assert_eq!(cursor("route /x { foo { | } }").0, None);
        assert_eq!(cursor("route /x -> |").1, vec!["route", "/x", "->"]);
        assert_eq!(cursor("route /x { auth u limit a, |").1, vec!["limit", "a", ","]);
        assert_eq!(
            cursor("upstream a { retry 2 on timeout |").1,
            vec!["retry", "2", "on", "timeout"]
        );
        assert_eq!(cursor("upstream a { timeout 1s retry 2 |").1, vec!["retry", "2"]);
        assert_eq!(
            cursor("route /limit -> limit |").1,
            vec!["route", "/limit", "->", "limit"]
        );
        assert_eq!(cursor("route /x { au|").2.as_deref(), Some("au"));
        assert_eq!(cursor("test \"t\" { GET /a -> x POST /b |").1, vec!["POST", "/b"]);
    }
}
