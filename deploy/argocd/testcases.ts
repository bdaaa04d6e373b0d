// Test cases in the formats of Argo CD's resource_customizations: health_test.yaml (`tests:` of
// {healthStatus, inputPath}) and actions/action_test.yaml (`discoveryTests:` of {inputPath, result}). Every
// health_test.yaml under this directory counts, so objects recorded from real runs can be dropped into a
// directory of their own (e.g. testdata/recorded/) with a health_test.yaml beside them. One extension: a
// healthStatus without `message` checks the status only.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { ARGOCD_DIR } from "./lua.ts";
import type { DiscoveredAction, HealthStatus } from "./lua.ts";

export interface HealthCase {
  /** Where the case is written, for test names and errors: "health_test.yaml: testdata/x.yaml". */
  name: string;
  object: unknown;
  expected: HealthStatus;
}

export interface DiscoveryCase {
  name: string;
  object: unknown;
  expected: Array<DiscoveredAction & { name: string }>;
}

function readYaml(file: string): unknown {
  try {
    return parse(readFileSync(file, "utf8")) as unknown;
  } catch (error) {
    throw new Error(`${path.relative(ARGOCD_DIR, file)}: ${(error as Error).message}`, { cause: error });
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Files named `name` under dir, recursively, sorted. */
export function findFiles(dir: string, name: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => path.basename(f) === name && !f.split(path.sep).includes("node_modules"))
    .map((f) => path.join(dir, f))
    .sort();
}

function entries(file: string, key: string): Array<Record<string, unknown>> {
  const doc = readYaml(file);
  const list = isRecord(doc) ? doc[key] : undefined;
  const where = path.relative(ARGOCD_DIR, file);
  if (!Array.isArray(list)) throw new Error(`${where}: no list "${key}"`);
  return list.map((e, i) => {
    if (!isRecord(e) || typeof e["inputPath"] !== "string") {
      throw new Error(`${where}: ${key}[${i}] has no inputPath`);
    }
    return e;
  });
}

export function healthCases(dir: string = ARGOCD_DIR): HealthCase[] {
  return findFiles(dir, "health_test.yaml").flatMap((file) =>
    entries(file, "tests").map((e, i) => {
      const input = e["inputPath"] as string;
      const name = `${path.relative(ARGOCD_DIR, file)}: ${input}`;
      const hs = e["healthStatus"];
      if (!isRecord(hs) || typeof hs["status"] !== "string")
        throw new Error(`${name}: tests[${i}] has no healthStatus.status`);
      return {
        name,
        object: readYaml(path.resolve(path.dirname(file), input)),
        expected: hs as unknown as HealthStatus,
      };
    }),
  );
}

export function discoveryCases(dir: string = ARGOCD_DIR): DiscoveryCase[] {
  return findFiles(dir, "action_test.yaml").flatMap((file) =>
    entries(file, "discoveryTests").map((e, i) => {
      const input = e["inputPath"] as string;
      const name = `${path.relative(ARGOCD_DIR, file)}: ${input}`;
      if (!Array.isArray(e["result"])) throw new Error(`${name}: discoveryTests[${i}] has no result list`);
      return {
        name,
        object: readYaml(path.resolve(path.dirname(file), input)),
        expected: e["result"] as DiscoveryCase["expected"],
      };
    }),
  );
}
