// Decisions, the EIP-1193 mapping, units and the EIP-4361 message (byte for byte as siwe.py renders it).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  allowedDecisions, approve, batchHashes, buildSiweMessage, canBatchAtomically, dangerCodes, edit, editAmount,
  formatUnits, maxFeeWei, reject, toAddEthereumChain, toEip1193Tx, toHexChainId, toSendCalls, utf8ToHex,
} from "../../lunark/web/lib/protocol.js";

const ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

test("decision constructors make the protocol's shapes", () => {
  assert.deepEqual(approve(), { type: "approve" });
  assert.deepEqual(approve({ txHash: "0xab" }), { type: "approve", tx_hash: "0xab" });
  assert.deepEqual(approve({ signedTx: "0x02f8" }), { type: "approve", signed_tx: "0x02f8" });
  assert.deepEqual(approve({ txHash: "0xab", acknowledge: ["lookalike_recipient"] }),
    { type: "approve", tx_hash: "0xab", acknowledge: ["lookalike_recipient"] });
  assert.deepEqual(approve({ acknowledge: [] }), { type: "approve" });
  assert.deepEqual(reject(), { type: "reject" });
  assert.deepEqual(reject("  "), { type: "reject" });
  assert.deepEqual(reject(" too much "), { type: "reject", message: "too much" });
  assert.deepEqual(edit("transfer", { to: BOB, amount: "1" }), {
    type: "edit", edited_action: { name: "transfer", args: { to: BOB, amount: "1" } },
  });
  const request = { call_id: "c1", name: "transfer", args: { to: BOB, amount: "0.25", token: "TKN" } };
  assert.deepEqual(editAmount(request, " 0.1 "), {
    type: "edit", edited_action: { name: "transfer", args: { to: BOB, amount: "0.1", token: "TKN" } },
  });
  assert.deepEqual(request.args.amount, "0.25", "the request is not changed");
  const approval = { review_configs: [{ action_name: "transfer", allowed_decisions: ["approve", "reject"] }] };
  assert.deepEqual(allowedDecisions(approval, request), ["approve", "reject"]);
});

test("an approval's tx maps one to one onto eth_sendTransaction", () => {
  const tx = {
    chain_id: "0x7a69", from: ALICE, to: BOB, value: "0x3782dace9d90000", data: "0x", gas: "0x5208",
    max_fee_per_gas: "0x77359400", max_priority_fee_per_gas: "0x3b9aca00", nonce: "0x0",
  };
  assert.deepEqual(toEip1193Tx(tx), {
    from: ALICE, to: BOB, value: "0x3782dace9d90000", data: "0x", gas: "0x5208",
    maxFeePerGas: "0x77359400", maxPriorityFeePerGas: "0x3b9aca00", nonce: "0x0", chainId: "0x7a69",
  });
  assert.equal(maxFeeWei(tx), 21000n * 2000000000n);
  assert.equal(formatUnits(maxFeeWei(tx), 18), "0.000042");
});

test("formatUnits is exact above 2^53", () => {
  assert.equal(formatUnits("0x3782dace9d90000", 18), "0.25");
  assert.equal(formatUnits("123456789012345678901234567890", 18), "123456789012.34567890123456789");
  assert.equal(formatUnits(0n, 18), "0");
  assert.equal(formatUnits(1500000n, 6), "1.5");
  assert.equal(formatUnits("0x1", 18, 6), "0");
  assert.equal(formatUnits(7, 0), "7");
});

test("network helpers for the wallet", () => {
  assert.equal(toHexChainId(31338), "0x7a6a");
  assert.deepEqual(
    toAddEthereumChain({ chain_id: 31338, name: "anvil-2", display_name: "Anvil 2 (local)", symbol: "ETH", decimals: 18, rpc_urls: ["http://127.0.0.1:1"], explorer_url: null }),
    { chainId: "0x7a6a", chainName: "Anvil 2 (local)", nativeCurrency: { name: "ETH", symbol: "ETH", decimals: 18 }, rpcUrls: ["http://127.0.0.1:1"] },
  );
  assert.deepEqual(
    toAddEthereumChain({ chain_id: 8453, name: "base", symbol: "ETH", decimals: 18, rpc_urls: [], explorer_url: "https://basescan.org" }).blockExplorerUrls,
    ["https://basescan.org"],
  );
  assert.equal(utf8ToHex("hé"), "0x68c3a9");
});

// Expected texts rendered by lunark/siwe.py SiweMessage.to_text() with the same fields.
test("the sign-in message is rendered exactly like the server's to_text", () => {
  const base = { domain: "localhost:8080", address: ALICE, uri: "http://localhost:8080", nonce: "abcDEF123456789xy" };
  assert.equal(
    buildSiweMessage({ ...base, statement: "Sign in to Lunark.", chainId: 31337, issuedAt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) }),
    "localhost:8080 wants you to sign in with your Ethereum account:\n0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\nSign in to Lunark.\n\nURI: http://localhost:8080\nVersion: 1\nChain ID: 31337\nNonce: abcDEF123456789xy\nIssued At: 2026-01-02T03:04:05Z",
  );
  assert.equal(
    buildSiweMessage({
      ...base, statement: "Sign in to Lunark.", chainId: 1,
      issuedAt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 123)), expirationTime: new Date(Date.UTC(2026, 0, 2, 4, 4, 5)),
    }),
    "localhost:8080 wants you to sign in with your Ethereum account:\n0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\nSign in to Lunark.\n\nURI: http://localhost:8080\nVersion: 1\nChain ID: 1\nNonce: abcDEF123456789xy\nIssued At: 2026-01-02T03:04:05.123Z\nExpiration Time: 2026-01-02T04:04:05Z",
  );
  // No statement: two blank lines between the address and "URI:".
  assert.equal(
    buildSiweMessage({ ...base, chainId: 1, issuedAt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) }),
    "localhost:8080 wants you to sign in with your Ethereum account:\n0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\n\nURI: http://localhost:8080\nVersion: 1\nChain ID: 1\nNonce: abcDEF123456789xy\nIssued At: 2026-01-02T03:04:05Z",
  );
});

test("keccak-256 and EIP-55 checksums", async () => {
  const { keccak256Hex, toChecksumAddress } = await import("../../lunark/web/lib/protocol.js");
  const enc = (s) => new TextEncoder().encode(s);
  assert.equal(keccak256Hex(enc("")), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  assert.equal(keccak256Hex(enc("abc")), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
  assert.equal(keccak256Hex(enc("a".repeat(200))), "96ea54061def936c4be90b518992fdc6f12f535068a256229aca54267b4d084d", "two blocks");
  // The examples of EIP-55, and Anvil's first two dev accounts.
  for (const address of [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ALICE, BOB,
  ]) {
    assert.equal(toChecksumAddress(address.toLowerCase()), address);
    assert.equal(toChecksumAddress(address.toUpperCase().replace("0X", "0x")), address);
  }
  assert.throws(() => toChecksumAddress("0x123"), TypeError);
});

test("dangerCodes lists each danger warning's code once, in card order", () => {
  const request = { warnings: [
    { code: "address_from_tool_output", severity: "danger", message: "a" },
    { code: "first_time_recipient", severity: "warning", message: "b" },
    { code: "address_from_tool_output", severity: "danger", message: "c" },
    { code: "lookalike_recipient", severity: "danger", message: "d" },
  ] };
  assert.deepEqual(dangerCodes(request), ["address_from_tool_output", "lookalike_recipient"]);
  assert.deepEqual(dangerCodes({}), []);
});

test("EIP-5792: atomic batch capability, sendCalls parameter, and a hash per call from the receipts", () => {
  assert.equal(canBatchAtomically({ "0x7a69": { atomic: { status: "supported" } } }, 31337), true);
  assert.equal(canBatchAtomically({ "0x7a69": { atomic: { status: "ready" } } }, 31337), true);
  assert.equal(canBatchAtomically({ "0x0": { atomic: { status: "supported" } } }, 8453), true);
  assert.equal(canBatchAtomically({ "0x7a69": { atomic: { status: "unsupported" } } }, 31337), false);
  assert.equal(canBatchAtomically({ "0x1": { atomic: { status: "supported" } } }, 31337), false);
  assert.equal(canBatchAtomically({ "0x7a69": {} }, 31337), false);
  assert.equal(canBatchAtomically(null, 31337), false);

  const tx = (to, value, data, nonce) => ({ chain_id: "0x7a69", from: ALICE, to, value, data, gas: "0x5208",
    max_fee_per_gas: "0x1", max_priority_fee_per_gas: "0x1", nonce });
  assert.deepEqual(toSendCalls([tx(BOB, "0x1", "0x", "0x0"), tx(ALICE, "0x0", "0xa9059cbb", "0x1")]), {
    version: "2.0.0", chainId: "0x7a69", from: ALICE, atomicRequired: true,
    calls: [{ to: BOB, value: "0x1", data: "0x" }, { to: ALICE, value: "0x0", data: "0xa9059cbb" }],
  });

  const r = (h) => ({ transactionHash: h });
  assert.deepEqual(batchHashes({ status: 200, receipts: [r("0xa"), r("0xb")] }, 2), ["0xa", "0xb"]);
  // One transaction for the whole batch: its hash for each call, which the server then refuses to bind.
  assert.deepEqual(batchHashes({ status: 200, receipts: [r("0xc")] }, 2), ["0xc", "0xc"]);
  assert.deepEqual(batchHashes({ status: 100 }, 2), []);
});
