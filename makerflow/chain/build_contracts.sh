#!/usr/bin/env bash
# Rebuilds makerflow/chain/artifacts/*.json (ABI + creation bytecode) from contracts/*.sol with
# solcjs from the npm registry, pinned below. Run it after editing a contract and commit the
# artifacts: nothing downloads or runs a compiler when the project runs.
#
#   bash makerflow/chain/build_contracts.sh
#
# Needs node and npm. The compiler is installed into a temporary directory and removed after.
set -euo pipefail

SOLC_VERSION="0.8.28"
EVM_VERSION="cancun"   # the newest fork both solc 0.8.28 and py-evm's eth-tester backend run

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

npm install --prefix "$work" --no-audit --no-fund --silent "solc@${SOLC_VERSION}"

SOLC_VERSION="$SOLC_VERSION" EVM_VERSION="$EVM_VERSION" HERE="$here" \
NODE_PATH="$work/node_modules" node - <<'JS'
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const solc = require("solc");

const here = process.env.HERE;
const srcDir = path.join(here, "contracts");
const outDir = path.join(here, "artifacts");
const sources = {};
for (const f of fs.readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(srcDir, f), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: process.env.EVM_VERSION,
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
for (const e of out.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
if (solc.version().indexOf(process.env.SOLC_VERSION) !== 0) {
  console.error(`expected solc ${process.env.SOLC_VERSION}, got ${solc.version()}`);
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
for (const [file, contracts] of Object.entries(out.contracts)) {
  const sha = crypto.createHash("sha256").update(sources[file].content).digest("hex");
  for (const [name, c] of Object.entries(contracts)) {
    const artifact = {
      contractName: name,
      sourceName: `contracts/${file}`,
      sourceSha256: sha,
      compiler: `solc ${solc.version()}`,
      evmVersion: process.env.EVM_VERSION,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
    };
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    console.log(`artifacts/${name}.json`);
  }
}
JS
