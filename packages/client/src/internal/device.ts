import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  CoreError,
  DeviceCrypto,
  createAccountKey,
  createPrimaryDeviceIdentity,
  decodeContent,
  preKeysToUpload,
  decryptContent,
  openSqliteStore,
  signDeviceList,
  type ContentInit,
  type DeviceAddress,
  type KeyUpload,
  type KeyValueStore,
  type StateTransaction,
} from "@pairwise/core";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { HistorySyncNotificationSchema, Receipt_Kind } from "@pairwise/core/proto";
import type { Envelope, Push } from "@pairwise/core/relay-proto";
import {
  generateNoiseKeyPair,
  noise,
  noiseKeyPairFromPrivateKey,
  TransportError,
  type NoiseKeyPair,
} from "@pairwise/transport";
import { websocketConnector } from "@pairwise/transport/websocket";
import { ClientError, isTransient } from "./errors.ts";
import { applyGroupNotice, groupCrypto } from "./groups.ts";
import {
  GROUP_NOTICE_TYPE,
  isGroupNotice,
  parseGroupNotice,
  type GroupNotice,
} from "./group-notices.ts";
import { importHistory } from "./history-sync.ts";
import { answerRetry, requestRetry } from "./retry.ts";
import { applyReceipt, flushReceipts, queueDeliveryReceipt } from "./receipts.ts";
import { downloadDecrypted, receivedFilePath } from "./media.ts";
import { refreshContact, sendContent, sendFile, sendText, verifiedCache } from "./sender.ts";
import { findMessage, recordMessage, listMessages, type StoredMessage } from "./history.ts";
import { RelayConnection, expectResult } from "./relay-connection.ts";
import { parseRemoteAddress } from "./remote-address.ts";

/** `{ provider }` for a sender of another provider (its blobs are fetched through it), else `{}`. */
function remoteProvider(accountId: string): { provider?: string } {
  const remote = parseRemoteAddress(accountId);
  return remote ? { provider: remote.provider } : {};
}

/** Where the device talks to: the relay's URL and (once known) its pinned Noise key. */
export interface ServerInfo {
  url: string;
  publicKey?: Uint8Array;
}

/** Options of {@link PairwiseDevice.open}. */
export interface OpenDeviceOptions {
  /** The device's home directory (one directory is one device). */
  home: string;
  /** Request timeout in ms (default 15 s). */
  timeoutMs?: number;
  now?: () => number;
  /**
   * One device among many in a process (a bot host running hundreds): the device database keeps
   * smaller caches (see `lowMemory` of core's `openSqliteStore`).
   */
  lowMemory?: boolean;
  /**
   * Group commit of the device database, in ms (default 10): writes of many operations share
   * one commit, made at the latest this long after the first of them and always before any
   * frame leaves for the relay and before an inbound handler sees a message. `0` commits every
   * write before it returns, for a program that shows results right after writing (the CLI).
   */
  groupCommitMs?: number;
}

/** Events a device emits. */
export interface DeviceEvents {
  /**
   * A message was stored. The store commits in groups, so the event may come a few ms before
   * the message is durable; it is acknowledged to the relay only after, and an inbound handler
   * ({@link PairwiseDevice.setInboundHandler}) is the at-least-once way to act on it.
   */
  message: [StoredMessage];
  "decrypt-failed": [{ from: DeviceAddress; code: string }];
  "untrusted-device": [{ from: DeviceAddress }];
  "account-key-changed": [{ accountId: string }];
  connection: [{ state: "connected" | "disconnected" | "logged-out" }];
  warning: [{ kind: "primary-offline"; days: number }];
  /**
   * A group this account is in (or was just removed from) changed membership, as the relay
   * announced it; emitted once the local group record is stored (see {@link GroupNotice}).
   */
  group: [GroupNotice];
  /** A delivery or read receipt from another account for messages this account sent. */
  receipt: [
    { from: DeviceAddress; kind: "delivered" | "read"; messageIds: string[]; timestamp: number },
  ];
}

/**
 * Handles one stored incoming message before the device acknowledges it (see
 * {@link PairwiseDevice.setInboundHandler}). Resolve once the message's effects are stored.
 */
export type InboundHandler = (message: StoredMessage) => Promise<void>;

/**
 * Handles one stored group notice before the device acknowledges it (see
 * {@link PairwiseDevice.setGroupNoticeHandler}). Resolve once its effects are stored.
 */
export type GroupNoticeHandler = (notice: GroupNotice) => Promise<void>;

const INBOX = "inbox|";
const NOTICE_INBOX = "group-inbox|";
const noticeInboxKey = (seq: bigint, n: GroupNotice) =>
  `${NOTICE_INBOX}${seq.toString().padStart(20, "0")}|${n.groupId}|${String(n.revision)}`;
const inboxKey = (seq: bigint, id: string) => `${INBOX}${seq.toString().padStart(20, "0")}|${id}`;

type PendingJob = {
  /** Passing failures so far (see `runPending`); absent until the first. */
  attempts?: number;
} & (
  | {
      kind: "media";
      blobId: string;
      key: string;
      sha256: string;
      dest: string;
      /** The sender's provider when it is another one: the blob is fetched through it. */
      provider?: string;
      /** The stored message the file belongs to (absent in jobs stored by older versions). */
      messageId?: string;
    }
  | { kind: "history"; notification: string }
  | { kind: "sender-key"; account: string; device: number; message: string }
  | { kind: "retry"; account: string; device: number; messageId: string }
);

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

/** A pending job as stored (JSON). */
const jobBytes = (job: PendingJob) => new TextEncoder().encode(JSON.stringify(job));

function addPending(tx: StateTransaction, job: PendingJob): string {
  const key = `pending|${randomUUID()}`;
  tx.put({ table: "app", key, value: jobBytes(job) });
  return key;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Passing failures a pending job survives (each at a start or reconnection) before it is given up. */
const MAX_PENDING_ATTEMPTS = 8;
/**
 * How long the device database may hold batches before committing them as one group. A burst of
 * received messages then costs one commit, not one per message; everything is committed before
 * any frame leaves for the relay, acknowledgements included, so this only delays durability of
 * what nobody outside has seen yet.
 */
const GROUP_COMMIT_MS = 10;

const commitFailed = (cause: unknown) =>
  new ClientError("StorageFailure", "cannot commit the device's state", { cause });
/** Days without the primary after which a companion warns (it is logged out at 14). */
export const PRIMARY_WARNING_DAYS = 12;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Wire keys of a fresh key upload (registration and companion registration). */
export function wireDeviceKeys(upload: KeyUpload, signedDeviceIdentity: Uint8Array, name: string) {
  if (!upload.signedPreKey || !upload.lastResortKyberPreKey)
    throw new ClientError("InvalidArgument", "key upload lacks signed prekeys");
  return {
    registrationId: upload.registrationId,
    identityKey: upload.identityKey,
    signedDeviceIdentity,
    signedPrekey: upload.signedPreKey,
    lastResortKyberPrekey: upload.lastResortKyberPreKey,
    prekeys: upload.preKeys,
    kyberPrekeys: upload.kyberPreKeys,
    name,
    platform: `node-${process.platform}`,
  };
}

/**
 * One Pairwise device: its keys and state in `home/device.db`, its connection to the relay,
 * and the operations a messaging client needs. Messages are stored before they are
 * acknowledged to the server, in the same transaction as the session update.
 */
export class PairwiseDevice extends EventEmitter<DeviceEvents> {
  readonly crypto: DeviceCrypto;
  readonly store: KeyValueStore;
  private conn: RelayConnection | undefined;
  private readonly timeoutMs: number;
  /** The device clock (ms). */
  readonly now: () => number;
  /** The device's home directory (received files are saved under `files/`). */
  readonly home: string;
  private inbound: Promise<void> = Promise.resolve();
  private receiving = false;
  private acks: bigint[] = [];
  /** Which of the server's URLs (a cluster may list several) to try first. */
  private urlIndex = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private readonly pushListeners = new Set<(push: Push) => void>();
  /** Send delivery receipts for incoming messages (default true). */
  deliveryReceipts = true;
  private closing = false;
  private queueEmpty = false;
  private inboundHandler: InboundHandler | undefined;
  /** Inbox keys of messages this run stored or listed, by message id (for `markHandled`). */
  private readonly inboxKeys = new Map<string, string>();
  private groupNoticeHandler: GroupNoticeHandler | undefined;
  private lastMessageTimestamp = 0;

  private constructor(store: KeyValueStore, options: OpenDeviceOptions) {
    super();
    this.store = store;
    this.crypto = DeviceCrypto.open({ store, ...(options.now ? { now: options.now } : {}) });
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.home = options.home;
    this.now = options.now ?? Date.now;
  }

  /** Opens (creating if needed) the device in `home`. Throws `ClientError("StorageFailure")`. */
  static open(options: OpenDeviceOptions): PairwiseDevice {
    const groupCommitMs = options.groupCommitMs ?? GROUP_COMMIT_MS;
    try {
      mkdirSync(options.home, { recursive: true, mode: 0o700 });
      return new PairwiseDevice(
        openSqliteStore({
          path: join(options.home, "device.db"),
          ...(groupCommitMs > 0 ? { commitDelayMs: groupCommitMs } : {}),
          ...(options.lowMemory ? { lowMemory: true } : {}),
        }),
        options,
      );
    } catch (cause) {
      throw new ClientError(
        "StorageFailure",
        CoreError.is(cause, "DatabaseInUse")
          ? "the device's home directory is in use by another process"
          : "cannot open the device's home directory",
        { cause },
      );
    }
  }

  /**
   * Makes everything this device has stored durable (its database commits in groups of a few
   * ms). Runs by itself before every frame to the relay; call it before any other effect that
   * must not outlive a crash of what caused it (a printed line, say). Throws
   * `ClientError("StorageFailure")` if the commit fails; the device must then be reopened.
   */
  flush(): void {
    try {
      this.store.flush?.();
    } catch (cause) {
      throw commitFailed(cause);
    }
  }

  /** The account and device id, once registered or linked. */
  get identity(): { accountId: string; deviceId: number } | undefined {
    const a = this.crypto.account;
    return a && { accountId: a.accountId, deviceId: a.deviceId };
  }

  private meta(key: string): string | undefined {
    const v = this.store.get("app", `meta|${key}`);
    return v && dec.decode(v);
  }

  private setMeta(key: string, value: string): void {
    this.store.apply([{ table: "app", key: `meta|${key}`, value: enc.encode(value) }]);
  }

  /** The device's Noise static key (created once). */
  private noiseKeys(): NoiseKeyPair {
    const stored = this.meta("noise-key");
    if (stored) return noiseKeyPairFromPrivateKey(Buffer.from(stored, "base64url"));
    const pair = generateNoiseKeyPair();
    this.setMeta("noise-key", Buffer.from(pair.privateKey).toString("base64url"));
    return pair;
  }

  /** The server this device uses (URL and pinned key), if set. */
  get server(): ServerInfo | undefined {
    const url = this.meta("server-url");
    if (!url) return undefined;
    const key = this.meta("server-key");
    return key ? { url, publicKey: new Uint8Array(Buffer.from(key, "base64url")) } : { url };
  }

  /** Connects to the relay (pinning its key on first use). Throws `ClientError("Disconnected")`. */
  async connect(server?: ServerInfo, onPush?: (push: Push) => void): Promise<RelayConnection> {
    if (onPush) this.pushListeners.add(onPush);
    if (this.conn) return this.conn;
    const info = server ?? this.server;
    if (!info) throw new ClientError("NotRegistered", "no server configured for this device");
    const pinned = this.server?.publicKey ?? info.publicKey;
    // A cluster's nodes share one key: `url` may list several, comma-separated; they are tried
    // in turn, starting after the last one that failed.
    const urls = info.url.split(",").map((u) => u.trim());
    let transport;
    let lastError: unknown;
    for (let tried = 0; tried < urls.length && !transport; tried++) {
      const url = urls[(this.urlIndex + tried) % urls.length] ?? "";
      try {
        transport = await noise(
          websocketConnector({ url, connectTimeoutMs: this.timeoutMs, ciphertextOnly: true }),
          {
            staticKeyPair: this.noiseKeys(),
            ...(pinned ? { serverPublicKey: pinned } : {}),
            onServerKey: (key) =>
              this.setMeta("server-key", Buffer.from(key).toString("base64url")),
            handshakeTimeoutMs: this.timeoutMs,
          },
        )();
        this.urlIndex = (this.urlIndex + tried) % urls.length;
      } catch (err) {
        lastError = err;
        // A server presenting another key is refused outright, never skipped.
        if (TransportError.is(err, "ServerKeyMismatch")) break;
      }
    }
    if (!transport) {
      throw new ClientError("Disconnected", "cannot reach the server", { cause: lastError });
    }
    // Remembered only once a connection to it succeeded, so a mistyped URL is not kept.
    if (!this.meta("server-url")) this.setMeta("server-url", info.url);
    const conn = new RelayConnection(transport, {
      timeoutMs: this.timeoutMs,
      beforeSend: () => this.flush(),
      onPush: (p) => {
        for (const listener of this.pushListeners) listener(p);
        this.onPush(p);
      },
    });
    this.conn = conn;
    void conn.ended.then(() => {
      if (this.conn !== conn) return;
      this.conn = undefined;
      this.emit("connection", { state: "disconnected" });
      if (this.receiving && !this.closing) void this.reconnect();
    });
    this.emit("connection", { state: "connected" });
    return conn;
  }

  /**
   * Reconnects after a lost connection while receiving: exponential backoff with full jitter
   * (250 ms doubling to 30 s), then resumes delivery. Stops when the device is closed.
   */
  // A method, not the field, so the check is re-read after each await.
  private isClosing(): boolean {
    return this.closing;
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 0; !this.isClosing(); attempt++) {
      const ceiling = Math.min(30_000, 250 * 2 ** attempt);
      await new Promise((r) => setTimeout(r, Math.random() * ceiling).unref());
      if (this.isClosing()) return;
      try {
        await this.connect();
        await this.startReceiving();
        return;
      } catch (err) {
        // "Unauthorized" means this device was logged out: retrying cannot help.
        if (ClientError.is(err, "ServerRefused") && err.serverCode === "Unauthorized") {
          this.emit("connection", { state: "logged-out" });
          return;
        }
      }
    }
  }

  requireConnection(): RelayConnection {
    if (!this.conn) throw new ClientError("Disconnected", "not connected");
    return this.conn;
  }

  /** Registers a new account with this device as its primary (device 1). */
  async register(options: {
    server: ServerInfo;
    accountId: string;
    deviceName?: string;
    inviteToken?: string;
  }): Promise<{ accountId: string; deviceId: number }> {
    if (this.crypto.account)
      throw new ClientError("InvalidArgument", "this device is already registered");
    const conn = await this.connect(options.server);
    const accountKey = createAccountKey();
    const now = this.now();
    const identity = createPrimaryDeviceIdentity({
      accountPrivate: accountKey.privateKey,
      devicePrivate: this.crypto.identity.privateKey,
      accountId: options.accountId,
      createdAt: now,
    });
    const list = signDeviceList(accountKey.privateKey, {
      accountId: options.accountId,
      timestamp: now,
      currentKeyIndex: 0,
      validKeyIndexes: [0],
    });
    // rotate: a retried registration (the first attempt refused) still sends a signed prekey.
    const upload = this.crypto.createKeyUpload({ oneTime: 100, rotate: true });
    await conn.request({
      case: "register",
      value: {
        accountId: options.accountId,
        accountKey: accountKey.publicKey.serialize(),
        device: wireDeviceKeys(upload, identity.signed, options.deviceName ?? "primary"),
        signedDeviceList: list,
        inviteToken: options.inviteToken ?? "",
      },
    });
    this.crypto.setAccount({
      accountId: options.accountId,
      deviceId: 1,
      accountPublic: accountKey.publicKey.serialize(),
      accountPrivate: accountKey.privateKey.serialize(),
      signedDeviceIdentity: identity.signed,
    });
    this.setOwnDeviceList({ timestamp: now, valid: [0], keyIndexes: { 1: 0 } });
    return { accountId: options.accountId, deviceId: 1 };
  }

  /** The primary's record of its own signed device list: timestamp, valid key indexes, key index per device. */
  ownDeviceList(): { timestamp: number; valid: number[]; keyIndexes: Record<number, number> } {
    const raw = this.meta("device-list");
    if (!raw) throw new ClientError("NotRegistered", "no device list: not a registered primary");
    return JSON.parse(raw) as {
      timestamp: number;
      valid: number[];
      keyIndexes: Record<number, number>;
    };
  }

  /** Stores the primary's own device list record (after it signed a new list). */
  setOwnDeviceList(list: {
    timestamp: number;
    valid: number[];
    keyIndexes: Record<number, number>;
  }): void {
    this.setMeta("device-list", JSON.stringify(list));
  }

  /**
   * Deletes this account on the server (primary only): every device, key and queued message
   * goes, and the account id can be registered anew with a new account key.
   */
  async deleteAccount(): Promise<void> {
    const me = this.requireIdentity();
    if (me.deviceId !== 1)
      throw new ClientError("InvalidArgument", "only the primary device can delete the account");
    await (await this.connect()).request({ case: "deleteAccount", value: {} });
  }

  /** This account's devices as the server lists them (name, linked-at, last-seen). */
  async devices(): Promise<
    Array<{ id: number; name: string; linkedAt: number; lastSeen: number; current: boolean }>
  > {
    const own = expectResult(
      await (await this.connect()).request({ case: "listOwnDevices", value: {} }),
      "ownDevices",
    );
    const me = this.identity?.deviceId;
    return own.devices.map((d) => ({
      id: d.deviceId,
      name: d.name,
      linkedAt: Number(d.linkedAt),
      lastSeen: Number(d.lastSeen),
      current: d.deviceId === me,
    }));
  }

  /**
   * Companions are logged out when their primary has been offline for 14 days; from day 12 on a
   * companion warns (`warning` event) so the user can open the primary in time.
   */
  async checkPrimaryOnline(): Promise<number | undefined> {
    const me = this.identity;
    if (!me || me.deviceId === 1) return undefined;
    const own = expectResult(
      await this.requireConnection().request({ case: "listOwnDevices", value: {} }),
      "ownDevices",
    );
    const days = (this.now() - Number(own.primaryLastSeen)) / DAY_MS;
    if (days >= PRIMARY_WARNING_DAYS)
      this.emit("warning", { kind: "primary-offline", days: Math.floor(days) });
    return days;
  }

  /** Starts receiving: queued messages are pushed, decrypted, stored, then acknowledged. */
  async startReceiving(): Promise<void> {
    this.receiving = true;
    this.queueEmpty = false;
    await this.checkPrimaryOnline();
    await this.maintainKeys();
    await this.resumePending();
    await this.requireConnection().request({ case: "startDelivery", value: {} });
  }

  /** Resolves once everything queued at connect time has been processed. */
  async drained(timeoutMs = this.timeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.queueEmpty) {
      if (Date.now() > deadline)
        throw new ClientError("Timeout", "the queue did not drain in time");
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.inbound;
    await this.flushAcks();
  }

  /**
   * Keeps prekeys stocked: refills one-time EC and Kyber prekeys when the server holds fewer
   * than the policy's threshold (early, never at zero) and rotates the signed and last-resort
   * prekeys when they are older than the policy allows.
   */
  async maintainKeys(): Promise<{ uploaded: number; rotated: boolean }> {
    const conn = this.requireConnection();
    const counts = expectResult(
      await conn.request({ case: "getPrekeyCount", value: {} }),
      "prekeyCount",
    );
    const missing = Math.max(preKeysToUpload(counts.prekeys), preKeysToUpload(counts.kyberPrekeys));
    const upload = this.crypto.createKeyUpload({ oneTime: missing });
    const rotated = upload.signedPreKey !== undefined;
    if (missing === 0 && !rotated) return { uploaded: 0, rotated: false };
    await conn.request({
      case: "uploadKeys",
      value: {
        prekeys: upload.preKeys,
        kyberPrekeys: upload.kyberPreKeys,
        ...(upload.signedPreKey ? { signedPrekey: upload.signedPreKey } : {}),
        ...(upload.lastResortKyberPreKey
          ? { lastResortKyberPrekey: upload.lastResortKyberPreKey }
          : {}),
      },
    });
    return { uploaded: missing, rotated };
  }

  private onPush(push: Push): void {
    if (push.kind.case === "deviceRemoved") {
      // Logged out by the primary: stop reconnecting; the home keeps its history.
      this.receiving = false;
      this.emit("connection", { state: "logged-out" });
      return;
    }
    if (push.kind.case === "prekeysLow") {
      this.inbound = this.inbound
        .then(() => this.maintainKeys().then(() => undefined))
        .catch(() => undefined);
      return;
    }
    if (push.kind.case === "envelope") {
      const envelope = push.kind.value;
      this.inbound = this.inbound.then(() => this.handleEnvelope(envelope)).catch(() => undefined);
    } else if (push.kind.case === "queueEmpty") {
      this.inbound = this.inbound.then(() => {
        this.queueEmpty = true;
      });
    }
  }

  private async handleEnvelope(e: Envelope): Promise<void> {
    const me = this.identity;
    const from = { accountId: e.senderAccount, deviceId: e.senderDevice };
    if (me && e.type === GROUP_NOTICE_TYPE) {
      await this.handleGroupNotice(e);
      return;
    }
    if (!me || (e.type !== 1 && e.type !== 2 && e.type !== 3)) {
      await this.ack(e.seq);
      return;
    }
    try {
      if (e.type === 3) {
        await this.handleGroupEnvelope(e, from, me);
        return;
      }
      if (!(await this.isTrustedSender(from))) {
        this.emit("untrusted-device", { from });
        await this.ack(e.seq);
        return;
      }
      let stored: StoredMessage | undefined;
      let pendingKey: string | undefined;
      let receipt: { kind: Receipt_Kind; ids: string[]; timestamp: number } | undefined;
      await decryptContent(
        this.crypto,
        from,
        { type: e.type === 1 ? "prekey" : "message", body: e.body },
        {
          now: this.now(),
          record: (content, tx) => {
            const mine = from.accountId === me.accountId;
            const base = {
              id: content.messageId,
              chat: mine && content.sync ? content.sync.originalRecipient : from.accountId,
              fromAccount: from.accountId,
              fromDevice: from.deviceId,
              outgoing: mine,
              sync: mine && content.sync !== undefined,
              timestamp: Number(content.timestamp),
            };
            const body = content.body;
            if (body.case === "text") {
              stored = {
                ...base,
                text: body.value.body,
                ...(body.value.replyTo ? { replyTo: body.value.replyTo } : {}),
              };
            } else if (body.case === "media") {
              const file = receivedFilePath(this.home, content.messageId, body.value.fileName);
              stored = {
                ...base,
                file,
                ...(body.value.caption ? { text: body.value.caption } : {}),
              };
              pendingKey = addPending(tx, {
                kind: "media",
                blobId: body.value.blobId,
                key: b64(body.value.key),
                sha256: b64(body.value.sha256),
                dest: file,
                ...remoteProvider(from.accountId),
                messageId: content.messageId,
              });
            } else if (body.case === "historySync" && mine) {
              pendingKey = addPending(tx, {
                kind: "history",
                notification: b64(toBinary(HistorySyncNotificationSchema, body.value)),
              });
            } else if (body.case === "receipt") {
              receipt = {
                kind: body.value.kind,
                ids: body.value.messageIds,
                timestamp: Number(content.timestamp),
              };
            } else if (body.case === "retry") {
              pendingKey = addPending(tx, {
                kind: "retry",
                account: from.accountId,
                device: from.deviceId,
                messageId: body.value.messageId,
              });
            } else if (body.case === "senderKeyDistribution") {
              pendingKey = addPending(tx, {
                kind: "sender-key",
                account: from.accountId,
                device: from.deviceId,
                message: b64(body.value.message),
              });
            }
            if (stored) {
              recordMessage(tx, stored);
              this.keepInInbox(tx, e.seq, stored);
            }
          },
        },
      );
      // Work the message needs after it is stored (a download, a history import) runs before the
      // acknowledgement; it was recorded as pending in the same transaction, so a crash here
      // resumes it on the next start instead of losing it.
      if (pendingKey) await this.runPending(pendingKey);
      if (receipt && from.accountId !== me.accountId) {
        applyReceipt(this, from.accountId, receipt.kind, receipt.ids);
        if (receipt.kind !== Receipt_Kind.UNSPECIFIED)
          this.emit("receipt", {
            from,
            kind: receipt.kind === Receipt_Kind.READ ? "read" : "delivered",
            messageIds: receipt.ids,
            timestamp: receipt.timestamp,
          });
      }
      if (stored && !stored.outgoing && this.deliveryReceipts)
        queueDeliveryReceipt(this, from.accountId, stored.id);
      // Stored: show it now; the acknowledgement follows (a failed ack only means redelivery,
      // which deduplication absorbs).
      if (stored) this.emit("message", stored);
      if (stored && this.inboundHandler) {
        this.handOver(this.inboundHandler, e.seq, stored);
        return;
      }
      await this.ack(e.seq);
    } catch (err) {
      const code = CoreError.is(err) ? err.code : ClientError.is(err) ? err.code : "Unknown";
      if (CoreError.is(err, "DuplicateMessage")) {
        await this.ack(e.seq);
        return;
      }
      // The connection, the relay's storage or ours failed, not the message: it stays
      // unacknowledged, and the relay delivers it again on the next connection.
      if (isTransient(err)) return;
      this.emit("decrypt-failed", { from, code });
      // Ask the sender for the message again over a fresh session (retry receipt), and only then
      // acknowledge it: a request that could not leave leaves the message to be delivered again.
      if ((e.type === 1 || e.type === 2) && e.messageId) {
        try {
          await requestRetry(this, from, e.messageId);
        } catch (retryErr) {
          if (isTransient(retryErr)) return;
        }
      }
      await this.ack(e.seq);
    }
  }

  /**
   * A group notice from the relay: checked, stored in the local group record (with the durable
   * inbox entry, when a handler is set, in the same transaction), announced, then acknowledged
   * — after the handler, if any, resolved. A malformed one, or one claiming a sender, is dropped
   * (acknowledged) with a `decrypt-failed` event and changes nothing; an outdated or redelivered
   * one (the record is as new already) is acknowledged silently. A storage failure leaves it
   * unacknowledged, so the relay delivers it again.
   */
  private async handleGroupNotice(e: Envelope): Promise<void> {
    let notice: GroupNotice;
    try {
      notice = parseGroupNotice(e);
    } catch (err) {
      this.emit("decrypt-failed", {
        from: { accountId: e.senderAccount, deviceId: e.senderDevice },
        code: ClientError.is(err) ? err.code : "ProtocolError",
      });
      await this.ack(e.seq);
      return;
    }
    const handler = this.groupNoticeHandler;
    const inboxKey = noticeInboxKey(e.seq, notice);
    const stored = applyGroupNotice(
      this,
      notice,
      handler ? [{ table: "app", key: inboxKey, value: enc.encode(JSON.stringify(notice)) }] : [],
    );
    if (!stored) {
      await this.ack(e.seq);
      return;
    }
    this.emit("group", notice);
    if (!handler) {
      await this.ack(e.seq);
      return;
    }
    this.flush(); // as for messages: a handler sees only what is committed
    this.ackWhenHandled(handler(notice), e.seq, inboxKey);
  }

  /**
   * Hands every group notice this device stores to `handler` (after the `group` event) and
   * acknowledges it only once the handler's promise resolves, with the same durable inbox as
   * {@link setInboundHandler}: a crash in between leaves the notice in
   * {@link unhandledGroupNotices}. The relay's redelivery is absorbed (the record is as new).
   */
  setGroupNoticeHandler(handler: GroupNoticeHandler | undefined): void {
    this.groupNoticeHandler = handler;
  }

  /** Group notices stored but not yet handled (a crash interrupted them), in arrival order. */
  unhandledGroupNotices(): GroupNotice[] {
    return this.store
      .list("app", NOTICE_INBOX)
      .map(([, v]) => JSON.parse(dec.decode(v)) as unknown)
      .filter(isGroupNotice);
  }

  /** Removes a group notice from the inbox of unhandled ones (its handling is complete). */
  markGroupNoticeHandled(groupId: string, revision: number): void {
    this.dropInboxEntries(NOTICE_INBOX, `|${groupId}|${String(revision)}`);
  }

  /** A Sender Key message: decrypted, deduplicated and stored in one transaction, then acknowledged. */
  private async handleGroupEnvelope(
    e: Envelope,
    from: DeviceAddress,
    me: { accountId: string; deviceId: number },
  ): Promise<void> {
    if (!(await this.isTrustedSender(from))) {
      this.emit("untrusted-device", { from });
      await this.ack(e.seq);
      return;
    }
    const stored = await groupCrypto(this).decrypt(from, e.body, (plaintext, tx) => {
      const content = decodeContent(plaintext);
      if (tx.wasProcessed(from, content.messageId) || content.body.case !== "text")
        return undefined;
      tx.markProcessed(from, content.messageId, this.now());
      const message: StoredMessage = {
        id: content.messageId,
        chat: `group:${content.groupId || e.groupId}`,
        fromAccount: from.accountId,
        fromDevice: from.deviceId,
        outgoing: from.accountId === me.accountId,
        sync: from.accountId === me.accountId,
        text: content.body.value.body,
        timestamp: Number(content.timestamp),
      };
      recordMessage(tx, message);
      this.keepInInbox(tx, e.seq, message);
      return message;
    });
    if (stored) this.emit("message", stored);
    if (stored && this.inboundHandler) {
      this.handOver(this.inboundHandler, e.seq, stored);
      return;
    }
    await this.ack(e.seq);
  }

  /**
   * Hands every message this device stores from the network to `handler` (after the `message`
   * event) and acknowledges it to the server only once the handler's promise resolves. Until
   * then the message is also kept in a durable inbox, written in the same transaction as the
   * message and the session update, so a crash between storing and handling leaves it in
   * {@link unhandledMessages} for the next run (the server's redelivery is absorbed as a
   * duplicate). Handlers of different messages may run concurrently: the handler owns ordering.
   * A rejected handler leaves the message unacknowledged and in the inbox.
   */
  setInboundHandler(handler: InboundHandler | undefined): void {
    this.inboundHandler = handler;
  }

  /** Messages stored but not yet handled (a crash interrupted them), in arrival order. */
  unhandledMessages(): StoredMessage[] {
    const out: StoredMessage[] = [];
    for (const [key, v] of this.store.list("app", INBOX)) {
      const m = JSON.parse(dec.decode(v)) as StoredMessage;
      if (typeof m.id !== "string" || typeof m.chat !== "string") continue;
      this.inboxKeys.set(m.id, key);
      out.push(m);
    }
    return out;
  }

  /**
   * Removes a message from the inbox of unhandled messages (its handling is complete), durably
   * (see {@link flush}): one delete by key for a message this run stored or listed, else a scan
   * of the inbox.
   */
  markHandled(messageId: string): void {
    const known = this.inboxKeys.get(messageId);
    this.inboxKeys.delete(messageId);
    if (known !== undefined) this.store.apply([{ table: "app", key: known, value: null }]);
    else this.dropInboxEntries(INBOX, `|${messageId}`);
    this.flush();
  }

  /** Deletes the entries of the inbox under `prefix` whose keys end with `suffix`. */
  private dropInboxEntries(prefix: string, suffix: string): void {
    const keys = this.store
      .list("app", prefix)
      .filter(([k]) => k.endsWith(suffix))
      .map(([key]) => ({ table: "app" as const, key, value: null }));
    if (keys.length > 0) this.store.apply(keys);
  }

  private keepInInbox(tx: StateTransaction, seq: bigint, message: StoredMessage): void {
    if (!this.inboundHandler) return;
    const key = inboxKey(seq, message.id);
    tx.put({ table: "app", key, value: enc.encode(JSON.stringify(message)) });
    this.inboxKeys.set(message.id, key);
  }

  private handOver(handler: InboundHandler, seq: bigint, message: StoredMessage): void {
    // The handler may act outside the device (a webhook, a bridge): the message it acts on, and
    // its inbox entry, are committed first.
    this.flush();
    const handled = handler(message).then(() => {
      this.inboxKeys.delete(message.id);
    });
    this.ackWhenHandled(handled, seq, inboxKey(seq, message.id));
  }

  /**
   * Once `handled` resolves, deletes the inbox entry `key` and acknowledges envelope `seq`. A
   * rejection leaves both: the entry is handled again on the next run, and the relay redelivers.
   */
  private ackWhenHandled(handled: Promise<void>, seq: bigint, key: string): void {
    void handled
      .then(async () => {
        this.store.apply([{ table: "app", key, value: null }]);
        await this.ack(seq);
      })
      .catch(() => undefined);
  }

  /**
   * Runs one pending job (download a file, import history, answer a retry, take a sender key)
   * and removes it when done or when it cannot be done. A passing failure (see `isTransient`)
   * keeps the job for the next start or reconnection and is rethrown, so the message it came
   * with is not acknowledged; after MAX_PENDING_ATTEMPTS of those the job is given up.
   */
  private async runPending(key: string): Promise<void> {
    const raw = this.store.get("app", key);
    if (!raw) return;
    const job = JSON.parse(dec.decode(raw)) as PendingJob;
    try {
      if (job.kind === "retry") {
        await answerRetry(this, { accountId: job.account, deviceId: job.device }, job.messageId);
      } else if (job.kind === "sender-key") {
        await groupCrypto(this).processDistribution(
          { accountId: job.account, deviceId: job.device },
          unb64(job.message),
        );
      } else if (job.kind === "media") {
        await downloadDecrypted(
          this,
          { blobId: job.blobId, key: unb64(job.key), sha256: unb64(job.sha256) },
          job.dest,
          job.provider,
        );
      } else {
        await importHistory(
          this,
          fromBinary(HistorySyncNotificationSchema, unb64(job.notification)),
        );
      }
    } catch (err) {
      const attempts = (job.attempts ?? 0) + 1;
      if (isTransient(err) && attempts < MAX_PENDING_ATTEMPTS) {
        this.store.apply([{ table: "app", key, value: jobBytes({ ...job, attempts }) }]);
        throw err;
      }
      this.emit("decrypt-failed", {
        from: { accountId: "", deviceId: 0 },
        code: CoreError.is(err) ? err.code : "PendingFailed",
      });
    }
    this.store.apply([{ table: "app", key, value: null }]);
  }

  /**
   * Resumes jobs left pending by an interrupted run. A file message whose download was cut off
   * was stored but never shown (its redelivery is a duplicate): it is shown once the file is in.
   */
  private async resumePending(): Promise<void> {
    for (const [key, raw] of this.store.list("app", "pending|")) {
      const job = JSON.parse(dec.decode(raw)) as PendingJob;
      try {
        await this.runPending(key);
      } catch (err) {
        if (isTransient(err)) continue; // kept for the next start or reconnection
        throw err;
      }
      const shown =
        job.kind === "media" && job.messageId ? findMessage(this.store, job.messageId) : undefined;
      if (!shown) continue;
      if (!shown.outgoing && this.deliveryReceipts)
        queueDeliveryReceipt(this, shown.fromAccount, shown.id);
      this.emit("message", shown);
    }
  }

  /**
   * Acknowledges a stored message. Acks are batched (up to 128, or after 10 ms): each one is a
   * frame and a delete on the server, and an ack that never leaves only means a redelivery that
   * deduplication absorbs.
   */
  private async ack(seq: bigint): Promise<void> {
    this.acks.push(seq);
    if (this.acks.length >= 128) {
      await this.flushAcks();
      return;
    }
    this.ackTimer ??= setTimeout(() => void this.flushAcks().catch(() => undefined), 10);
    this.ackTimer.unref();
  }

  /** Sends every pending acknowledgement now. */
  async flushAcks(): Promise<void> {
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const seqs = this.acks;
    this.acks = [];
    if (seqs.length > 0 && this.conn) await this.conn.notify({ case: "ack", value: { seqs } });
  }

  /** Whether the sender device is in its account's newest verified device list (fetching it if unknown). */
  private async isTrustedSender(from: DeviceAddress): Promise<boolean> {
    const cached = verifiedCache(this).get(from.accountId);
    if (cached?.trusted.some((d) => d.deviceId === from.deviceId)) return true;
    const known = this.crypto.state
      .getDeviceList(from.accountId)
      ?.devices.some((d) => d.deviceId === from.deviceId);
    if (known) return true;
    const { trusted } = await this.refreshContact(from.accountId);
    return trusted.some((d) => d.deviceId === from.deviceId);
  }

  /** Fetches an account's devices and verifies them (TOFU + ADV); returns the trusted ones. */
  refreshContact(accountId: string) {
    return refreshContact(this, accountId);
  }

  /**
   * The timestamp for a new outgoing message: the clock, but always after the previous one this
   * device gave out, so messages sent within one millisecond keep their order in every history
   * (histories are ordered by the sender's timestamp).
   */
  nextMessageTimestamp(): number {
    this.lastMessageTimestamp = Math.max(this.now(), this.lastMessageTimestamp + 1);
    return this.lastMessageTimestamp;
  }

  /** Sends a text to every device of `to`, with sync copies to this account's other devices. */
  sendText(
    to: string,
    text: string,
    options: { replyTo?: string; messageId?: string } = {},
  ): Promise<string> {
    return sendText(this, to, text, options);
  }

  /** Sends a file (encrypted blob + media pointer) like a text. */
  sendFile(
    to: string,
    path: string,
    options: { caption?: string; messageId?: string } = {},
  ): Promise<string> {
    return sendFile(this, to, path, options);
  }

  /** Client fan-out of one content (see `sendContent` in sender.ts). */
  sendContent(
    to: string,
    content: ContentInit,
    options: { onlyDevices?: number[] } = {},
  ): Promise<void> {
    return sendContent(this, to, content, options);
  }

  /** The account and device this device is, or `ClientError("NotRegistered")`. */
  requireIdentity(): { accountId: string; deviceId: number } {
    const me = this.identity;
    if (!me) throw new ClientError("NotRegistered", "register or link this device first");
    return me;
  }

  /** Stores a message in the local history (outgoing messages, imported history). */
  remember(message: StoredMessage): void {
    const tx = this.crypto.state.begin();
    recordMessage(tx, message);
    tx.commit();
  }

  /** The local conversation with an account (or `group:<id>`), oldest first. */
  history(chat: string): StoredMessage[] {
    return listMessages(this.store, chat);
  }

  /** Closes the connection and the database. */
  async close(): Promise<void> {
    this.closing = true;
    // Commit first: a caller that gives up on a slow close keeps what was stored, such as the
    // history entry of a message just sent. A failed commit is reported once the connection and
    // the file are closed.
    let failed: ClientError | undefined;
    try {
      this.store.flush?.();
    } catch (cause) {
      failed = commitFailed(cause);
    }
    await this.inbound;
    await this.flushAcks().catch(() => undefined);
    await flushReceipts(this).catch(() => undefined);
    await this.conn?.close().catch(() => undefined);
    await this.inbound;
    try {
      this.store.close();
    } catch (cause) {
      failed ??= commitFailed(cause);
    }
    if (failed !== undefined) throw failed;
  }
}
