// Validate an AsyncAPI document with the official parser (@asyncapi/parser, the library
// behind `asyncapi validate`): its JSON Schema of the specification and its Spectral rules.
// Usage: node validate.cjs NODE_MODULES_DIR DOCUMENT
// Prints one JSON object {"valid": bool, "diagnostics": [{severity, code, message, path}]}
// and exits 0 when no diagnostic is an error, 1 otherwise, 2 on a usage or read error.
'use strict';
const fs = require('fs');
const { createRequire } = require('module');
const path = require('path');

async function main() {
  const [modules, document] = process.argv.slice(2);
  if (!modules || !document) {
    console.error('usage: node validate.cjs NODE_MODULES_DIR DOCUMENT');
    return 2;
  }
  const load = createRequire(path.join(path.resolve(modules), 'noop.js'));
  const { Parser, DiagnosticSeverity } = load('@asyncapi/parser');
  const text = fs.readFileSync(document, 'utf8');
  const parser = new Parser();
  const { document: parsed, diagnostics } = await parser.parse(text, { source: path.resolve(document) });
  const names = { [DiagnosticSeverity.Error]: 'error', [DiagnosticSeverity.Warning]: 'warning',
    [DiagnosticSeverity.Information]: 'info', [DiagnosticSeverity.Hint]: 'hint' };
  const out = diagnostics.map((d) => ({
    severity: names[d.severity] ?? String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path,
  }));
  const errors = out.filter((d) => d.severity === 'error');
  const valid = parsed !== undefined && errors.length === 0;
  process.stdout.write(JSON.stringify({ valid, version: parsed ? parsed.version() : null, diagnostics: out }) + '\n');
  return valid ? 0 : 1;
}

main().then((code) => process.exit(code), (error) => { console.error(error); process.exit(2); });
