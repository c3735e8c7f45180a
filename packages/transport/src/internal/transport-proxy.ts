import type { Transport } from "./transport.ts";

/** The members of a transport a wrapper may replace. */
export type TransportOverrides = Partial<
  Pick<Transport, "send" | "close" | "closed" | typeof Symbol.asyncIterator>
>;

/**
 * A view of `target` with some members replaced, keeping every other member (such as a
 * SecureTransport's `remoteStaticKey`) and the target's type. Other methods are called on the
 * target itself, so private fields and getters keep working.
 */
export function overrideTransport<T extends Transport>(
  target: T,
  overrides: TransportOverrides,
): T {
  const replaced = overrides as Record<PropertyKey, unknown>;
  return new Proxy(target, {
    get(object, property) {
      if (Object.prototype.hasOwnProperty.call(replaced, property)) return replaced[property];
      const value: unknown = Reflect.get(object, property, object);
      return typeof value === "function"
        ? (value as (...args: unknown[]) => unknown).bind(object)
        : value;
    },
  });
}
