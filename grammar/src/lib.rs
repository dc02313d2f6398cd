//! The `.gw` grammar: `gw.pest` compiled into a pest [`Parser`].
//!
//! This crate owns only the shape of the text. It knows nothing of types,
//! names or HTTP: the compiler lowers the parse tree into its AST, checks each
//! value's kind, and turns pest's errors into diagnostics with codes.

pub use pest::iterators::{Pair, Pairs};
pub use pest::Parser as _;

/// The pest parser generated from `gw.pest`.
#[derive(pest_derive::Parser)]
#[grammar = "gw.pest"]
pub struct GwParser;

/// Parses a whole `.gw` file into its parse tree (the `file` rule).
pub fn parse_file(source: &str) -> Result<Pairs<'_, Rule>, Box<pest::error::Error<Rule>>> {
    use pest::Parser;
    GwParser::parse(Rule::file, source).map_err(Box::new)
}

/// Parses the declaration `source` starts with, and the `;` after it (the
/// `decl_next` rule): the compiler parses a file one declaration at a time,
/// the next one where this one's pair ends. `source` must start at the
/// declaration's first token: blanks and comments before it are the
/// caller's to skip.
pub fn parse_declaration(source: &str) -> Result<Pairs<'_, Rule>, Box<pest::error::Error<Rule>>> {
    use pest::Parser;
    GwParser::parse(Rule::decl_next, source).map_err(Box::new)
}

/// Parses `source` as the given rule, for tests of single rules.
pub fn parse_rule(rule: Rule, source: &str) -> Result<Pairs<'_, Rule>, Box<pest::error::Error<Rule>>> {
    use pest::Parser;
    GwParser::parse(rule, source).map_err(Box::new)
}

#[cfg(test)]
mod tests;
