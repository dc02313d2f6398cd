//! Compiles the generated parser (`src/parser.c`, committed as tree-sitter
//! grammars conventionally do, so that building needs no tree-sitter CLI).

fn main() {
    let src_dir = std::path::Path::new("src");
    let mut c_config = cc::Build::new();
    c_config.std("c11").include(src_dir);
    // The generated parser has unused parameters and the like: not ours to fix.
    c_config.warnings(false);
    #[cfg(target_env = "msvc")]
    c_config.flag("-utf-8");
    let parser_path = src_dir.join("parser.c");
    c_config.file(&parser_path);
    println!("cargo:rerun-if-changed={}", parser_path.display());
    c_config.compile("tree-sitter-gw");
}
