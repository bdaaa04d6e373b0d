// The reconciler's command line with commander, set up so that a bad flag is a UsageError (the process
// prints one line and exits 2, never commander's own text on stderr). The waiter reads its few flags
// with reconciler/src/flags.ts instead: commander costs it ~6 MB of resident memory.
import { CommanderError } from "commander";
import type { Command } from "commander";
import { UsageError } from "./cli.ts";

/** Parses `argv` (without node and script) with `program`: "exit" after --help or --version; a UsageError on bad input. */
export function parseCommand(program: Command, argv: string[]): "exit" | undefined {
  program
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: (s) => process.stdout.write(s) })
    .allowExcessArguments(false);
  try {
    program.parse(argv, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) return "exit";
      throw new UsageError(error.message.replace(/^error: /, ""));
    }
    throw error;
  }
  return undefined;
}
