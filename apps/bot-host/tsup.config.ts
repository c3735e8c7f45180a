import { createTsupConfig } from "../../tsup.config.base.ts";

export default createTsupConfig({
  index: "src/index.ts",
  cli: "src/cli.ts",
  "plugins/echo": "src/plugins/echo.ts",
  "plugins/auto-reply": "src/plugins/auto-reply.ts",
  "plugins/webhook": "src/plugins/webhook.ts",
  "plugins/help": "src/plugins/help.ts",
  "plugins/telegram-bridge": "src/plugins/telegram-bridge.ts",
});
