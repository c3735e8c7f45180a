/**
 * The enrol/unlock page of `passkey-web`: plain HTML and a small script (no bundler), served by
 * the process that holds the backup. It asks the authenticator for a passkey with
 * `userVerification: "required"` and the PRF extension, and posts the WebAuthn response and the
 * PRF output back to that process.
 */
export function passkeyPage(basePath: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Pairwise backup passkey</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<h1>Pairwise backup passkey</h1>
<p id="what">Loading…</p>
<button id="go" type="button">Continue with passkey</button>
<p id="status" role="status"></p>
<script>
const base = ${JSON.stringify(basePath)};
const session = new URLSearchParams(location.search).get("session");
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const unb64 = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
const post = async (path, body) => {
  const res = await fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(json.error || "refused");
  return json;
};
const status = (t) => { document.getElementById("status").textContent = t; };

async function assertWithPrf(opts) {
  const evalByCredential = {};
  for (const c of opts.prf) evalByCredential[c.credentialId] = { first: unb64(c.salt) };
  const cred = await navigator.credentials.get({ publicKey: {
    challenge: unb64(opts.challenge),
    rpId: opts.rpId,
    timeout: opts.timeout,
    userVerification: "required",
    allowCredentials: opts.allowCredentials.map((c) => ({ type: "public-key", id: unb64(c.id) })),
    extensions: { prf: { evalByCredential } },
  } });
  const first = cred.getClientExtensionResults().prf?.results?.first;
  return {
    response: {
      id: cred.id, rawId: b64(cred.rawId), type: cred.type,
      response: {
        clientDataJSON: b64(cred.response.clientDataJSON),
        authenticatorData: b64(cred.response.authenticatorData),
        signature: b64(cred.response.signature),
        userHandle: cred.response.userHandle ? b64(cred.response.userHandle) : undefined,
      },
      clientExtensionResults: {},
      authenticatorAttachment: cred.authenticatorAttachment ?? undefined,
    },
    prfOutput: first ? b64(first) : null,
  };
}

async function run() {
  const s = await post("session", { session });
  if (s.mode === "enrol") {
    const o = s.registration;
    const cred = await navigator.credentials.create({ publicKey: {
      challenge: unb64(o.challenge),
      rp: o.rp,
      user: { id: unb64(o.user.id), name: o.user.name, displayName: o.user.displayName },
      pubKeyCredParams: o.pubKeyCredParams,
      timeout: o.timeout,
      attestation: o.attestation,
      authenticatorSelection: o.authenticatorSelection,
      excludeCredentials: [],
      extensions: { prf: {} },
    } });
    const registered = await post("enrol", { session, response: {
      id: cred.id, rawId: b64(cred.rawId), type: cred.type,
      response: {
        clientDataJSON: b64(cred.response.clientDataJSON),
        attestationObject: b64(cred.response.attestationObject),
        transports: cred.response.getTransports ? cred.response.getTransports() : [],
      },
      clientExtensionResults: {},
      authenticatorAttachment: cred.authenticatorAttachment ?? undefined,
    } });
    status("Passkey created; now confirm it once more to derive the backup key.");
    await post("prf", { session, ...(await assertWithPrf(registered.authentication)) });
  } else {
    await post("prf", { session, ...(await assertWithPrf(s.authentication)) });
  }
  status("Done. You can close this page.");
  document.body.dataset.done = "ok";
}

document.getElementById("what").textContent = "Use your passkey (fingerprint, face or device PIN) for your Pairwise backup.";
document.getElementById("go").addEventListener("click", () => {
  run().catch(async (err) => {
    status("Failed: " + (err && err.name ? err.name : "error"));
    document.body.dataset.done = "failed";
    try { await post("fail", { session, reason: String(err && err.name || "error") }); } catch {}
  });
});
</script>
</body>
</html>
`;
}
