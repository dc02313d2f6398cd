//! The routing plan as the compiler makes it. The plan's types, its router,
//! the route explainer and the printer live in `gw-plan` (re-exported here
//! whole, so `gw_compiler::plan::Plan` is `gw_plan::Plan`), which the runtime
//! depends on without the parser. Here: [`lower`] (checked syntax tree →
//! plan), [`testing`] (embedded `test` blocks) and [`diff`] (what a reload
//! from one plan to another changes, for `gwc diff` and the reload log).

pub mod diff;
pub mod lower;
pub mod testing;

pub use gw_plan::*;
pub use lower::lower;
