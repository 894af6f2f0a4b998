// The contacts panel: the signed-in user's address book (GET/PUT/DELETE /api/contacts). A contact's
// label can be typed instead of its address ("send 1 ETH to alice"), the card names it, and the
// recipient checks count it as an address the user chose (docs/safety.md). Labels and addresses
// reach the DOM as text only. Imports only page.js.

import { api, app, el, h, show } from "./page.js";

export { loadContacts, wireContacts };

/** Contacts as the server listed them last: [{label, address, created_at}]. */
let contacts = [];

function token() {
  return app.session && app.session.token;
}

function setNote(text) {
  el.contactNote.textContent = text;
  show(el.contactNote, Boolean(text));
}

function renderContacts() {
  el.contactList.replaceChildren(...contacts.map((contact) => h("li", { class: "contact", "data-label": contact.label },
    h("span", { class: "contact-label", text: contact.label }),
    h("span", { class: "contact-address mono", title: contact.address, text: `${contact.address.slice(0, 6)}…${contact.address.slice(-4)}` }),
    h("button", { type: "button", class: "link", "aria-label": `Remove ${contact.label}`, onclick: () => removeContact(contact.label) }, "Remove"),
  )));
  show(el.contactEmpty, contacts.length === 0);
}

async function loadContacts() {
  if (!token()) return;
  try {
    contacts = (await api("/api/contacts", { token: token() })).contacts;
    setNote("");
  } catch (err) {
    setNote(err.message);
  }
  renderContacts();
}

async function addContact(label, address) {
  try {
    await api(`/api/contacts/${encodeURIComponent(label)}`, { method: "PUT", body: { address }, token: token() });
  } catch (err) {
    setNote(err.message); // the server says what is wrong: a bad checksum, a malformed label
    return false;
  }
  await loadContacts();
  return true;
}

async function removeContact(label) {
  try {
    await api(`/api/contacts/${encodeURIComponent(label)}`, { method: "DELETE", token: token() });
  } catch (err) {
    setNote(err.message);
  }
  await loadContacts();
}

function wireContacts() {
  el.contactForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const label = el.contactLabel.value.trim();
    const address = el.contactAddress.value.trim();
    if (!label || !address) return setNote("Give a label and an 0x address.");
    if (await addContact(label, address)) {
      el.contactLabel.value = "";
      el.contactAddress.value = "";
    }
  });
}
