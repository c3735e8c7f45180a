import { randomUUID } from "node:crypto";
import {
  ErrorCode,
  LibSignalErrorBase,
  ProtocolAddress,
  SenderKeyDistributionMessage,
  groupDecrypt,
  groupEncrypt,
  processSenderKeyDistributionMessage,
} from "@signalapp/libsignal-client";
import { toBytes } from "./bytes.ts";
import type { DeviceCrypto } from "./device-crypto.ts";
import { CoreError } from "./errors.ts";
import { addressKey, type DeviceAddress, type StateTransaction } from "./store/device-state.ts";

const MAX_GROUP_CIPHERTEXT = 256 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What a sender must do before its next group message: hand its sender key to these devices. */
export interface GroupDistribution {
  /** Our current sender key's distribution id (UUID string). */
  distributionId: string;
  /** `SenderKeyDistributionMessage` bytes to send over pairwise sessions; empty if `to` is empty. */
  message: Uint8Array;
  /** Member devices that do not have our current sender key yet. */
  to: DeviceAddress[];
}

/**
 * Sender Keys for groups: one sender key per (group, sending device), handed to every member
 * device over pairwise sessions, then one `groupEncrypt` ciphertext that the server fans out.
 * Remembers which devices have our key; {@link GroupCrypto.rotate} starts a fresh key (after a
 * member or device leaves) so removed devices cannot read what follows.
 */
export class GroupCrypto {
  constructor(private readonly device: DeviceCrypto) {}

  private self(): ProtocolAddress {
    const account = this.device.account;
    if (!account)
      throw new CoreError("InvalidArgument", "device does not belong to an account yet");
    return ProtocolAddress.new(account.accountId, account.deviceId);
  }

  /**
   * Our sender key for `groupId` (created on first use) and the member devices still missing it.
   * Pass every member device (ours included; this device is skipped).
   */
  async prepare(groupId: string, members: readonly DeviceAddress[]): Promise<GroupDistribution> {
    const self = this.self();
    const selfKey = addressKey({ accountId: self.name(), deviceId: self.deviceId() });
    return this.device.mutex.run([`group|${groupId}`], async () => {
      const tx = this.device.state.begin();
      let state = tx.getGroupSenderState(groupId);
      if (!state) {
        state = { distributionId: new TextEncoder().encode(randomUUID()), sharedWith: [] };
        tx.setGroupSenderState(groupId, state);
      }
      const distributionId = new TextDecoder().decode(state.distributionId);
      const shared = new Set(state.sharedWith);
      const to = members.filter((m) => addressKey(m) !== selfKey && !shared.has(addressKey(m)));
      // Everyone already holds our key (the usual case): nothing to create or store.
      if (
        to.length === 0 &&
        tx.getSenderKey({ accountId: self.name(), deviceId: self.deviceId() }, distributionId)
      ) {
        tx.rollback();
        return { distributionId, message: new Uint8Array(0), to };
      }
      const skdm = await SenderKeyDistributionMessage.create(
        self,
        distributionId,
        this.device.stores(tx).senderKey,
      );
      tx.commit();
      return { distributionId, message: to.length > 0 ? skdm.serialize() : new Uint8Array(0), to };
    });
  }

  /** Records that these devices now hold our current sender key for `groupId`. */
  async markDistributed(groupId: string, devices: readonly DeviceAddress[]): Promise<void> {
    if (devices.length === 0) return;
    await this.device.mutex.run([`group|${groupId}`], () => {
      const tx = this.device.state.begin();
      const state = tx.getGroupSenderState(groupId);
      if (!state) throw new CoreError("InvalidArgument", "no sender key for that group");
      const shared = new Set(state.sharedWith);
      for (const d of devices) shared.add(addressKey(d));
      tx.setGroupSenderState(groupId, { ...state, sharedWith: [...shared].sort() });
      tx.commit();
      return Promise.resolve();
    });
  }

  /** Encrypts once for the whole group with our current sender key (call `prepare` first). */
  async encrypt(
    groupId: string,
    plaintext: Uint8Array,
  ): Promise<{ distributionId: string; body: Uint8Array }> {
    const self = this.self();
    return this.device.mutex.run([`group|${groupId}`], async () => {
      const tx = this.device.state.begin();
      const state = tx.getGroupSenderState(groupId);
      if (!state) throw new CoreError("NoSession", "no sender key for that group; prepare first");
      const distributionId = new TextDecoder().decode(state.distributionId);
      const ct = await groupEncrypt(
        self,
        distributionId,
        this.device.stores(tx).senderKey,
        toBytes(plaintext),
      );
      tx.commit();
      return { distributionId, body: ct.serialize() };
    });
  }

  /**
   * Stores a member device's sender key from its distribution message (which arrived over our
   * pairwise session with that device). Throws `CoreError("MalformedInput")` for bad bytes.
   */
  async processDistribution(
    sender: DeviceAddress,
    message: Uint8Array,
  ): Promise<{ distributionId: string }> {
    let skdm: SenderKeyDistributionMessage;
    try {
      skdm = SenderKeyDistributionMessage.deserialize(toBytes(message));
    } catch (cause) {
      throw new CoreError("MalformedInput", "sender key distribution does not parse", { cause });
    }
    const distributionId = skdm.distributionId();
    return this.device.mutex.run([`sk|${addressKey(sender)}`], async () => {
      const tx = this.device.state.begin();
      const remote = ProtocolAddress.new(sender.accountId, sender.deviceId);
      try {
        await processSenderKeyDistributionMessage(remote, skdm, this.device.stores(tx).senderKey);
      } catch (cause) {
        tx.rollback();
        throw new CoreError("MalformedInput", "sender key distribution was refused", { cause });
      }
      tx.commit();
      return { distributionId };
    });
  }

  /**
   * Decrypts a group ciphertext from a member device. Throws `CoreError("NoSession")` when we
   * never got that sender key (e.g. we were removed), `"DecryptionFailed"` otherwise; stored
   * state is unchanged on failure.
   */
  async decrypt(sender: DeviceAddress, body: Uint8Array): Promise<Uint8Array>;
  async decrypt<T>(
    sender: DeviceAddress,
    body: Uint8Array,
    record: (plaintext: Uint8Array, tx: StateTransaction) => T,
  ): Promise<T>;
  async decrypt<T>(
    sender: DeviceAddress,
    body: Uint8Array,
    record?: (plaintext: Uint8Array, tx: StateTransaction) => T,
  ): Promise<T | Uint8Array> {
    if (body.length > MAX_GROUP_CIPHERTEXT)
      throw new CoreError("InputTooLarge", "group ciphertext too large");
    return this.device.mutex.run([`sk|${addressKey(sender)}`], async () => {
      const tx = this.device.state.begin();
      const remote = ProtocolAddress.new(sender.accountId, sender.deviceId);
      let plaintext: Uint8Array;
      try {
        plaintext = await groupDecrypt(remote, this.device.stores(tx).senderKey, toBytes(body));
      } catch (cause) {
        tx.rollback();
        const missing =
          cause instanceof Error && /no sender key state|missing sender key/i.test(cause.message);
        const duplicate =
          cause instanceof LibSignalErrorBase && cause.code === ErrorCode.DuplicatedMessage;
        throw new CoreError(
          duplicate ? "DuplicateMessage" : missing ? "NoSession" : "DecryptionFailed",
          "group message does not decrypt",
          { cause },
        );
      }
      // The caller's record (the decrypted message) commits with the sender-key advance.
      try {
        const result = record ? record(plaintext, tx) : plaintext;
        tx.commit();
        return result;
      } catch (err) {
        tx.rollback();
        throw err;
      }
    });
  }

  /**
   * Drops our sender key for `groupId`: the next `prepare` creates a new one with a new
   * distribution id and hands it to the current members only. Call it when a member or a device
   * leaves the group.
   */
  async rotate(groupId: string): Promise<void> {
    const self = this.self();
    await this.device.mutex.run([`group|${groupId}`], () => {
      const tx = this.device.state.begin();
      const state = tx.getGroupSenderState(groupId);
      if (state) {
        const distributionId = new TextDecoder().decode(state.distributionId);
        if (UUID.test(distributionId)) {
          tx.setSenderKey(
            { accountId: self.name(), deviceId: self.deviceId() },
            distributionId,
            null,
          );
        }
        tx.setGroupSenderState(groupId, null);
      }
      tx.commit();
      return Promise.resolve();
    });
  }
}
