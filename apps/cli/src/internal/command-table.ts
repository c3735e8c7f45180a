import type { Command } from "./command.ts";
import { deleteAccountCommand, registerCommand } from "./commands/account.ts";
import { backupCommand } from "./commands/backup.ts";
import { devicesCommand, unlinkCommand } from "./commands/devices.ts";
import { linkCodeCommand, linkCommand } from "./commands/linking.ts";
import { chatCommand } from "./commands/chat.ts";
import { groupCommand } from "./commands/groups.ts";
import { interopCommand } from "./commands/interop.ts";
import {
  historyCommand,
  receiveCommand,
  sendCommand,
  sendFileCommand,
} from "./commands/messages.ts";
import { safetyCodeCommand, trustCommand, verifyCommand } from "./commands/safety.ts";

/** Every `pairwise` command, in the order `pairwise --help` lists them. */
export const COMMANDS: readonly Command[] = [
  registerCommand,
  linkCodeCommand,
  linkCommand,
  sendCommand,
  sendFileCommand,
  receiveCommand,
  historyCommand,
  devicesCommand,
  unlinkCommand,
  safetyCodeCommand,
  verifyCommand,
  trustCommand,
  groupCommand,
  chatCommand,
  deleteAccountCommand,
  interopCommand,
  backupCommand,
];
