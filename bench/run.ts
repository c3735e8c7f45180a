// `npm run bench -- <name>` runs bench/<name>.ts after building the workspace. Each benchmark
// prints its figures and ends with one JSON line (see harness.ts).
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const available = readdirSync(import.meta.dirname)
  .filter(
    (f) => f.endsWith(".ts") && f !== "run.ts" && f !== "harness.ts" && !f.endsWith(".test.ts"),
  )
  .map((f) => f.slice(0, -3))
  .sort();
const name = process.argv[2];

if (!name || !available.includes(name)) {
  console.error(
    `usage: npm run bench -- <name>\navailable: ${available.length ? available.join(", ") : "(none yet)"}`,
  );
  process.exit(2);
}
console.log(`bench ${name}`);
await import(pathToFileURL(join(import.meta.dirname, `${name}.ts`)).href);
