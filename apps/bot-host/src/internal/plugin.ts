import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { BotApi } from "./api.ts";
import { Composer, type CommandInfo, type CommandRegistry, type Middleware } from "./composer.ts";
import { BotHostError } from "./errors.ts";

/** Handles an HTTP request routed to a plugin (the plugin does its own authentication). */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

/** What a plugin's `setup` gets: the bot's composer for this plugin plus host services. */
export class PluginBot extends Composer {
  /** The bot's name (from config). */
  readonly name: string;
  /** The plugin's name. */
  readonly plugin: string;
  /** A pino logger for this bot and plugin. */
  readonly log: Logger;
  /** The bot's outgoing API; `api.config.use(transformer)` installs outgoing transformers. */
  readonly api: BotApi;
  /**
   * A directory for this plugin's own files, kept with the bot's state
   * (`<stateDir>/plugins/<plugin>`, created before `setup` runs).
   */
  readonly dataDir: string;
  /** @internal */
  readonly routes = new Map<string, RouteHandler>();
  /** @internal */
  readonly stopHooks: Array<() => unknown> = [];
  private readonly all: () => readonly CommandInfo[];

  /** @internal */
  constructor(init: {
    name: string;
    plugin: string;
    log: Logger;
    api: BotApi;
    dataDir: string;
    registry: CommandRegistry;
    allCommands: () => readonly CommandInfo[];
  }) {
    super(init.registry);
    this.name = init.name;
    this.plugin = init.plugin;
    this.log = init.log;
    this.api = init.api;
    this.dataDir = init.dataDir;
    this.all = init.allCommands;
  }

  /** Every command registered by any plugin of this bot so far (in plugin order). */
  commands(): readonly CommandInfo[] {
    return this.all();
  }

  /**
   * Serves `METHOD /bots/<bot>/<plugin><path>` on the host's HTTP server. `path` starts with
   * `/`. Throws `BotHostError("InvalidArgument")` for a bad path or a duplicate route.
   */
  route(method: "GET" | "POST" | "PUT" | "DELETE", path: string, handler: RouteHandler): void {
    if (!/^\/[a-z0-9/_-]*$/.test(path))
      throw new BotHostError("InvalidArgument", `invalid route path: ${path}`);
    const key = `${method} ${path}`;
    if (this.routes.has(key))
      throw new BotHostError("InvalidArgument", `route already registered: ${key}`);
    this.routes.set(key, handler);
  }

  /** Runs `hook` when the host stops (after in-flight messages are drained). */
  onStop(hook: () => unknown): void {
    this.stopHooks.push(hook);
  }
}

/** A plugin: a name, and a `setup` that registers middleware, and/or one `middleware`. */
export interface Plugin {
  name: string;
  setup?: (bot: PluginBot) => unknown;
  middleware?: Middleware;
}

/** A plugin module's default export when it takes options from config. */
export type PluginFactory<O = unknown> = (options: O) => Plugin;

/**
 * Checks and returns a plugin definition. Throws `BotHostError("PluginLoadFailed")` when it is
 * not one: no name, or neither `setup` nor `middleware` functions.
 */
export function definePlugin(plugin: Plugin): Plugin {
  return checkPlugin(plugin, "definePlugin");
}

/** @internal */
export function checkPlugin(value: unknown, where: string): Plugin {
  const fail = (why: string) =>
    new BotHostError("PluginLoadFailed", `${where}: not a plugin: ${why}`);
  if (typeof value !== "object" || value === null) throw fail("expected an object");
  const p = value as Record<string, unknown>;
  if (typeof p.name !== "string" || !/^[a-z0-9][a-z0-9._-]{0,63}$/i.test(p.name))
    throw fail("`name` must be 1-64 letters, digits, '.', '_' or '-'");
  if (p.setup !== undefined && typeof p.setup !== "function")
    throw fail("`setup` must be a function");
  if (p.middleware !== undefined && typeof p.middleware !== "function")
    throw fail("`middleware` must be a function");
  if (p.setup === undefined && p.middleware === undefined)
    throw fail("it needs `setup` or `middleware`");
  return value as Plugin;
}
