// One bot's backup page: status, "back up now", the recovery key (behind an explicit reveal),
// enrolling a passkey and restoring with one. Data is rendered with textContent only.
const script = `
const bot = document.body.dataset.bot;
const api = "/api/bots/" + bot + "/backup";
const $ = (id) => document.getElementById(id);
const fmt = (ms) => ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "never";
const say = (t) => { $("message").textContent = t; };
async function post(path) {
  const res = await fetch(api + path, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok || body.error) throw new Error(body.message || body.error || ("HTTP " + res.status));
  return body;
}
function render(s) {
  $("to").textContent = s.to;
  $("interval").textContent = "every " + s.intervalMinutes + " min";
  $("last-backup").textContent = s.running ? "running…" : fmt(s.lastAt);
  $("last-sequence").textContent = s.lastSequence === undefined ? "-" : String(s.lastSequence);
  $("last-error").textContent = s.lastError ? s.lastError + " (" + fmt(s.lastErrorAt) + ")" : "none";
  $("next").textContent = s.nextAt ? fmt(s.nextAt) : "when the bot is connected";
  $("passkeys").textContent = String(s.passkeys);
  $("has-key").textContent = s.hasKey ? "yes" : "not yet (made by the first backup or passkey)";
  const e = s.enrolment, r = s.restore;
  $("enrol-status").textContent = e ? e.state + (e.error ? ": " + e.error : "") : "-";
  $("enrol-status").dataset.state = e ? e.state : "";
  $("restore-status").textContent = r ? r.state + (r.error ? ": " + r.error : "") + (r.state === "done" ? " (" + r.imported + " records from backup #" + r.sequence + ")" : "") : "-";
  $("restore-status").dataset.state = r ? r.state : "";
  document.body.dataset.loaded = "true";
}
async function refresh() {
  const res = await fetch(api);
  if (res.ok) render(await res.json());
}
function action(id, run) {
  $(id).addEventListener("click", () => {
    say("");
    run().catch((err) => say("Failed: " + err.message)).finally(refresh);
  });
}
action("backup-now", async () => { await post("/run"); say("Backed up."); });
action("reveal", async () => {
  const { recoveryKey } = await post("/recovery-key");
  $("recovery-key").textContent = recoveryKey;
  $("recovery-key-box").hidden = false;
});
action("enrol", async () => {
  const { url } = await post("/passkey");
  say("Opening the passkey page…");
  location.assign(url);
});
action("restore", async () => {
  if (!confirm("Restore the newest backup into this bot? Its backed-up history is replaced by the backup's.")) return;
  const { url } = await post("/restore");
  say("Opening the passkey page…");
  location.assign(url);
});
refresh();
setInterval(refresh, 2000);
`;

/** The backup page of bot `name` (a validated bot name: a-z, 0-9 and '-'). */
export function backupPage(name: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Backups of ${name} · Pairwise bot host</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
dt{color:#555}button{margin:.3rem .5rem .3rem 0}code{word-break:break-all}#message{color:#a40}</style></head>
<body data-bot="${name}"><p><a href="/">← all bots</a></p><h1>Backups of ${name}</h1>
<p>End-to-end encrypted: only the recovery key or an enrolled passkey opens them.</p>
<dl>
<dt>destination</dt><dd id="to"></dd><dt>schedule</dt><dd id="interval"></dd>
<dt>last backup</dt><dd id="last-backup"></dd><dt>last sequence</dt><dd id="last-sequence"></dd>
<dt>last error</dt><dd id="last-error"></dd><dt>next backup</dt><dd id="next"></dd>
<dt>backup key</dt><dd id="has-key"></dd><dt>passkeys</dt><dd id="passkeys"></dd>
<dt>passkey enrolment</dt><dd id="enrol-status"></dd><dt>restore</dt><dd id="restore-status"></dd>
</dl>
<p role="status" id="message"></p>
<button id="backup-now" type="button">Back up now</button>
<button id="enrol" type="button">Enroll a passkey</button>
<button id="restore" type="button">Restore with a passkey</button>
<button id="reveal" type="button">Reveal the recovery key</button>
<div id="recovery-key-box" hidden><p>Recovery key (write it down and keep it offline; it opens every backup of this bot):</p>
<code id="recovery-key"></code></div>
<script>${script}</script></body></html>`;
}
