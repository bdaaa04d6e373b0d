#!/usr/bin/env node
// digest-migrations-plugin: the Argo CD Config Management Plugin's command line.
//   generate             what Argo CD runs (plugin.yaml generate.command), in the application directory
//   parameters           the parameter announcements as JSON, with this installation's defaults filled in
//   render [dir]         generate for a local directory, with --namespace/--app-name/--param overrides
//   explain [dir]        what render would inject into which workload, and why
// On success the whole output is written at once; on failure nothing reaches stdout and stderr holds one
// line, which is what the Argo CD UI shows.
import { Command, CommanderError } from "commander";
import { PluginError, singleLine } from "./errors.ts";
import { explain } from "./explain.ts";
import { generateDetailed } from "./generate.ts";
import type { Env } from "./parameters.ts";
import { ANNOUNCEMENTS, ParameterSource, escaped, unknownParameter } from "./parameters.ts";
import { BUILTIN_DEFAULTS } from "./settings.ts";

const PREFIX = "digest-migrations";

interface LocalOptions {
  namespace?: string;
  appName?: string;
  param: string[];
  output: "json" | "yaml";
}

/** The environment Argo CD would give, built from the caller's environment and command-line overrides. */
function localEnv(options: LocalOptions): Env {
  const env: Record<string, string | undefined> = { ...process.env };
  if (options.namespace !== undefined) env["ARGOCD_APP_NAMESPACE"] = options.namespace;
  if (options.appName !== undefined) env["ARGOCD_APP_NAME"] = options.appName;
  for (const p of options.param) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw new PluginError(`--param ${p}: expected name=value`);
    if (!ANNOUNCEMENTS.some((a) => a.name === p.slice(0, eq))) throw unknownParameter(p.slice(0, eq), "--param");
    env[`PARAM_${escaped(p.slice(0, eq))}`] = p.slice(eq + 1);
  }
  return env;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function addLocalOptions(cmd: Command): Command {
  return cmd
    .argument("[dir]", "application directory", ".")
    .option("-n, --namespace <namespace>", "the Application's destination namespace (ARGOCD_APP_NAMESPACE)")
    .option("--app-name <name>", "the Application's name (ARGOCD_APP_NAME)")
    .option("-p, --param <name=value>", "a plugin parameter, repeatable (PARAM_<NAME>)", collect, [])
    .option("-o, --output <format>", "json or yaml", "yaml");
}

function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

export function program(): Command {
  const cli = new Command()
    .name("digest-migrations-plugin")
    .description("Argo CD Config Management Plugin: renders manifests and wires Migrators to workloads")
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: () => undefined })
    .showHelpAfterError(false);

  cli
    .command("generate")
    .description("render the application in the working directory (run by Argo CD)")
    .action(async () => {
      const result = await generateDetailed({ env: process.env, output: "json" });
      await write(result.output);
    });

  cli
    .command("parameters")
    .description("print the parameter announcements as JSON")
    .action(async () => {
      const params = new ParameterSource(process.env);
      const defaults: Record<string, string> = {
        "waiter-image": params.string("waiter-image") ?? BUILTIN_DEFAULTS.waiterImage,
        "reconciler-url": params.string("reconciler-url") ?? BUILTIN_DEFAULTS.reconcilerUrl,
      };
      const out = ANNOUNCEMENTS.map((a) => {
        const d = defaults[a.name];
        return d === undefined ? a : { ...a, string: d };
      });
      await write(JSON.stringify(out, null, 2) + "\n");
    });

  addLocalOptions(cli.command("render").description("render a local directory as Argo CD would see it")).action(
    async (dir: string, options: LocalOptions) => {
      if (options.output !== "json" && options.output !== "yaml") {
        throw new PluginError(`--output ${String(options.output)}: expected json or yaml`);
      }
      const result = await generateDetailed({ dir, env: localEnv(options), output: options.output });
      await write(result.output);
    },
  );

  addLocalOptions(cli.command("explain").description("show which workloads each Migrator gates, and why")).action(
    async (dir: string, options: LocalOptions) => {
      const result = await generateDetailed({ dir, env: localEnv(options) });
      await write(explain(result));
    },
  );
  return cli;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, with exit code 0 and their text already on stdout.
      if (error.exitCode === 0) return 0;
      if (error.code === "commander.help" || error.code === "commander.helpDisplayed") {
        process.stderr.write(`${PREFIX}: no command given; run with --help for usage\n`);
        return 2;
      }
      process.stderr.write(`${PREFIX}: ${singleLine(error.message.replace(/^error: /, ""))}\n`);
      return error.exitCode || 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${PREFIX}: ${singleLine(message)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
