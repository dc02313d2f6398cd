#!/usr/bin/env bash
# Renders images/highlight.png, the picture in README.md: images/highlight.gw
# coloured by this extension's own TextMate grammar (through shiki, which uses
# vscode-textmate like VS Code) with VS Code's default dark theme, screenshot by
# Debian's headless chromium. A one-time artifact: CI does not render it.
#   apt-get install chromium fonts-dejavu-core; editors/vscode/scripts/render-picture.sh
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error shiki@3.9.2 >/dev/null
cat >render.mjs <<'JS'
import { createHighlighter } from 'shiki';
import { readFileSync, writeFileSync } from 'node:fs';
const [grammarPath, sourcePath, outPath] = process.argv.slice(2);
const grammar = JSON.parse(readFileSync(grammarPath, 'utf8'));
const highlighter = await createHighlighter({ themes: ['dark-plus'], langs: [{ ...grammar, name: 'gw' }] });
const code = readFileSync(sourcePath, 'utf8').replace(/\n$/, '');
const html = highlighter.codeToHtml(code, { lang: 'gw', theme: 'dark-plus' });
writeFileSync(outPath, `<!doctype html><meta charset="utf-8"><style>
  html, body { margin: 0; background: #1e1e1e; }
  pre.shiki { margin: 0; padding: 18px 22px; font: 15px/1.45 "DejaVu Sans Mono", monospace; }
</style>${html}`);
JS
node render.mjs "$here/syntaxes/gw.tmLanguage.json" "$here/images/highlight.gw" page.html
lines=$(wc -l <"$here/images/highlight.gw")
height=$((lines * 22 + 36))
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --window-size=860,"$height" --screenshot="$here/images/highlight.png" "file://$work/page.html" 2>/dev/null
echo "wrote $here/images/highlight.png"
