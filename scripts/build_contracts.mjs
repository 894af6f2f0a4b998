#!/usr/bin/env node
// Compile every contracts/*.sol with the pinned solc-js from node_modules and write one JSON
// artifact per contract to lunark/contracts/<Name>.json (or to the directory given as the first
// argument, which the test suite uses to check that the committed artifacts are up to date).
// Also builds the real ENS contracts (registry with fallback, public resolver, reverse registrar)
// from the sources the npm packages @ensdomains/ens and @ensdomains/resolver ship: they need
// Solidity 0.7, so they are compiled with solc 0.7.6 (the `solc-0.7` alias in package.json;
// solc-js cannot download compilers here).
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

const own = compile(solc, sources, { evmVersion: "cancun" }, (path) => join(root, path));

// The ENS sources import each other by package path (`@ensdomains/ens/contracts/ENS.sol`), so
// that is how they are keyed and resolved: from node_modules, never from an absolute path.
const ENS_CONTRACTS = {
  "@ensdomains/ens/contracts/ENSRegistry.sol": ["ENSRegistry"],
  "@ensdomains/ens/contracts/ENSRegistryWithFallback.sol": ["ENSRegistryWithFallback"],
  "@ensdomains/ens/contracts/ReverseRegistrar.sol": ["ReverseRegistrar"],
  "@ensdomains/resolver/contracts/PublicResolver.sol": ["PublicResolver"],
};
const modules = join(root, "node_modules");
const ensSources = {};
for (const path of Object.keys(ENS_CONTRACTS)) {
  const bytes = readFileSync(join(modules, path));
  sourceBytes[path] = bytes;
  ensSources[path] = { content: bytes.toString("utf8") };
}
const solc07 = require("solc-0.7");
// 0.7.6 knows no fork after istanbul; the bytecode runs unchanged on later ones.
const ens = compile(solc07, ensSources, { evmVersion: "istanbul" }, (path) => join(modules, path));

mkdirSync(outDir, { recursive: true });
let written = 0;
written += emit(own, solc.version(), Object.keys(sources), null);
written += emit(ens, solc07.version(), Object.keys(ensSources), ENS_CONTRACTS);
console.log(`wrote ${written} artifact(s) to ${outDir} with solc ${solc.version()} and ${solc07.version()}`);

function compile(compiler, units, { evmVersion }, locate) {
  const input = {
    language: "Solidity",
    sources: units,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion,
      metadata: { bytecodeHash: "none" },
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };
  const base = locate("");
  function findImports(path) {
    const full = locate(path);
    if (!full.startsWith(base) || !existsSync(full)) {
      return { error: `import not found: ${path}` };
    }
    return { contents: readFileSync(full, "utf8") };
  }
  const output = JSON.parse(compiler.compile(JSON.stringify(input), { import: findImports }));
  const diagnostics = (output.errors ?? []).filter((d) => d.severity === "error" || units === sources);
  for (const d of diagnostics) {
    console.error(d.formattedMessage ?? d.message);
  }
  if (diagnostics.some((d) => d.severity === "error")) {
    console.error("solc failed; no artifacts written.");
    process.exit(1);
  }
  return output;
}

// Writes the artifacts of `paths` (only the contracts `wanted` lists for a path, when given:
// the ENS sources also define interfaces and libraries nobody deploys).
function emit(output, compiler, paths, wanted) {
  let count = 0;
  for (const sourcePath of paths) {
    const sourceSha256 = createHash("sha256").update(sourceBytes[sourcePath]).digest("hex");
    const contracts = output.contracts?.[sourcePath] ?? {};
    for (const contractName of Object.keys(contracts).sort()) {
      if (wanted && !wanted[sourcePath].includes(contractName)) continue;
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
      count += 1;
    }
  }
  return count;
}
