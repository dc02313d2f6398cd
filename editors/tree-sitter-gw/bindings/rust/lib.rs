//! The tree-sitter grammar of gw's `.gw` language ([`LANGUAGE`]) and its
//! queries, for editors and tools that use tree-sitter.
//!
//! ```
//! let mut parser = tree_sitter::Parser::new();
//! parser
//!     .set_language(&tree_sitter_gw::LANGUAGE.into())
//!     .expect("the grammar's ABI is one this tree-sitter reads");
//! let tree = parser.parse("route GET /ping { respond 200 \"pong\" }", None).expect("a tree");
//! assert!(!tree.root_node().has_error());
//! ```

use tree_sitter_language::LanguageFn;

extern "C" {
    fn tree_sitter_gw() -> *const ();
}

/// The tree-sitter [`LanguageFn`] of the `.gw` grammar.
///
/// # Safety
///
/// `tree_sitter_gw` is the language function of the parser compiled from
/// `src/parser.c` by the build script.
pub const LANGUAGE: LanguageFn = unsafe { LanguageFn::from_raw(tree_sitter_gw) };

/// The content of `src/node-types.json`: every node kind and its fields.
pub const NODE_TYPES: &str = include_str!("../../src/node-types.json");

/// Syntax highlighting (`queries/highlights.scm`).
pub const HIGHLIGHTS_QUERY: &str = include_str!("../../queries/highlights.scm");

/// Folding ranges (`queries/folds.scm`).
pub const FOLDS_QUERY: &str = include_str!("../../queries/folds.scm");

/// Indentation (`queries/indents.scm`).
pub const INDENTS_QUERY: &str = include_str!("../../queries/indents.scm");

/// Definitions, references and scopes (`queries/locals.scm`).
pub const LOCALS_QUERY: &str = include_str!("../../queries/locals.scm");

#[cfg(test)]
mod tests {
    #[test]
    fn the_language_loads() {
        let mut parser = tree_sitter::Parser::new();
        parser
            .set_language(&super::LANGUAGE.into())
            .expect("the grammar's ABI is one this tree-sitter reads");
    }
}
