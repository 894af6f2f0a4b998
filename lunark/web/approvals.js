// Approvals: the card for each approval request (what it does, the network, the fee, its warnings,
// a countdown) and the user's decisions on it, approving through the wallet, rejecting with a
// reason, or editing the amount. A danger warning has a checkbox: Approve stays disabled until
// every one is ticked, and the approve decision then acknowledges their codes.

import * as P from "./lib/protocol.js";
import { decisionFor } from "./lib/reducer.js";
import { app, describeError, h, show } from "./page.js";
import { nodes, renderTx, scheduleRender, TOOL_LABELS, toolLabel } from "./render.js";
import { networkName, switchWallet } from "./wallet.js";

export { createApproval, updateApproval };

function setApprovalUi(id, patch) {
  app.approvalUi = { ...app.approvalUi, [id]: { mode: null, busy: null, error: null, ...app.approvalUi[id], ...patch } };
  scheduleRender();
}

async function decide(approval, decisions) {
  const chatId = app.state.chatId;
  try {
    await app.transport.decide(chatId, approval.approval_id, decisions);
    setApprovalUi(approval.approval_id, { busy: null, mode: null, error: null });
  } catch (err) {
    setApprovalUi(approval.approval_id, { busy: null, error: describeError(err) });
  }
}

// The wallet's EIP-5792 capabilities per account and chain: asked once, remembered while the page lives.
const batchSupport = new Map();

async function walletBatches(from, chainId) {
  const key = `${String(from).toLowerCase()}:${chainId}`;
  if (!batchSupport.has(key)) {
    batchSupport.set(key, app.provider.request({ method: "wallet_getCapabilities", params: [from, [P.toHexChainId(chainId)]] })
      .then((capabilities) => P.canBatchAtomically(capabilities, chainId), () => false));  // no EIP-5792: one by one
  }
  return batchSupport.get(key);
}

/** The transactions of an approval that can go as one batch: two or more, one account, one chain; else null. */
function batchable(requests) {
  const txs = requests.filter((r) => r.tx).map((r) => r.tx);
  if (txs.length < 2) return null;
  const same = txs.every((tx) => BigInt(tx.chain_id) === BigInt(txs[0].chain_id) && tx.from.toLowerCase() === txs[0].from.toLowerCase());
  return same ? txs : null;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// One wallet confirmation for every transaction of the approval (EIP-5792 `wallet_sendCalls`); each
// call is then settled on its own: its receipt's hash is its approve decision's `tx_hash`, which the
// server fetches and binds like any wallet transaction. Returns the decisions, or null when the wallet
// did not send the batch (the card stays, with the reason).
async function sendBatch(approval, txs) {
  const id = approval.approval_id;
  setApprovalUi(id, { busy: `Confirm the ${txs.length} transactions in your wallet, in one batch…`, error: null, mode: null });
  let sent;
  try {
    sent = await app.provider.request({ method: "wallet_sendCalls", params: [P.toSendCalls(txs)] });
  } catch (err) {
    if (err && err.code === P.USER_REJECTED) return approval.action_requests.map(() => P.reject("I rejected the batch in my wallet."));
    setApprovalUi(id, { busy: null, error: `The wallet did not send the batch: ${describeError(err)}` });
    return null;
  }
  const batchId = typeof sent === "string" ? sent : sent && sent.id;
  setApprovalUi(id, { busy: "Waiting for your wallet's batch to be included…" });
  let status = null;
  while (Date.now() < Date.parse(approval.expires_at)) {
    try {
      status = await app.provider.request({ method: "wallet_getCallsStatus", params: [batchId] });
    } catch (err) {
      status = null;  // asked again: a wallet may not know the id for a moment
    }
    if (status && status.status >= P.CALLS_CONFIRMED) break;
    await sleep(500);
  }
  const hashes = P.batchHashes(status, txs.length);
  if (!status || status.status < P.CALLS_CONFIRMED || !hashes.length) {
    const why = status && status.status >= P.CALLS_OFFCHAIN_FAILURE && status.status < 500
      ? "it reports that nothing was sent" : "it gave no receipts before the approval expired";
    setApprovalUi(id, { busy: null, error: `The wallet did not send the batch: ${why}.` });
    return null;
  }
  let next = 0;
  // Approve was enabled only once every danger warning was ticked: each decision acknowledges its card's.
  return approval.action_requests.map((request) => {
    const acknowledge = P.dangerCodes(request);
    return request.tx ? P.approve({ txHash: hashes[next++], acknowledge }) : P.approve({ acknowledge });
  });
}

async function approveAction(approval) {
  const id = approval.approval_id;
  setApprovalUi(id, { busy: "Confirm in your wallet…", error: null, mode: null });
  const requests = approval.action_requests;
  const batch = batchable(requests);
  if (batch) {
    const chainId = Number(BigInt(batch[0].chain_id));
    if (await walletBatches(batch[0].from, chainId)) {
      try {
        if (app.walletChainId !== chainId) {
          await switchWallet(app.state.network && app.state.network.chain_id === chainId ? app.state.network : { chain_id: chainId, name: `chain ${chainId}`, symbol: "ETH", decimals: 18, rpc_urls: [] });
        }
      } catch (err) {
        setApprovalUi(id, { busy: null, error: `The wallet did not send it: ${describeError(err)}` });
        return;
      }
      const decisions = await sendBatch(approval, batch);
      if (!decisions) return;
      setApprovalUi(id, { busy: "Sending your decision…" });
      await decide(approval, decisions);
      return;
    }
  }
  // One by one: each transaction carries the nonce after the one before it (the server prepared them so).
  const decisions = [];
  for (let i = 0; i < requests.length; i++) {
    const request = requests[i];
    // Approve is enabled only once every danger warning is ticked: acknowledge them all.
    const acknowledge = P.dangerCodes(request);
    if (!request.tx) {
      decisions.push(P.approve({ acknowledge }));
      continue;
    }
    try {
      const chainId = Number(BigInt(request.tx.chain_id));
      if (app.walletChainId !== chainId) {
        await switchWallet(app.state.network && app.state.network.chain_id === chainId ? app.state.network : { chain_id: chainId, name: `chain ${chainId}`, symbol: "ETH", decimals: 18, rpc_urls: [] });
      }
      const txHash = await app.provider.request({ method: "eth_sendTransaction", params: [P.toEip1193Tx(request.tx)] });
      decisions.push(P.approve({ txHash, acknowledge }));
    } catch (err) {
      if (err && err.code === P.USER_REJECTED) {
        // The wallet's own "no" is the user's decision: reject this action and the rest.
        while (decisions.length < requests.length) decisions.push(P.reject("I rejected the transaction in my wallet."));
        break;
      }
      setApprovalUi(id, { busy: null, error: `The wallet did not send it: ${describeError(err)}` });
      return;
    }
  }
  setApprovalUi(id, { busy: "Sending your decision…" });
  await decide(approval, decisions);
}

function rejectAction(approval, reason) {
  setApprovalUi(approval.approval_id, { busy: "Sending your decision…", error: null });
  return decide(approval, approval.action_requests.map(() => P.reject(reason)));
}

function editAction(approval, amount) {
  const value = amount.trim();
  if (!/^\d+(\.\d+)?$/.test(value) || !/[1-9]/.test(value)) {
    setApprovalUi(approval.approval_id, { error: "Enter an amount greater than zero, like 0.5." });
    return;
  }
  setApprovalUi(approval.approval_id, { busy: "Preparing the new amount…", error: null });
  return decide(approval, [P.editAmount(approval.action_requests[0], value)]);
}

// An approval card is built once (its requests never change) and then only updated, so a reason
// or amount being typed keeps its focus and text while events arrive.
function createApproval(approval) {
  const s = app.state;
  const network = s.network;
  const networks = s.networks;
  const single = approval.action_requests.length === 1;
  const rows = approval.action_requests.map((request) => approvalFacts(request, network, networks));
  const first = approval.action_requests[0] || { name: "action", args: {} };
  const label = toolLabel(first.name);
  // A built-in tool's label is a phrase ("Approve transfer"); any other keeps its name ("Approve notes.add_note").
  const title = single ? `Approve ${TOOL_LABELS[first.name] ? label.toLowerCase() : label}` : `Approve ${approval.action_requests.length} actions`;
  const doneTitle = single ? `${label} request` : `${approval.action_requests.length} actions`;

  const reason = h("input", { type: "text", class: "reason", maxlength: "500", placeholder: "Reason (optional)", "aria-label": "Reason for rejecting" });
  const canEdit = single && first.name === "transfer" && P.allowedDecisions(approval, first).includes("edit");
  const amount = h("input", { type: "text", class: "amount-input", inputmode: "decimal", value: String(first.args.amount ?? ""), "aria-label": "New amount" });
  const card = h("section", { class: "approval", "data-approval-id": approval.approval_id, "aria-label": title },
    h("header", {}, h("strong", { class: "title", "data-pending": title, "data-done": doneTitle }, title),
      h("span", { class: "countdown", "aria-live": "off" })),
    ...rows,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "primary approve", onclick: () => approveAction(app.state.approvals[approval.approval_id]) }, "Approve"),
      h("button", { type: "button", class: "reject", onclick: () => setApprovalUi(approval.approval_id, { mode: "reject", error: null }) }, "Reject"),
      canEdit ? h("button", { type: "button", class: "edit", onclick: () => setApprovalUi(approval.approval_id, { mode: "edit", error: null }) }, "Edit amount") : null),
    h("form", {
      class: "reject-form", hidden: true,
      onsubmit: (e) => { e.preventDefault(); rejectAction(app.state.approvals[approval.approval_id], reason.value); },
    }, reason,
      h("button", { type: "submit", class: "danger confirm-reject" }, "Reject"),
      h("button", { type: "button", class: "cancel", onclick: () => setApprovalUi(approval.approval_id, { mode: null }) }, "Cancel")),
    canEdit ? h("form", {
      class: "edit-form", hidden: true,
      onsubmit: (e) => { e.preventDefault(); editAction(app.state.approvals[approval.approval_id], amount.value); },
    }, h("label", {}, h("span", {}, `New amount${rows[0].dataset.symbol ? ` (${rows[0].dataset.symbol})` : ""}`), amount),
      h("button", { type: "submit", class: "primary save-edit" }, "Save"),
      h("button", { type: "button", class: "cancel", onclick: () => setApprovalUi(approval.approval_id, { mode: null }) }, "Cancel")) : null,
    h("p", { class: "busy", role: "status", hidden: true }),
    h("p", { class: "approval-error", role: "alert", hidden: true }),
    h("p", { class: "outcome", hidden: true }),
    h("div", { class: "approval-txs" }));
  return card;
}

/** The address a transfer's transaction pays: for a token, the one in transfer(address,uint256)'s
 * calldata, not the token contract; null without a transaction. */
function paidAddress(request) {
  if (!request.tx) return null;
  const data = String(request.tx.data || "0x");
  return data.length >= 74 ? `0x${data.slice(34, 74)}` : String(request.tx.to);
}

/** The recipient as the user named it (a contact label, an ENS name) and the address the wallet pays. */
function recipientText(request) {
  const typed = String(request.args.to ?? "");
  const address = paidAddress(request);
  if (!request.recipient_name || !address) return typed;
  return `${request.recipient_name} (${address})`;
}

function approvalFacts(request, network, networks) {
  const facts = [];
  let symbol = "";
  if (request.name === "transfer") {
    const token = request.args.token;
    symbol = token ? (String(token).startsWith("0x") ? P.shortHex(String(token)) : String(token).toUpperCase()) : (network ? network.symbol : "");
    facts.push(["Amount", `${request.args.amount} ${symbol}`.trim(), "amount"]);
    facts.push(["To", recipientText(request), "recipient mono"]);
  } else if (request.name === "switch_network") {
    facts.push(["Switch to", String(request.args.network ?? ""), "target"]);
  }
  if (request.tx) {
    const chainId = Number(BigInt(request.tx.chain_id));
    const decimals = networks[chainId] ? networks[chainId].decimals : 18;
    const feeSymbol = networks[chainId] ? networks[chainId].symbol : "ETH";
    facts.push(["Network", networkName(chainId, `Chain ${chainId}`), "network"]);
    facts.push(["Estimated fee", `at most ${P.formatUnits(P.maxFeeWei(request.tx), decimals, 8)} ${feeSymbol}`, "fee"]);
  } else if (network && request.name !== "switch_network" && !(request.facts || []).length) {
    // A tool that sends its own rows (an MCP tool) says what it touches; the chat's network is not it.
    facts.push(["Network", networkName(network.chain_id, `Chain ${network.chain_id}`), "network"]);
  }
  // A tool the dApp has no card of its own for (an MCP tool) sends its rows: server, tool, hints, arguments.
  for (const fact of request.facts || []) facts.push([String(fact.label), String(fact.value), "fact"]);
  const list = h("dl", { class: "facts" }, ...facts.flatMap(([term, value, cls]) => [h("dt", {}, term), h("dd", { class: cls }, value)]));
  const row = h("div", { class: "request", "data-call-id": request.call_id },
    previewBlock(request, networks), approvalWarnings(request), list, h("p", { class: "summary" }, request.summary));
  row.dataset.symbol = symbol;
  return row;
}

// The balance changes the simulation saw, first on the card: whose, which asset, by how much, from
// what to what; or, when the node could not simulate, that there is no preview and why.
function previewBlock(request, networks) {
  const preview = request.preview;
  if (!preview) return null;
  if (!preview.simulated) {
    return h("p", { class: "preview preview-none" }, `No balance preview: ${preview.reason || "the node could not simulate it"}.`);
  }
  const from = request.tx ? String(request.tx.from).toLowerCase() : "";
  // The card's name for the address it pays (a contact label, an ENS name), on that address's row only.
  const named = request.recipient_name ? String(paidAddress(request) || "").toLowerCase() : "";
  const amount = (value, c) => `${P.formatUnits(value, c.decimals)} ${c.symbol}`;
  const rows = preview.changes.map((c) => {
    const mine = c.address.toLowerCase() === from;
    const whose = mine ? "You" : c.address.toLowerCase() === named
      ? `Recipient ${request.recipient_name} (${P.shortHex(c.address)})` : `Recipient ${P.shortHex(c.address)}`;
    const delta = BigInt(c.delta);
    return h("tr", { class: `change ${delta < 0n ? "out" : "in"}` },
      h("th", { scope: "row" }, whose),
      h("td", { class: "delta" }, `${delta > 0n ? "+" : ""}${amount(c.delta, c)}`),
      h("td", { class: "balances" }, `${amount(c.before, c)} → ${amount(c.after, c)}`));
  });
  const chainId = request.tx ? Number(BigInt(request.tx.chain_id)) : 0;
  const native = networks[chainId] || { symbol: "ETH", decimals: 18 };
  const gas = [preview.gas_used != null ? `${preview.gas_used} gas` : null,
    preview.max_fee != null ? `fee at most ${P.formatUnits(preview.max_fee, native.decimals, 8)} ${native.symbol}` : null].filter(Boolean);
  return h("div", { class: "preview" },
    h("table", { class: "changes", "aria-label": "Balance changes" }, h("caption", {}, "Balance changes"), ...rows),
    gas.length ? h("p", { class: "gas" }, `Simulated: ${gas.join(", ")}`) : null);
}

const SEVERITY_LABELS = { danger: "Danger", warning: "Warning", info: "Note" };

// The card's warnings, right after its balance changes, coloured by severity; a danger one carries the checkbox
// that acknowledges it. Kept apart from the facts: other parts of the card render around it.
function approvalWarnings(request) {
  const warnings = request.warnings || [];
  if (!warnings.length) return null;
  return h("ul", { class: "warnings", "aria-label": "Warnings" }, ...warnings.map((w) => {
    const severity = SEVERITY_LABELS[w.severity] ? w.severity : "danger";
    return h("li", { class: `caution ${severity}`, "data-code": w.code, role: severity === "danger" ? "alert" : null },
      h("strong", { class: "severity" }, `${SEVERITY_LABELS[severity]}: `),
      h("span", { class: "message" }, w.message),
      severity === "danger" ? h("label", { class: "ack" },
        h("input", { type: "checkbox", class: "ack-box", "data-code": w.code, onchange: (e) => gateApprove(e.target.closest(".approval")) }),
        " I understand the risk and still want to approve") : null);
  }));
}

// Approve is enabled only while every danger checkbox of the card is ticked (and nothing is busy).
// The boxes live in the DOM only: a tick re-checks the button at once, without a render.
function gateApprove(node) {
  if (!node) return;
  const approve = node.querySelector(".approve");
  const busy = node.dataset.busy === "1" || node.dataset.status !== "pending";
  const unacknowledged = [...node.querySelectorAll("input.ack-box")].some((box) => !box.checked);
  approve.disabled = busy || unacknowledged;
}

function updateApproval(node, approval, ui, network, txs) {
  const pending = approval.status === "pending";
  node.dataset.status = approval.status;
  node.classList.toggle("done", !pending);
  const title = node.querySelector(".title");
  title.textContent = pending ? title.dataset.pending : title.dataset.done;
  const busy = pending && Boolean(ui.busy);
  for (const button of node.querySelectorAll(".actions button, form button")) button.disabled = busy;
  for (const box of node.querySelectorAll("input.ack-box")) box.disabled = !pending || busy;
  node.dataset.busy = busy ? "1" : "";
  gateApprove(node);
  show(node.querySelector(".actions"), pending && !ui.mode);
  show(node.querySelector(".reject-form"), pending && ui.mode === "reject");
  const editForm = node.querySelector(".edit-form");
  if (editForm) show(editForm, pending && ui.mode === "edit");
  if (pending && ui.mode) {
    const input = node.querySelector(ui.mode === "reject" ? ".reason" : ".amount-input");
    if (input && document.activeElement !== input && !input.dataset.focused) { input.focus(); input.dataset.focused = "1"; }
  } else {
    for (const input of node.querySelectorAll("input")) delete input.dataset.focused;
  }
  const busyNode = node.querySelector(".busy");
  busyNode.textContent = busy ? ui.busy : "";
  show(busyNode, busy);
  const errorNode = node.querySelector(".approval-error");
  errorNode.textContent = pending && ui.error ? ui.error : "";
  show(errorNode, Boolean(pending && ui.error));
  const outcome = node.querySelector(".outcome");
  outcome.textContent = pending ? "" : outcomeText(approval);
  show(outcome, !pending);
  updateCountdown(node, approval);

  const list = node.querySelector(".approval-txs");
  list.replaceChildren(...approval.action_requests.map((request, i) => {
    const tx = txs[i];
    const decision = decisionFor(approval, request.call_id);
    if (!tx || !decision || decision.type !== "approve") return null;
    const line = h("div", { class: "tx" });
    renderTx(line, tx, network);
    return line;
  }).filter(Boolean));
}

function outcomeText(approval) {
  if (approval.status === "expired") return "Expired — nothing was done.";
  if (approval.by === "superseded") return "Set aside — you sent a new message instead; nothing was done.";
  const decisions = approval.decisions || [];
  const [first] = decisions;
  if (!first) return "Decided.";
  if (first.type === "approve") return first.tx_hash ? "Approved — signed in your wallet." : "Approved.";
  if (first.type === "edit") {
    const amount = first.edited_action && first.edited_action.args && first.edited_action.args.amount;
    return amount ? `Edited — new amount ${amount}; see the new request below.` : "Edited — see the new request below.";
  }
  return first.message ? `Rejected: ${first.message}` : "Rejected.";
}

function updateCountdown(node, approval) {
  const countdown = node.querySelector(".countdown");
  if (approval.status !== "pending") {
    countdown.textContent = approval.status === "expired" ? "expired" : "";
    return;
  }
  const left = Math.max(0, Math.floor((Date.parse(approval.expires_at) - Date.now()) / 1000));
  countdown.textContent = left > 0 ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left` : "expired";
  const approve = node.querySelector(".approve");
  if (approve && left <= 0) approve.disabled = true;
}

setInterval(() => {
  for (const [key, entry] of nodes) {
    if (!key.startsWith("approval:")) continue;
    const approval = app.state.approvals[key.slice("approval:".length)];
    if (approval && approval.status === "pending") updateCountdown(entry.node, approval);
  }
}, 1000);
