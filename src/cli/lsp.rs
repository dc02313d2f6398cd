//! `gwc lsp`: the language server over stdio (see `src/lsp/`), for editors.
//! `--dump-schema` prints the keyword table its completion and hover come
//! from (`gw_compiler::schema`) as JSON, for editor grammars and their tests.

use std::io::Write;
use std::process::ExitCode;

/// Run the language server on stdin and stdout (for editors).
#[derive(Debug, clap::Args)]
pub struct LspArgs {
    /// Print the language's keywords (context, value, default, range, doc) as JSON and exit.
    #[arg(long)]
    dump_schema: bool,
    /// Accepted for editors that pass it (VS Code's language client does); stdio is the only transport.
    #[arg(long, hide = true)]
    stdio: bool,
}

pub fn run(args: LspArgs) -> ExitCode {
    if args.dump_schema {
        let text = serde_json::to_string_pretty(&gw_compiler::schema::to_json()).unwrap_or_default();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        return ExitCode::SUCCESS;
    }
    ExitCode::from(crate::lsp::run())
}
