// The gw extension's language client: it starts `gwc lsp` (the same compiler
// as `gwc check`, so the editor and the deploy never disagree) over stdio for
// .gw files. Highlighting, snippets and the language configuration need no
// code; they are declared in package.json.
'use strict';

const os = require('os');
const path = require('path');
const vscode = require('vscode');
const { LanguageClient, RevealOutputChannelOn } = require('vscode-languageclient/node');

/** @type {LanguageClient | undefined} */
let client;
/** @type {vscode.OutputChannel | undefined} */
let output;

/** The `gw.server.path` setting with `~` and `${workspaceFolder}` expanded. */
function serverCommand() {
  const configured = vscode.workspace.getConfiguration('gw').get('server.path') || 'gwc';
  let command = configured.trim();
  if (command === '~' || command.startsWith('~/')) {
    command = path.join(os.homedir(), command.slice(1));
  }
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  if (folder) {
    command = command.replace(/\$\{workspaceFolder\}/g, folder.uri.fsPath);
  }
  return command;
}

async function start() {
  if (!vscode.workspace.getConfiguration('gw').get('server.enable', true)) {
    return;
  }
  const command = serverCommand();
  // `gwc lsp` speaks LSP on stdin/stdout and takes no arguments. No `transport`
  // is given on purpose: with TransportKind.stdio the client would add `--stdio`.
  const serverOptions = { command, args: ['lsp'] };
  const clientOptions = {
    documentSelector: [{ language: 'gw' }],
    outputChannel: output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    synchronize: {
      // Imported files and the key files a configuration names are checked too.
      fileEvents: vscode.workspace.createFileSystemWatcher('**/*.gw'),
    },
  };
  client = new LanguageClient('gw', 'gw language server', serverOptions, clientOptions);
  try {
    await client.start();
  } catch (err) {
    client = undefined;
    const choice = await vscode.window.showErrorMessage(
      `gw: could not start \`${command} lsp\` (${err && err.message ? err.message : err}). ` +
        'Install gwc (cargo install --path . in the gw repository) or set gw.server.path. ' +
        'Highlighting and snippets work without it.',
      'Open settings',
    );
    if (choice === 'Open settings') {
      vscode.commands.executeCommand('workbench.action.openSettings', 'gw.server');
    }
  }
}

async function stop() {
  const running = client;
  client = undefined;
  if (running) {
    await running.stop();
  }
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  output = vscode.window.createOutputChannel('gw');
  context.subscriptions.push(output);
  context.subscriptions.push(
    vscode.commands.registerCommand('gw.restartServer', async () => {
      await stop();
      await start();
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('gw.server')) {
        await stop();
        await start();
      }
    }),
  );
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
