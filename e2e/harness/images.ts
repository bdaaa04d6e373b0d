// Image contents for the simulated registry (see e2e/emulator/registry.ts): what a container command
// means when the emulator runs it. Every command is a real local process on Node 24
// (`process.execPath`), so tests exercise real executables, exit codes and signals.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { WAITER_COMMAND } from "@digest-migrations/shared";
import type { ImageContent } from "../emulator/registry.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The waiter bundle built by `npm run build` (reconciler/dist/waiter.mjs). */
export const WAITER_BUNDLE = path.join(repoRoot, "reconciler/dist/waiter.mjs");

/** The reconciler image as the node sees it: its waiter command runs the real waiter bundle. */
export function waiterImage(bundle: string = WAITER_BUNDLE): ImageContent {
  return { commands: { [WAITER_COMMAND]: [process.execPath, bundle] } };
}

/** An image whose commands are inline Node.js programs (`node -e <source> <args…>`). */
export function inlineNodeImage(
  commands: Record<string, string>,
  extra: Omit<ImageContent, "commands"> = {},
): ImageContent {
  return {
    ...extra,
    commands: Object.fromEntries(
      Object.entries(commands).map(([name, source]) => [name, [process.execPath, "-e", source]]),
    ),
  };
}

/** An image whose commands are Node.js script files (TypeScript runs directly on Node 24). */
export function scriptImage(
  commands: Record<string, string>,
  extra: Omit<ImageContent, "commands"> = {},
): ImageContent {
  return {
    ...extra,
    commands: Object.fromEntries(
      Object.entries(commands).map(([name, file]) => [name, [process.execPath, path.resolve(file)]]),
    ),
  };
}
