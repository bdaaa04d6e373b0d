// Runs commands inside a world (e2e/world/world.ts): starts the control plane, the real node,
// PostgreSQL and the images, runs each command with DM_WORLD naming the world's description, then
// stops everything — also when a command fails or the run is interrupted — and prints how long
// each phase took (the budgets e2e/README.md keeps).
//
//   node e2e/world/run.ts tap                                  # npm test
//   node e2e/world/run.ts tap --then tap --jobs=1 e2e/x.ts     # phases, one after the other
//   node e2e/world/run.ts --keep                               # start it and keep it for test files run by
//                                                               # hand (npx tap e2e/…), until Ctrl-C
//
// A world still running from a run that was killed is cleaned up by the next start.
import { spawn } from "node:child_process";
import fs from "node:fs";
import { KEPT_WORLD, startWorld } from "./world.ts";
import type { World } from "./world.ts";

const args = process.argv.slice(2);
const keep = args[0] === "--keep";
if (keep) args.shift();
if (args[0] === "--") args.shift();
const phases: string[][] = [[]];
for (const a of args) {
  if (a === "--then") phases.push([]);
  else phases.at(-1)?.push(a);
}
const commands = phases.filter((p) => p.length > 0);
if (!keep && commands.length === 0) {
  console.error("usage: node e2e/world/run.ts [--keep] <command> [args…] [--then <command> [args…]]…");
  process.exit(2);
}

const log = (line: string): void => console.error(line);
const runStart = Date.now();
const budgets: [string, number][] = [];
let world: World | undefined;
let child: ReturnType<typeof spawn> | undefined;
let interrupted = false;

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    interrupted = true;
    if (child) child.kill(sig);
    else if (keep && world) void finish(0);
  });
}

async function finish(status: number): Promise<never> {
  if (keep) fs.rmSync(KEPT_WORLD, { force: true });
  try {
    const t = Date.now();
    await world?.stop();
    budgets.push(["world stop", (Date.now() - t) / 1000]);
  } catch (err) {
    console.error(`# the world did not stop cleanly: ${err instanceof Error ? err.message : String(err)}`);
    if (status === 0) status = 1;
  }
  budgets.push(["whole run", (Date.now() - runStart) / 1000]);
  console.log("# budgets (seconds):");
  for (const [name, seconds] of budgets) console.log(`#   ${name}: ${seconds.toFixed(1)}`);
  process.exit(status);
}

function run(command: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const [cmd, ...rest] = command;
    child = spawn(cmd ?? "true", rest, { stdio: "inherit", env });
    child.on("error", (err) => {
      console.error(`${command.join(" ")}: ${err.message}`);
      resolve(127);
    });
    child.on("exit", (code, signal) => {
      child = undefined;
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

try {
  world = await startWorld(log);
} catch (err) {
  console.error(`# the world did not start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await finish(1);
}
for (const [name, seconds] of Object.entries(world?.info.timings ?? {})) budgets.push([name, seconds]);
const env = { ...process.env, DM_WORLD: world?.infoFile ?? "" };

if (keep) {
  // Test files run by hand (`npx tap e2e/…`) find a kept world here without DM_WORLD.
  if (world) fs.writeFileSync(KEPT_WORLD, world.infoFile);
  console.log(`export DM_WORLD=${world?.infoFile ?? ""}`);
  console.error("# the world runs until this process gets Ctrl-C (SIGINT) or SIGTERM");
  // The daemons are detached and unreferenced: keep this process (their owner) alive.
  setInterval(() => undefined, 1 << 30);
} else {
  let status = 0;
  for (const command of commands) {
    if (interrupted) break;
    const t = Date.now();
    const code = await run(command, env);
    budgets.push([command.join(" "), (Date.now() - t) / 1000]);
    if (code !== 0 && status === 0) status = code;
  }
  await finish(interrupted && status === 0 ? 130 : status);
}
