// A command line of `--name value` flags read with Node's own `util.parseArgs`, for the waiter: its init
// container runs under a 64Mi memory limit, and commander (with the node:child_process it loads) costs
// it ~6 MB of resident memory. Bad input is a UsageError worded as commander words it for the
// reconciler (`required option '--api <url>' not specified`, `unknown option '--x'`, `too many
// arguments`); --help prints the usage built from the same table.
import type { ParseArgsOptionsConfig } from "node:util";
import { UsageError } from "./cli.ts";

export interface Flag {
  /** The value's name in the usage line, e.g. "<url>". */
  value: string;
  help: string;
  required?: boolean;
  default?: string;
}

/** Flags by long name (without the dashes). */
export type Flags = Record<string, Flag>;

/** Each flag's value (the default when absent), or "exit" after --help; throws UsageError on bad input. */
export function parseFlags<F extends Flags>(
  command: string,
  description: string,
  flags: F,
  argv: string[],
): Record<keyof F, string | undefined> | "exit" {
  const { parseArgs } = process.getBuiltinModule("node:util");
  const options: ParseArgsOptionsConfig = { help: { type: "boolean", short: "h" } };
  for (const name of Object.keys(flags)) options[name] = { type: "string" };
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const positionals = tokens.filter((token) => token.kind === "positional").length;
  const given: Record<string, string> = {};
  for (const token of tokens) {
    if (token.kind !== "option") continue;
    if (token.name === "help") {
      process.stdout.write(usage(command, description, flags));
      return "exit";
    }
    const flag = flags[token.name];
    if (flag === undefined) throw new UsageError(`unknown option '${token.rawName}'`);
    if (token.value === undefined) throw new UsageError(`option '--${token.name} ${flag.value}' argument missing`);
    given[token.name] = token.value;
  }
  if (positionals > 0) throw new UsageError(`too many arguments. Expected 0 arguments but got ${positionals}.`);
  const values = {} as Record<keyof F, string | undefined>;
  for (const [name, flag] of Object.entries(flags)) {
    const value = given[name] ?? flag.default;
    if (value === undefined && flag.required)
      throw new UsageError(`required option '--${name} ${flag.value}' not specified`);
    values[name as keyof F] = value;
  }
  return values;
}

/** The --help text: the usage line, the description and one line per flag. */
export function usage(command: string, description: string, flags: Flags): string {
  const lines: [string, string][] = Object.entries(flags).map(([name, flag]) => {
    const notes = [flag.required ? "required" : "", flag.default === undefined ? "" : `default: ${flag.default}`];
    const note = notes.filter(Boolean).join(", ");
    return [`  --${name} ${flag.value}`, `${flag.help}${note ? ` (${note})` : ""}`];
  });
  lines.push(["  -h, --help", "display help for command"]);
  const width = Math.max(...lines.map(([left]) => left.length)) + 2;
  const body = lines.map(([left, right]) => left.padEnd(width) + right).join("\n");
  return `Usage: ${command} [options]\n\n${description}\n\nOptions:\n${body}\n`;
}
