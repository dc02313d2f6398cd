//! The gw compiler: `.gw` text in, diagnostics and (when there are no errors)
//! a checked [`ast::Config`] out.
//!
//! Pipeline: [`load`] (read files through a [`host::Host`], follow imports)
//! → [`syntax`] (pest parse tree → typed AST, literal checks) → [`check`]
//! (names, routes, upstreams, auth, warnings). The compiler does no IO of its
//! own and never panics on any input.

pub mod ast;
pub mod check;
pub mod codes;
pub mod diagnostic;
pub mod format;
pub mod host;
pub mod load;
pub mod plan;
pub mod redact;
pub use gw_plan::redis_url;
pub mod schema;
pub mod source;
pub mod syntax;

pub use codes::Code;
pub use diagnostic::{Diagnostic, Label, Severity};
pub use source::{FileId, SourceFile, SourceMap, Span, Spanned};

use host::Host;

/// The result of checking a configuration.
pub struct Compilation {
    pub sources: SourceMap,
    /// Sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The checked configuration, when there are no errors.
    pub config: Option<ast::Config>,
    /// The compiled plan, when there are no errors (embedded tests included).
    pub plan: Option<plan::Plan>,
    /// The embedded tests' results, when checks passed and a plan was built
    /// (kept when tests fail, for `gwc test --coverage`).
    pub tests: Option<plan::testing::TestReport>,
}

impl Compilation {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Loads, parses and checks the configuration rooted at `root`. `Err` only
/// when `root` itself cannot be read (a usage error for `gwc`).
pub fn compile(host: &dyn Host, root: &str) -> std::io::Result<Compilation> {
    Ok(finish(host, load::load(host, root)?))
}

/// Like [`compile`] for a root given as text.
pub fn compile_text(host: &dyn Host, name: &str, text: &str) -> Compilation {
    finish(host, load::load_text(host, name, text))
}

fn finish(host: &dyn Host, loaded: load::Loaded) -> Compilation {
    let load::Loaded {
        sources,
        config,
        mut diagnostics,
    } = loaded;
    check::check(host, &sources, &config, &mut diagnostics);
    let (plan, tests) = plan_and_test(&sources, &config, &mut diagnostics);
    let ok = !diagnostics.has_errors();
    Compilation {
        sources,
        diagnostics: diagnostics.into_sorted(),
        config: ok.then_some(config),
        plan: plan.filter(|_| ok),
        tests,
    }
}

/// After checks pass: the plan, and the embedded tests run against it
/// (failures are GW0601).
fn plan_and_test(
    sources: &SourceMap,
    config: &ast::Config,
    diagnostics: &mut diagnostic::Diagnostics,
) -> (Option<plan::Plan>, Option<plan::testing::TestReport>) {
    if diagnostics.has_errors() {
        return (None, None);
    }
    match plan::lower(config, sources) {
        Ok(plan) => {
            let mut report = plan::testing::run(config, &plan);
            for d in &report.failures {
                diagnostics.push(d.clone());
            }
            if report.failures.is_empty() {
                (Some(plan), Some(report))
            } else {
                // Failing tests are errors, so there is no plan to run; the
                // report keeps it for `gwc route` to explain the failures.
                report.plan = Some(plan);
                (None, Some(report))
            }
        }
        Err(errors) => {
            for d in errors {
                diagnostics.push(d);
            }
            (None, None)
        }
    }
}
