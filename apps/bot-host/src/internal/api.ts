import type { Readable } from "node:stream";

/** The calls a bot makes to the network, each with its payload and result. */
export interface ApiCalls {
  sendText: {
    payload: { to: string; text: string; replyTo?: string; messageId?: string };
    result: { id: string };
  };
  sendFile: {
    payload: {
      to: string;
      file: string | Readable;
      fileName?: string;
      caption?: string;
      messageId?: string;
    };
    result: { id: string };
  };
  react: {
    payload: { to: string; target: string; emoji: string; messageId?: string };
    result: { id: string };
  };
  markRead: { payload: { chat: string }; result: { count: number } };
}

/** One of the {@link ApiCalls}. */
export type ApiMethod = keyof ApiCalls;

/** Performs an API call (the next transformer, or the network at the end of the chain). */
export type ApiCaller = <M extends ApiMethod>(
  method: M,
  payload: ApiCalls[M]["payload"],
) => Promise<ApiCalls[M]["result"]>;

/**
 * An outgoing transformer (like grammY's): sees every API call before it is made, and may
 * change it, delay it (throttling), record it (audit) or refuse it by throwing. Call `prev` to
 * go on.
 */
export type Transformer = <M extends ApiMethod>(
  prev: ApiCaller,
  method: M,
  payload: ApiCalls[M]["payload"],
) => Promise<ApiCalls[M]["result"]>;

/**
 * A bot's outgoing API: typed helpers over one call chain that installed transformers wrap.
 * Throws what the network layer throws (a `ClientError` from `@pairwise/client`, or
 * `BotHostError("NotConnected")` while the bot is not linked and connected).
 */
export class BotApi {
  private readonly transformers: Transformer[] = [];
  /** Install transformers with `api.config.use(t)`; the last installed runs first. */
  readonly config = {
    use: (...transformers: Transformer[]): void => {
      this.transformers.push(...transformers);
    },
  };

  constructor(private readonly base: ApiCaller) {}

  /** Makes a call through every installed transformer. */
  call<M extends ApiMethod>(
    method: M,
    payload: ApiCalls[M]["payload"],
  ): Promise<ApiCalls[M]["result"]> {
    let caller: ApiCaller = this.base;
    for (const t of this.transformers) {
      const prev = caller;
      caller = (m, p) => t(prev, m, p);
    }
    return caller(method, payload);
  }

  /** Sends a text to an account or `group:<id>`. */
  sendText(
    to: string,
    text: string,
    options: { replyTo?: string; messageId?: string } = {},
  ): Promise<{ id: string }> {
    return this.call("sendText", { to, text, ...options });
  }

  /** Sends a file (a path or a stream) to an account. */
  sendFile(
    to: string,
    file: string | Readable,
    options: { fileName?: string; caption?: string; messageId?: string } = {},
  ): Promise<{ id: string }> {
    return this.call("sendFile", { to, file, ...options });
  }
}
