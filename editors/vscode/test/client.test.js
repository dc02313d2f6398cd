// The language client's wiring, with VS Code and vscode-languageclient
// replaced by recorders: which command the extension starts (`gwc lsp`, over
// stdio with no other argument), for which documents, and how the
// gw.server.* settings change that. (`node --test test/`)
'use strict';

const assert = require('node:assert');
const Module = require('node:module');
const os = require('node:os');
const path = require('node:path');
const test = require('node:test');

/** Loads extension.js against fake `vscode` and `vscode-languageclient/node` modules. */
function load(settings, { startFails = false } = {}) {
  const record = { clients: [], errors: [], commands: {}, stopped: 0 };
  const vscode = {
    workspace: {
      getConfiguration: (section) => ({
        get: (key, fallback) => {
          const value = settings[`${section}.${key}`];
          return value === undefined ? fallback : value;
        },
      }),
      workspaceFolders: [{ uri: { fsPath: '/work/project' } }],
      createFileSystemWatcher: (glob) => ({ glob }),
      onDidChangeConfiguration: () => ({ dispose() {} }),
    },
    window: {
      createOutputChannel: (name) => ({ name, dispose() {} }),
      showErrorMessage: async (message) => {
        record.errors.push(message);
        return undefined;
      },
    },
    commands: {
      registerCommand: (name, fn) => {
        record.commands[name] = fn;
        return { dispose() {} };
      },
      executeCommand: async () => {},
    },
  };
  class LanguageClient {
    constructor(id, name, serverOptions, clientOptions) {
      Object.assign(this, { id, name, serverOptions, clientOptions });
      record.clients.push(this);
    }
    async start() {
      if (startFails) {
        throw new Error('spawn gwc ENOENT');
      }
    }
    async stop() {
      record.stopped += 1;
    }
  }
  const fakes = {
    vscode,
    'vscode-languageclient/node': { LanguageClient, RevealOutputChannelOn: { Never: 4 } },
  };
  const realLoad = Module._load;
  Module._load = function (request, parent, isMain) {
    return Object.prototype.hasOwnProperty.call(fakes, request) ? fakes[request] : realLoad.call(this, request, parent, isMain);
  };
  const file = require.resolve('../extension.js');
  delete require.cache[file];
  try {
    return { extension: require(file), record };
  } finally {
    Module._load = realLoad;
  }
}

const context = () => ({ subscriptions: [] });

test('starts `gwc lsp` over stdio for gw documents', async () => {
  const { extension, record } = load({});
  await extension.activate(context());
  assert.strictEqual(record.clients.length, 1);
  const [client] = record.clients;
  assert.deepStrictEqual(client.serverOptions, { command: 'gwc', args: ['lsp'] });
  assert.strictEqual(client.serverOptions.transport, undefined, 'a transport would add --stdio');
  assert.deepStrictEqual(client.clientOptions.documentSelector, [{ language: 'gw' }]);
  assert.strictEqual(client.clientOptions.synchronize.fileEvents.glob, '**/*.gw');
});

test('gw.server.path names the binary, with ~ and ${workspaceFolder} expanded', async () => {
  for (const [setting, expected] of [
    ['/opt/gw/bin/gwc', '/opt/gw/bin/gwc'],
    ['~/bin/gwc', path.join(os.homedir(), 'bin/gwc')],
    ['${workspaceFolder}/target/debug/gwc', '/work/project/target/debug/gwc'],
  ]) {
    const { extension, record } = load({ 'gw.server.path': setting });
    await extension.activate(context());
    assert.strictEqual(record.clients[0].serverOptions.command, expected, setting);
  }
});

test('gw.server.enable false starts no server', async () => {
  const { extension, record } = load({ 'gw.server.enable': false });
  await extension.activate(context());
  assert.strictEqual(record.clients.length, 0);
});

test('a gwc that cannot start is reported once, and highlighting goes on', async () => {
  const { extension, record } = load({ 'gw.server.path': 'no-such-gwc' }, { startFails: true });
  await extension.activate(context());
  assert.strictEqual(record.errors.length, 1);
  assert.match(record.errors[0], /no-such-gwc lsp/);
  assert.match(record.errors[0], /gw\.server\.path/);
});

test('the restart command stops the running client and starts a new one', async () => {
  const { extension, record } = load({});
  await extension.activate(context());
  await record.commands['gw.restartServer']();
  assert.strictEqual(record.stopped, 1);
  assert.strictEqual(record.clients.length, 2);
  await extension.deactivate();
  assert.strictEqual(record.stopped, 2);
});
