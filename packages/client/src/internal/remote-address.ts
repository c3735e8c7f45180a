/**
 * Users of other providers (EU DMA interoperability) are addressed as `name@provider`. Their own
 * provider signs their device lists for `name`; this device keeps them under the full address.
 */
const REMOTE = /^([a-z0-9._-]{1,64})@([a-z0-9][a-z0-9.-]{0,62})$/;

/** `{ name, provider }` for a `name@provider` address, else undefined (a user of our server). */
export function parseRemoteAddress(
  address: string,
): { name: string; provider: string } | undefined {
  const m = REMOTE.exec(address);
  return m?.[1] && m[2] ? { name: m[1], provider: m[2] } : undefined;
}

/** True when `address` names a user of another provider (a third-party chat). */
export function isRemoteAddress(address: string): boolean {
  return address.includes("@") && parseRemoteAddress(address) !== undefined;
}
