import { InteropError } from "../errors.ts";

/** The end-to-end protocol Pairwise devices speak, as declared in the federation handshake. */
export const PAIRWISE_PROTOCOL = { name: "signal-pqxdh", version: 1 } as const;

/** A protocol a partner declares: its name and version. */
export interface DeclaredProtocol {
  readonly name: string;
  readonly version: number;
}

/**
 * Checks a partner's declared end-to-end protocol: Signal Protocol with PQXDH (version 1 or
 * later) passes; anything else passes only when the operator approved it explicitly as
 * `"name/version"` (e.g. `"mls-x25519-pq/1"`). Throws `InteropError("WeakProtocol")` naming
 * what was declared and what is required.
 */
export function checkPartnerProtocol(
  partner: string,
  declared: DeclaredProtocol,
  approved: readonly string[] = [],
): void {
  if (declared.name === PAIRWISE_PROTOCOL.name && declared.version >= PAIRWISE_PROTOCOL.version)
    return;
  if (approved.includes(`${declared.name}/${declared.version}`)) return;
  throw new InteropError(
    "WeakProtocol",
    `partner ${partner} declares ${declared.name || "no protocol"} v${declared.version}; ` +
      `required: ${PAIRWISE_PROTOCOL.name} v${PAIRWISE_PROTOCOL.version} or later, ` +
      `or an equivalent the operator approved`,
  );
}
