import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { PluginSpec } from "./config.ts";
import { BotHostError } from "./errors.ts";
import { checkPlugin, type Plugin } from "./plugin.ts";

type PluginModule = { default?: unknown };

/** The built-in plugins, by short name and by their subpath export. */
const BUILT_IN: Record<string, () => Promise<PluginModule>> = {
  echo: () => import("../plugins/echo.ts"),
  "auto-reply": () => import("../plugins/auto-reply.ts"),
  help: () => import("../plugins/help.ts"),
  webhook: () => import("../plugins/webhook.ts"),
  "telegram-bridge": () => import("../plugins/telegram-bridge.ts"),
};

async function importSpecifier(specifier: string, baseDir: string): Promise<PluginModule> {
  const builtIn = BUILT_IN[specifier.replace(/^@pairwise\/bot-host\//, "")];
  if (builtIn) return builtIn();
  if (specifier.startsWith(".") || isAbsolute(specifier)) {
    const path = isAbsolute(specifier) ? specifier : resolve(baseDir, specifier);
    return (await import(pathToFileURL(path).href)) as PluginModule;
  }
  let resolved: string;
  try {
    resolved = createRequire(join(baseDir, "noop.js")).resolve(specifier);
  } catch {
    // ESM-only packages have no "require" condition: let import() resolve it.
    return (await import(specifier)) as PluginModule;
  }
  return (await import(pathToFileURL(resolved).href)) as PluginModule;
}

/**
 * Resolves a plugin named in config (a built-in name, a package, or a file relative to the
 * config) and builds it: the module's default export is a plugin, or a factory called with the
 * options. Throws `BotHostError("PluginLoadFailed")` with the specifier and the reason.
 */
export async function loadPlugin(
  spec: PluginSpec,
  baseDir: string,
  where: string,
): Promise<Plugin> {
  const label = `${where}: plugin ${JSON.stringify(spec.specifier)}`;
  let mod: PluginModule;
  try {
    mod = await importSpecifier(spec.specifier, baseDir);
  } catch (cause) {
    throw new BotHostError(
      "PluginLoadFailed",
      `${label} cannot be loaded (not found or fails to import)`,
      {
        cause,
      },
    );
  }
  const exported = mod.default;
  if (typeof exported === "function") {
    let built: unknown;
    try {
      built = (exported as (options: unknown) => unknown)(spec.options);
    } catch (cause) {
      if (BotHostError.is(cause))
        throw new BotHostError("PluginLoadFailed", `${label}: ${cause.message}`, { cause });
      throw new BotHostError("PluginLoadFailed", `${label}: its factory threw`, { cause });
    }
    return checkPlugin(built, label);
  }
  if (spec.options !== undefined)
    throw new BotHostError(
      "PluginLoadFailed",
      `${label} takes no options (it exports a plugin, not a factory)`,
    );
  return checkPlugin(exported, label);
}
