// Runs in place of a package script for a workspace whose code arrives with a later issue, so
// `turbo run <task>` stays green and says plainly that there is nothing to do yet.
import { readFileSync } from "node:fs";

const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const task = process.argv[2] ?? "task";
process.stdout.write(
  `${pkg.name}: no code yet, nothing to ${task} (${pkg.pairwise?.comesWith ?? "a later issue"})\n`,
);
