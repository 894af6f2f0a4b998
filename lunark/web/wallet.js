// The wallet: network switching, asked of the wallet (adding the network when it does not know
// it) and explained when it refuses, and the names of the networks the page has seen. The
// provider's own events (chain and account changes) are followed by session.js.

import * as P from "./lib/protocol.js";
import { app, describeError } from "./page.js";

export { networkLabel, networkName, switchWallet, walletRefusal };

/** Ask the wallet to move to a network; add it first when the wallet does not know it (4902). */
async function switchWallet(network) {
  const chainId = P.toHexChainId(network.chain_id);
  try {
    await app.provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (err) {
    if (!err || err.code !== P.UNRECOGNIZED_CHAIN) throw err;
    try {
      await app.provider.request({ method: "wallet_addEthereumChain", params: [P.toAddEthereumChain(network)] });
    } catch (addErr) {
      // Keep the wallet's code (4001 stays a rejection) and remember which question it refused.
      throw Object.assign(new Error(describeError(addErr)), { code: addErr && addErr.code, adding: true });
    }
  }
}

/** A network's name for people when the page has seen it, else `unknown` (its chain id). */
function networkName(chainId, unknown = `chain ${chainId}`) {
  const known = app.state.networks[chainId];
  return known ? known.display_name || known.name : unknown;
}

/** The name and the chain id, for sentences that must not be ambiguous. */
function networkLabel(chainId) {
  return app.state.networks[chainId] ? `${networkName(chainId)} (chain ${chainId})` : `chain ${chainId}`;
}

/**
 * What the page says when the wallet did not move to `network`. The chat's network changes on
 * approval whatever the wallet does, so say where each one is rather than let them drift apart.
 */
function walletRefusal(err, network) {
  const name = network.display_name || network.name || `chain ${network.chain_id}`;
  const asked = err && err.adding ? `did not add ${name}` : `did not switch to ${name}`;
  const why = err && err.code === P.USER_REJECTED
    ? "you rejected the request in your wallet."
    : describeError(err).replace(/([^.!?])$/, "$1.");
  const parts = [`Your wallet ${asked}: ${why}`, `It is still on ${networkLabel(app.walletChainId)}.`];
  if (app.state.network && app.state.network.chain_id === network.chain_id) {
    parts.push(`This chat is on ${name}: balances are read there, and approving a transfer will ask your wallet to switch again.`);
  }
  return parts.join(" ");
}
