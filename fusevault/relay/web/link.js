// A fusevault share link, opened in a browser: the same steps as `fusevault link get`
// (fusevault/links/capability.py and content.py), with WebCrypto.
//
// The link is <server>/l/<item>#r1.<base64url(link secret || owner's Ed25519 verify key)>.
// Browsers never send the part after "#": this script reads it from location.hash, derives
// the read key (shown to the server, which compares its SHA-256) and the content key (never
// sent anywhere), fetches the latest version, checks the owner's signature, opens the sealed
// manifest and then the blocks, and checks each file's size and SHA-256 before handing it over.
// Plain JavaScript, no build step, nothing from elsewhere: the page's Content-Security-Policy
// allows only this server's own scripts and requests.
"use strict";

(() => {
  const KEY = 32;
  const KINDS = ["file", "dir", "symlink"];
  const encoder = new TextEncoder();
  const $ = (id) => document.getElementById(id);

  class LinkError extends Error {}

  // --- bytes

  function concat(parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function fromBase64(text) {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }

  function fromBase64url(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new LinkError("bad base64url");
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
    return fromBase64(padded);
  }

  function base64url(bytes) {
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function hex(bytes) {
    return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // fusevault/crypto/aead.py ad(): b"fusevault/1:" + label + b"\0", then each part as a
  // little-endian uint32 length and its bytes; str is UTF-8, int a little-endian int64.
  function ad(label, ...parts) {
    const out = [encoder.encode("fusevault/1:" + label + "\0")];
    for (let part of parts) {
      if (typeof part === "string") {
        part = encoder.encode(part);
      } else if (typeof part === "number") {
        if (!Number.isSafeInteger(part)) throw new LinkError("not an integer");
        const packed = new Uint8Array(8);
        new DataView(packed.buffer).setBigInt64(0, BigInt(part), true);
        part = packed;
      }
      const length = new Uint8Array(4);
      new DataView(length.buffer).setUint32(0, part.length, true);
      out.push(length, part);
    }
    return concat(out);
  }

  // Python's json.dumps(value, sort_keys=True, separators=(",", ":")), ensure_ascii on:
  // what capability.py signs.  Only what a version's public and protected parts hold.
  function canonical(value) {
    if (value === null || value === true || value === false) return String(value);
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value)) throw new LinkError("not an integer");
      return String(value);
    }
    if (typeof value === "string") {
      return JSON.stringify(value).replace(/[\u007f-\uffff]/g,
        (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
    }
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (typeof value === "object") {
      const keys = Object.keys(value).sort();
      return "{" + keys.map((k) => canonical(k) + ":" + canonical(value[k])).join(",") + "}";
    }
    throw new LinkError("not JSON");
  }

  // --- keys and sealed values

  async function derive(secret, purpose) {
    const base = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
    // Python's HKDF(salt=None) uses HashLen zero bytes, which HMAC treats as an empty salt.
    const params = { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0),
                     info: encoder.encode("fusevault link " + purpose) };
    return new Uint8Array(await crypto.subtle.deriveBits(params, base, KEY * 8));
  }

  async function aesKey(raw) {
    return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
  }

  // aead.unseal: nonce(12) || ciphertext || tag(16)
  async function unseal(key, sealed, associated) {
    if (sealed.length < 28) throw new LinkError("truncated");
    const params = { name: "AES-GCM", iv: sealed.subarray(0, 12), additionalData: associated };
    return new Uint8Array(await crypto.subtle.decrypt(params, key, sealed.subarray(12)));
  }

  async function sha256(bytes) {
    return hex(await crypto.subtle.digest("SHA-256", bytes));
  }

  // capability.open_share: the owner's signature first, then the sealed manifest.
  async function openShare(link, version) {
    const protectedPart = version.protected;
    const seq = protectedPart.seq;
    const unsigned = Object.fromEntries(Object.entries(protectedPart).filter(([k]) => k !== "signature"));
    const signed = ad("link version", link.item, encoder.encode(canonical(version.public)),
      encoder.encode(canonical(unsigned)),
      new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(version.private_enc))));
    let verifyKey;
    try {
      verifyKey = await crypto.subtle.importKey("raw", link.verify, { name: "Ed25519" }, false, ["verify"]);
    } catch (err) {
      if (err.name !== "NotSupportedError") throw new LinkError("bad verify key");
      throw new LinkError("This browser cannot check the owner's signature (it has no Ed25519 in " +
        "WebCrypto; Chromium 137 or later, Firefox 129 or later and Safari 17 or later do). " +
        "Nothing was downloaded.");
    }
    const good = await crypto.subtle.verify({ name: "Ed25519" }, verifyKey,
      fromBase64(protectedPart.signature), signed);
    if (!good) throw new LinkError("bad signature");
    const plain = await unseal(await aesKey(link.contentKey), fromBase64(version.private_enc),
      ad("link private", link.item, seq));
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
  }

  // content.entries: known kinds, relative names under one top name, no "." or "..";
  // the top is one name (no "/"), as `link get` refuses.
  function checkedEntries(manifest) {
    const top = manifest.name;
    if (typeof top !== "string" || !Array.isArray(manifest.entries)) throw new LinkError("malformed");
    if (top === "" || top === "." || top === ".." || top.includes("/") || top.includes("\0")) {
      throw new LinkError("unsafe name");
    }
    if (fromBase64(manifest.key).length !== KEY) throw new LinkError("malformed");
    for (const entry of manifest.entries) {
      const path = entry.path;
      if (typeof path !== "string" || !KINDS.includes(entry.type)) throw new LinkError("malformed");
      if (path.split("/").some((part) => part === "" || part === "." || part === "..")) {
        throw new LinkError("unsafe name");
      }
      if (path !== top && !path.startsWith(top + "/")) throw new LinkError("outside");
      if (entry.type === "file" && (!Array.isArray(entry.blocks) || !Number.isSafeInteger(entry.size) ||
          typeof entry.sha256 !== "string")) {
        throw new LinkError("malformed");
      }
    }
    return manifest.entries;
  }

  // --- the link store's HTTP API (fusevault/relay/item_routes.py)

  async function call(link, path) {
    const response = await fetch(link.api + path, {
      headers: { Authorization: "Capability read " + base64url(link.readKey) },
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
    if (response.ok) return response;
    let said = "";
    try {
      said = (await response.json()).error || "";
    } catch (err) {
      said = "";
    }
    if (response.status === 410) throw new LinkError("This link has expired.");
    if (response.status === 404) {
      throw new LinkError("There is nothing at this link: " + (said || "it was revoked or never existed") + ".");
    }
    if (response.status === 401 || response.status === 403) {
      throw new LinkError("This link's key does not open it: the link is incomplete or was revoked.");
    }
    throw new LinkError("The server answered " + response.status + (said ? ": " + said : "") + ".");
  }

  function parseLink() {
    const path = location.pathname;
    const at = path.lastIndexOf("/l/");
    const item = decodeURIComponent(path.slice(at + 3));
    const fragment = location.hash.replace(/^#/, "");
    const dot = fragment.indexOf(".");
    const kind = fragment.slice(0, dot);
    if (kind === "a1") {
      throw new LinkError("This is a drop box link: files are put into it with " +
        "fusevault link push FILE 'LINK'; it cannot be opened in a browser.");
    }
    let raw = null;
    try {
      raw = dot > 0 && kind === "r1" ? fromBase64url(fragment.slice(dot + 1)) : null;
    } catch (err) {
      raw = null;
    }
    if (at < 0 || !item || raw === null || raw.length !== 2 * KEY) {
      throw new LinkError("This link is incomplete: its key (the part after \"#\") is missing or damaged.");
    }
    return { api: path.slice(0, at), item, secret: raw.subarray(0, KEY), verify: raw.subarray(KEY) };
  }

  // content.contents + content.verified: every block in its place, then the whole file's size and hash.
  async function fetchFile(link, manifest, index) {
    const entry = manifest.entries[index];
    const dek = await aesKey(fromBase64(manifest.key));
    const parts = [];
    for (let n = 0; n < entry.blocks.length; n++) {
      const response = await call(link, "/blocks/" + encodeURIComponent(entry.blocks[n]));
      const sealed = new Uint8Array(await response.arrayBuffer());
      try {
        parts.push(await unseal(dek, sealed, ad("link block", link.item, index, n)));
      } catch (err) {
        throw new LinkError("A block of " + entry.path + " was changed or moved on the server: " +
          "nothing was downloaded.");
      }
    }
    const data = concat(parts);
    const digest = await sha256(data);
    if (data.length !== entry.size || digest !== entry.sha256) {
      throw new LinkError(entry.path + " did not arrive intact: nothing was downloaded.");
    }
    return { data, digest };
  }

  // --- the page

  function baseName(path) {
    return path.slice(path.lastIndexOf("/") + 1);
  }

  function size(bytes) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let n = bytes;
    let unit = 0;
    while (n >= 1024 && unit < units.length - 1) {
      n /= 1024;
      unit++;
    }
    return (unit ? n.toFixed(1) : String(n)) + " " + units[unit];
  }

  function fail(message) {
    $("status").hidden = true;
    $("error").hidden = false;
    $("error").textContent = message;
    document.body.dataset.state = "error";
  }

  // The decrypted bytes become a Blob and a link with the file's name; clicking it saves the file.
  function offer(row, entry, file) {
    const url = URL.createObjectURL(new Blob([file.data], { type: "application/octet-stream" }));
    const anchor = document.createElement("a");
    anchor.href = url;
    anchor.download = baseName(entry.path);
    anchor.textContent = "Save again";
    anchor.className = "saved";
    row.dataset.sha256 = file.digest;
    row.dataset.state = "done";
    return anchor;
  }

  async function download(link, manifest, index, row, cell) {
    const entry = manifest.entries[index];
    cell.textContent = "Decrypting\u2026";
    row.dataset.state = "loading";
    try {
      const anchor = offer(row, entry, await fetchFile(link, manifest, index));
      cell.replaceChildren(anchor);
      anchor.click();
    } catch (err) {
      row.dataset.state = "error";
      cell.textContent = "failed";
      fail(err instanceof LinkError ? err.message : "This file could not be decrypted: nothing was downloaded.");
    }
  }

  function listing(link, manifest, entries) {
    const top = manifest.name;
    $("title").textContent = top;
    const body = $("entries");
    entries.forEach((entry, index) => {
      if (entry.path === top && entry.type === "dir") return;
      const row = document.createElement("tr");
      row.dataset.path = entry.path;
      const name = document.createElement("td");
      name.className = "name";
      name.textContent = entry.path.slice(top.length + 1) + (entry.type === "dir" ? "/" : "") +
        (entry.type === "symlink" ? " \u2192 " + String(entry.target) : "");
      const length = document.createElement("td");
      length.className = "size";
      length.textContent = entry.type === "file" ? size(entry.size) : "";
      const action = document.createElement("td");
      if (entry.type === "file") {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Download";
        button.addEventListener("click", () => download(link, manifest, index, row, action));
        action.append(button);
      }
      row.append(name, length, action);
      body.append(row);
    });
    $("listing").hidden = false;
  }

  async function open() {
    let link;
    try {
      link = parseLink();
      link.readKey = await derive(link.secret, "read key");
      link.contentKey = await derive(link.secret, "content key");
    } catch (err) {
      fail(err instanceof LinkError ? err.message : "This browser cannot open fusevault links (no WebCrypto).");
      return;
    }
    let manifest, entries;
    try {
      const version = await (await call(link, "/items/" + encodeURIComponent(link.item) +
        "/versions/latest")).json();
      try {
        manifest = await openShare(link, version);
        entries = checkedEntries(manifest);
      } catch (err) {
        if (err instanceof LinkError && err.message.startsWith("This browser")) throw err;
        throw new LinkError("This link's content on the server is not what its owner published " +
          "(changed or damaged), or its key is wrong: nothing was downloaded.");
      }
    } catch (err) {
      fail(err instanceof LinkError ? err.message : "The server could not be reached: " + err.message);
      return;
    }
    if (entries.length === 1 && entries[0].type === "file") {
      // One file: it downloads at once under its name.
      $("title").textContent = manifest.name;
      $("status").textContent = "Decrypting " + manifest.name + " (" + size(entries[0].size) + ")\u2026";
      const table = $("listing");
      const row = document.createElement("tr");
      row.dataset.path = entries[0].path;
      const cell = document.createElement("td");
      row.append(cell);
      $("entries").append(row);
      await download(link, manifest, 0, row, cell);
      if (row.dataset.state === "done") {
        $("status").textContent = manifest.name + " (" + size(entries[0].size) + ") is decrypted and saved.";
        table.hidden = false;
        document.body.dataset.state = "done";
      }
      return;
    }
    $("status").textContent = "A folder: choose the files to download.";
    listing(link, manifest, entries);
    document.body.dataset.state = "listing";
  }

  open();
})();
