//! A real editor: headless Neovim, with its built-in LSP client started on
//! `gwc lsp` (`vim.lsp.start_client`, as Debian's Neovim 0.7 has it), opens a
//! `.gw` file with a mistake; the diagnostic must arrive with the right code
//! and line, and formatting through the client must rewrite the buffer as
//! `gwc fmt` would. Skipped, saying so, where `nvim` is missing — unless
//! `GW_REQUIRE_NEOVIM=1` (set by `tests/run` once it has installed Neovim)
//! or `CI` is set: then a missing Neovim fails the test.

use crate::support::{gwc_path, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const APP: &str = "upstream orders {server 127.0.0.1:9001}\n\n\n\nroute GET /orders/{id} -> order {   timeout 5s }\n";

const SCRIPT: &str = r#"
local out = os.getenv("GW_OUT")
local function say(s)
  local f = io.open(out, "a")
  f:write(s .. "\n")
  f:close()
end
local id = vim.lsp.start_client({
  name = "gw",
  cmd = { os.getenv("GWC"), "lsp" },
  root_dir = vim.fn.getcwd(),
})
if not id then
  say("no client")
  vim.cmd("qa!")
end
vim.lsp.buf_attach_client(0, id)
local arrived = vim.wait(20000, function() return #vim.diagnostic.get(0) > 0 end, 20)
if not arrived then
  say("no diagnostics")
end
for _, d in ipairs(vim.diagnostic.get(0)) do
  local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code) or "?"
  say(string.format("diagnostic %s %d", code, d.lnum + 1))
end
vim.lsp.buf.formatting_sync(nil, 20000)
say("buffer")
for _, line in ipairs(vim.api.nvim_buf_get_lines(0, 0, -1, false)) do
  say(line)
end
say("end")
vim.cmd("qa!")
"#;

fn required() -> bool {
    std::env::var_os("GW_REQUIRE_NEOVIM").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

#[test]
fn neovim_shows_the_diagnostic_and_formats_through_gwc_lsp() {
    let found = Command::new("nvim")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !required(),
            "Neovim is required here (GW_REQUIRE_NEOVIM=1 or CI) but `nvim` is missing: install Debian's `neovim`"
        );
        eprintln!("skipped: `nvim` is not installed (tests/run installs Debian's `neovim`)");
        return;
    }
    let dir = TempDir::new();
    std::fs::write(dir.path().join("app.gw"), APP).expect("write");
    std::fs::write(dir.path().join("test.lua"), SCRIPT).expect("write");
    let out = dir.path().join("out.txt");
    let mut child = Command::new("nvim")
        .args(["--headless", "--clean", "-n", "app.gw", "-c", "luafile test.lua"])
        .current_dir(dir.path())
        .env_clear()
        .env("HOME", dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GWC", gwc_path())
        .env("GW_OUT", &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nvim");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "nvim did not finish within 60 s; it wrote:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    // The mistake: `order` on line 5 (GW0101, unknown upstream).
    assert!(said.contains("diagnostic GW0101 5\n"), "Neovim saw:\n{said}");
    let buffer = said
        .split_once("buffer\n")
        .and_then(|(_, rest)| rest.split_once("end\n"))
        .map(|(b, _)| b.to_string())
        .unwrap_or_default();
    let expected = gw_compiler::format::format("app.gw", APP).expect("formats");
    assert_eq!(buffer, expected, "the buffer after formatting through Neovim's client");
    assert_ne!(buffer, APP);
}
