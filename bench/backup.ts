// npm run bench -- backup
// 1 GiB of generated history backed up to `fs` and restored (in a plain `node` child process, so
// its peak RSS is the backup's own), beside two floors measured in the same run on the same
// machine: `openssl speed -evp aes-256-gcm` on one core, and `age` encrypting the same bytes.
// Two diagnostics follow, after peak RSS is read: the backup into a provider that discards the
// ciphertext (the pipeline without the disk), and the disk's floor (the same number of bytes
// through the fs provider with no framing or crypto), which bounds what any backup to `fs` can do
// on this machine.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { encodeRecords } from "@pairwise/backup";
import { emitResult, line, nowMs, round } from "./harness.ts";

const TOTAL = Number(process.env.BENCH_BACKUP_BYTES ?? 1024 ** 3);
const VALUE = 4096;
const base = mkdtempSync(join(tmpdir(), "pairwise-bench-backup-"));

/**
 * The generated history, the same in every process: message records of 4 KiB values cut from a
 * 1 MiB AES-CTR keystream (incompressible, deterministic), about TOTAL bytes once framed.
 */
const GENERATOR = `
import { createCipheriv } from "node:crypto";
const pool = createCipheriv("aes-256-ctr", Buffer.alloc(32), Buffer.alloc(16)).update(Buffer.alloc((1 << 20) + ${String(VALUE)}));
export function* history(total) {
  let bytes = 0;
  for (let i = 0; bytes < total; i++) {
    const key = "msg|chat-" + (i % 50) + "|" + String(i).padStart(16, "0") + "|m" + i;
    const value = pool.subarray((i * 4099) % (1 << 20), ((i * 4099) % (1 << 20)) + ${String(VALUE)});
    bytes += value.length + key.length + 8 + 3;
    yield { table: "app", key, value };
  }
}`;

const WORKER = `
import { createCipheriv } from "node:crypto";
import { createBackup, createKeyring, recoveryKeyOf, restoreBackup } from "@pairwise/backup";
import { createFsProvider } from "@pairwise/backup/fs";
${GENERATOR.replace('import { createCipheriv } from "node:crypto";', "")}
const provider = createFsProvider({ dir: process.argv[1] });
const keyring = createKeyring();
let t = performance.now();
const manifest = await createBackup({ provider, keyring, records: history(${String(TOTAL)}), sequence: 1 });
const backupMs = performance.now() - t;
let restored = 0, records = 0;
t = performance.now();
await restoreBackup({ provider, unlock: { recoveryKey: recoveryKeyOf(keyring) }, sink: {
  put(r) { restored += r.value.length; records++; }, commit() {}, abort() {},
} });
const restoreMs = performance.now() - t;
if (records !== manifest.records) throw new Error("restore lost records");
const maxRssKb = process.resourceUsage().maxRSS;
// The same backup into a provider that discards the ciphertext: what the pipeline does without
// the disk (a diagnostic; the figures above are the ones that count).
const discard = { name: "discard", maxObjectBytes: Number.MAX_SAFE_INTEGER,
  async put(_name, body) { for await (const _ of body); }, async get() { throw new Error("none"); },
  async list() { return []; }, async delete() {} };
t = performance.now();
await createBackup({ provider: discard, keyring, records: history(${String(TOTAL)}), sequence: 2 });
const discardMs = performance.now() - t;
// The disk's own floor: as many bytes as the backup stored, written through the same provider
// (temporary file, fsync, rename, directory fsync) in parts of the same size, two in flight, with
// no framing or encryption (a diagnostic). It runs last, after the backup's files are deleted, so
// it gets the page cache the backup left and never the other way round.
const { rm } = await import("node:fs/promises");
await rm(process.argv[1], { recursive: true, force: true });
const block = createCipheriv("aes-256-ctr", Buffer.alloc(32, 1), Buffer.alloc(16)).update(Buffer.alloc(1 << 20));
const PART = 64 * 1024 * 1024;
const floorProvider = createFsProvider({ dir: process.argv[1] + "-disk" });
function* bytes(n) { for (let left = n; left > 0; left -= block.length) yield block.subarray(0, Math.min(left, block.length)); }
t = performance.now();
const puts = new Set();
for (let at = 0, i = 0; at < manifest.ciphertextBytes; at += PART, i++) {
  const put = floorProvider.put("disk/part-" + i, bytes(Math.min(PART, manifest.ciphertextBytes - at)));
  puts.add(put); put.then(() => puts.delete(put));
  if (puts.size >= 2) await Promise.race(puts);
}
await Promise.all(puts);
const diskMs = performance.now() - t;
console.log(JSON.stringify({ plaintextBytes: manifest.plaintextBytes, ciphertextBytes: manifest.ciphertextBytes,
  records, backupMs, restoreMs, discardMs, diskMs, maxRssKb }));
`;

function worker(): Promise<{
  plaintextBytes: number;
  ciphertextBytes: number;
  records: number;
  backupMs: number;
  restoreMs: number;
  discardMs: number;
  diskMs: number;
  maxRssKb: number;
}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", WORKER, join(base, "fs")], {
      cwd: join(import.meta.dirname, "../packages/backup"),
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`backup worker exited ${String(code)}`));
      else
        resolve(
          JSON.parse(out.trim().split("\n").pop() ?? "{}") as Awaited<ReturnType<typeof worker>>,
        );
    });
  });
}

/** OpenSSL's single-core AES-256-GCM throughput on 64 KiB blocks (the blob chunk size), MB/s. */
function opensslMbPerSecond(): number {
  const run = spawnSync(
    "openssl",
    ["speed", "-evp", "aes-256-gcm", "-seconds", "3", "-bytes", "65536"],
    {
      encoding: "utf8",
    },
  );
  const m = /^aes-256-gcm\s+([\d.]+)k\s*$/im.exec(run.stdout);
  if (!m?.[1]) throw new Error(`cannot read openssl speed output: ${run.stderr}`);
  return (Number(m[1]) * 1000) / 1e6;
}

/** `age` (Debian's) encrypting the same framed bytes to an X25519 recipient, MB/s. */
async function ageMbPerSecond(): Promise<{ mbs: number; bytes: number }> {
  const keyFile = join(base, "age-key.txt");
  const gen = spawnSync("age-keygen", ["-o", keyFile], { encoding: "utf8" });
  if (gen.status !== 0) throw new Error("age-keygen failed (apt-get install age)");
  const recipient = /public key: (age1\w+)/.exec(readFileSync(keyFile, "utf8"))?.[1];
  if (!recipient) throw new Error("no age recipient");
  const { history } = (await import(`data:text/javascript,${encodeURIComponent(GENERATOR)}`)) as {
    history: (total: number) => Iterable<{ table: string; key: string; value: Uint8Array }>;
  };
  const age = spawn("age", ["-r", recipient, "-o", "/dev/null"], {
    stdio: ["pipe", "ignore", "inherit"],
  });
  const done = new Promise<number | null>((resolve) => age.on("close", resolve));
  const stats = { records: 0, bytes: 0 };
  const start = nowMs();
  await pipeline(Readable.from(encodeRecords(history(TOTAL), stats)), age.stdin);
  if ((await done) !== 0) throw new Error("age failed");
  return { mbs: stats.bytes / 1e6 / ((nowMs() - start) / 1000), bytes: stats.bytes };
}

try {
  console.log(`generating ${String(round(TOTAL / 1024 ** 3))} GiB of history`);
  const w = await worker();
  const backupMbs = w.plaintextBytes / 1e6 / (w.backupMs / 1000);
  const restoreMbs = w.plaintextBytes / 1e6 / (w.restoreMs / 1000);
  line("records", w.records);
  line("plaintext", round(w.plaintextBytes / 1e6), "MB");
  line("ciphertext", round(w.ciphertextBytes / 1e6), "MB");
  line("backup to fs", round(backupMbs), "MB/s");
  line("restore from fs (verified)", round(restoreMbs), "MB/s");
  line(
    "backup, ciphertext discarded (no disk; diagnostic)",
    round(w.plaintextBytes / 1e6 / (w.discardMs / 1000)),
    "MB/s",
  );
  const diskMbs = w.ciphertextBytes / 1e6 / (w.diskMs / 1000);
  line("disk floor: same bytes, fs provider, no crypto", round(diskMbs), "MB/s");
  line("backup / disk floor", round(backupMbs / diskMbs));
  line("peak RSS of the backup process", round(w.maxRssKb / 1024), "MB");
  const openssl = opensslMbPerSecond();
  line("openssl speed aes-256-gcm (1 core)", round(openssl), "MB/s");
  const age = await ageMbPerSecond();
  if (age.bytes !== w.plaintextBytes) throw new Error("age saw different bytes");
  line("age -r (same bytes)", round(age.mbs), "MB/s");
  emitResult({
    bench: "backup",
    backup_mb_s: round(backupMbs),
    restore_mb_s: round(restoreMbs),
    openssl_mb_s: round(openssl),
    age_mb_s: round(age.mbs),
    ratio_openssl: round(backupMbs / openssl),
    ratio_age: round(backupMbs / age.mbs),
    peak_rss_mb: round(w.maxRssKb / 1024),
  });
} finally {
  rmSync(base, { recursive: true, force: true });
}
