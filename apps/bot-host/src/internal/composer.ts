import type { Context } from "./context.ts";
import { BotHostError } from "./errors.ts";
import {
  isFilterQuery,
  matchesFilter,
  type FilterQuery,
  type GroupFor,
  type GroupQuery,
  type MessageFor,
  type ReceiptFor,
  type ReceiptQuery,
} from "./update.ts";

/** Calls the rest of the middleware chain. */
export type NextFunction = () => Promise<void>;

/** grammY-style middleware: do something with `ctx`, call `next()` to let later ones run. */
export type Middleware<C extends Context = Context> = (ctx: C, next: NextFunction) => unknown;

/**
 * A context narrowed by a filter query: `ctx.message` (or `ctx.receipt`, or `ctx.group`) is
 * known to have what the query asks. Queries of different kinds in one `on` call narrow nothing
 * beyond `Context`.
 */
export type Filtered<C extends Context, Q extends FilterQuery> = C &
  ([Q] extends [ReceiptQuery]
    ? { receipt: ReceiptFor<Q> }
    : [Q] extends [GroupQuery]
      ? { group: GroupFor<Q>; chat: { type: "group" } }
      : [Q] extends [Exclude<FilterQuery, ReceiptQuery | GroupQuery>]
        ? { message: MessageFor<Q> }
        : unknown);

/** A context in a `command` handler: `match` is the text after the command. */
export type CommandContext<C extends Context> = Filtered<C, "message:text"> & { match: string };

/** A context in a `hears` handler: `match` is the regex match. */
export type HearsContext<C extends Context> = Filtered<C, "message:text"> & {
  match: RegExpMatchArray;
};

/** A registered command (for the `help` plugin and the dashboard). */
export interface CommandInfo {
  name: string;
  description: string;
  plugin: string;
}

/** Handles an error thrown in an {@link Composer.errorBoundary}. */
export type ErrorHandler<C extends Context = Context> = (error: unknown, ctx: C) => unknown;

/** Where a composer tree records its commands. */
export interface CommandRegistry {
  plugin: string;
  commands: CommandInfo[];
}

const noop: NextFunction = () => Promise.resolve();

/** Runs middleware in order; the array is read at call time, so later registrations count. */
export function run<C extends Context>(
  list: readonly Middleware<C>[],
  ctx: C,
  next: NextFunction,
): Promise<void> {
  const step = async (i: number): Promise<void> => {
    const mw = list[i];
    if (!mw) {
      await next();
      return;
    }
    let called = false;
    await mw(ctx, async () => {
      if (called) throw new BotHostError("InvalidArgument", "next() called twice");
      called = true;
      await step(i + 1);
    });
  };
  return step(0);
}

const COMMAND_NAME = /^[a-z0-9_]{1,32}$/;

/**
 * A middleware tree like grammY's `Composer`: `use`, `on(filter)`, `command`, `hears`, `filter`
 * and `errorBoundary` each return a child composer whose middleware runs only where the parent
 * routes to it.
 */
export class Composer<C extends Context = Context> {
  private readonly list: Middleware<C>[] = [];
  /** @internal */
  readonly registry: CommandRegistry;

  constructor(registry: CommandRegistry = { plugin: "bot", commands: [] }) {
    this.registry = registry;
  }

  /** The tree as one middleware. */
  middleware(): Middleware<C> {
    return (ctx, next) => run(this.list, ctx, next);
  }

  private child<D extends Context>(middleware: Middleware<D>[]): Composer<D> {
    const c = new Composer<D>(this.registry);
    c.list.push(...middleware);
    return c;
  }

  /** Adds middleware that runs for every update. */
  use(...middleware: Middleware<C>[]): Composer<C> {
    const c = this.child(middleware);
    this.list.push(c.middleware());
    return c;
  }

  /** Runs `middleware` only where `predicate` holds (else goes on). */
  filter<D extends C>(
    predicate: ((ctx: C) => ctx is D) | ((ctx: C) => boolean),
    ...middleware: Middleware<D>[]
  ): Composer<D> {
    const c = this.child<D>(middleware);
    const mw = c.middleware();
    this.list.push((ctx, next) => (predicate(ctx) ? mw(ctx as D, next) : next()));
    return c;
  }

  /**
   * Runs `middleware` for updates matching a filter query (or any of several), with the
   * context narrowed accordingly. Throws `BotHostError("InvalidArgument")` for an unknown query.
   */
  on<Q extends FilterQuery>(
    query: Q | readonly Q[],
    ...middleware: Middleware<Filtered<C, Q>>[]
  ): Composer<Filtered<C, Q>> {
    const queries: readonly unknown[] = Array.isArray(query) ? query : [query];
    for (const q of queries)
      if (!isFilterQuery(q))
        throw new BotHostError("InvalidArgument", `unknown filter query: ${String(q)}`);
    const qs = queries as readonly FilterQuery[];
    return this.filter(
      (ctx): ctx is Filtered<C, Q> => qs.some((q) => matchesFilter(ctx.update, q)),
      ...middleware,
    );
  }

  /**
   * Runs `middleware` for `/name` (optionally `/name args`); `ctx.match` is the arguments.
   * Pass `{ name, description }` to describe it for `help`. Names: 1–32 of a–z, 0–9, `_`.
   */
  command(
    command: string | readonly string[] | { name: string | readonly string[]; description: string },
    ...middleware: Middleware<CommandContext<C>>[]
  ): Composer<CommandContext<C>> {
    const described = typeof command === "object" && "description" in command;
    const name: string | readonly string[] = described ? command.name : command;
    const description = described ? command.description : "";
    const names: readonly string[] = typeof name === "string" ? [name] : name;
    for (const n of names) {
      if (!COMMAND_NAME.test(n))
        throw new BotHostError("InvalidArgument", `invalid command name: ${JSON.stringify(n)}`);
      this.registry.commands.push({ name: n, description, plugin: this.registry.plugin });
    }
    return this.filter(
      (ctx): ctx is CommandContext<C> => {
        const text = ctx.message?.text;
        if (!text?.startsWith("/")) return false;
        const m = /^\/([a-z0-9_]+)(?:\s+([\s\S]*))?$/i.exec(text.trim());
        if (!m?.[1] || !names.includes(m[1].toLowerCase())) return false;
        ctx.match = (m[2] ?? "").trim();
        return true;
      },
      ...middleware,
    );
  }

  /** Runs `middleware` for texts matching a regex (or containing a string, case-insensitively). */
  hears(
    trigger: RegExp | string | readonly (RegExp | string)[],
    ...middleware: Middleware<HearsContext<C>>[]
  ): Composer<HearsContext<C>> {
    const list: readonly (RegExp | string)[] = Array.isArray(trigger)
      ? (trigger as readonly (RegExp | string)[])
      : [trigger as RegExp | string];
    const regexes = list.map((t) =>
      typeof t === "string" ? new RegExp(t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "i") : t,
    );
    return this.filter(
      (ctx): ctx is HearsContext<C> => {
        const text = ctx.message?.text;
        if (text === undefined) return false;
        for (const r of regexes) {
          r.lastIndex = 0;
          const m = r.exec(text);
          if (m) {
            ctx.match = m;
            return true;
          }
        }
        return false;
      },
      ...middleware,
    );
  }

  /**
   * Runs `middleware`; an error it throws goes to `onError` instead of up the chain, and the
   * chain goes on after it. Errors thrown further down (through `next`) are not caught here.
   */
  errorBoundary(onError: ErrorHandler<C>, ...middleware: Middleware<C>[]): Composer<C> {
    const c = this.child(middleware);
    const mw = c.middleware();
    this.list.push(async (ctx, next) => {
      const seen: { downstream?: { error: unknown }; nextCalled: boolean } = { nextCalled: false };
      try {
        await mw(ctx, async () => {
          seen.nextCalled = true;
          try {
            await next();
          } catch (error) {
            seen.downstream = { error };
            throw error;
          }
        });
      } catch (error) {
        if (seen.downstream && seen.downstream.error === error) throw error;
        await onError(error, ctx);
        if (!seen.nextCalled) await next();
      }
    });
    return c;
  }
}

/** Runs a composer's middleware for one context to the end of the chain. */
export function runComposer<C extends Context>(composer: Composer<C>, ctx: C): Promise<void> {
  return run([composer.middleware()], ctx, noop);
}
