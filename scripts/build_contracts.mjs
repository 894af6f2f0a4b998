#!/usr/bin/env node
// Compile every contracts/*.sol with the pinned solc-js from node_modules and write one JSON
// artifact per contract to lunark/contracts/<Name>.json (or to the directory given as the first
// argument, which the test suite uses to check that the committed artifacts are up to date).
//
//   node scripts/build_contracts.mjs [outDir]
//
// The output is deterministic: same sources and compiler version give byte-identical files
// (no metadata hash in the bytecode, source paths relative to the repository, stable key order).

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const contractsDir = join(root, "contracts");
const outDir = resolve(process.argv[2] ?? join(root, "lunark", "contracts"));

const files = readdirSync(contractsDir)
  .filter((f) => f.endsWith(".sol"))
  .sort();
if (files.length === 0) {
  console.error(`no .sol files in ${contractsDir}`);
  process.exit(1);
}

// Source units are keyed by repository-relative paths so the absolute checkout location never
// leaks into the output.
const sources = {};
const sourceBytes = {};
for (const file of files) {
  const sourcePath = `contracts/${file}`;
  const bytes = readFileSync(join(root, sourcePath));
  sourceBytes[sourcePath] = bytes;
  sources[sourcePath] = { content: bytes.toString("utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none" },
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};

function findImports(path) {
  const full = join(root, path);
  if (!full.startsWith(root) || !existsSync(full)) {
    return { error: `import not found: ${path}` };
  }
  return { contents: readFileSync(full, "utf8") };
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const diagnostics = output.errors ?? [];
for (const d of diagnostics) {
  console.error(d.formattedMessage ?? d.message);
}
if (diagnostics.some((d) => d.severity === "error")) {
  console.error("solc failed; no artifacts written.");
  process.exit(1);
}

const compiler = solc.version();
mkdirSync(outDir, { recursive: true });
let written = 0;
for (const sourcePath of Object.keys(sources)) {
  const sourceSha256 = createHash("sha256").update(sourceBytes[sourcePath]).digest("hex");
  const contracts = output.contracts?.[sourcePath] ?? {};
  for (const contractName of Object.keys(contracts).sort()) {
    const c = contracts[contractName];
    // Keys in a fixed order so rebuilding produces an identical file.
    const artifact = {
      contractName,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
      compiler,
      sourcePath,
      sourceSha256,
    };
    writeFileSync(join(outDir, `${contractName}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
    written += 1;
  }
}
console.log(`wrote ${written} artifact(s) to ${outDir} with solc ${compiler}`);
