// Images without a Docker engine: buildah (Debian's 1.28, overlay storage, runc isolation) builds
// every image the tests run, and pushes it to the node's registry.
// - the Node.js base (e2e/node/base-image.sh: Debian's archive + the pinned Node.js 24 binary), the
//   stand-in for the public node:24-bookworm-slim that the Dockerfiles name by default;
// - the pause image of the pod sandboxes, from the pause binary build.sh compiles;
// - Dockerfile.reconciler and Dockerfile.plugin, unchanged, with NODE_IMAGE set to that base;
// - the test applications, from their own Containerfiles.
// RUN steps use the host's network namespace (no CNI bridge for builds) and, for `npm ci`, the
// machine's CA bundle: the package registries are reached through a proxy with its own authority.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execFileText, runStreaming } from "../kit/processes.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../..");
const HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** Makes (or finds cached) the Node.js 24 base image; returns its local name. */
export async function ensureBaseImage(log: (line: string) => void = () => {}): Promise<string> {
  let last = "";
  await runStreaming("bash", [path.join(here, "base-image.sh")], (line) => {
    last = line.trim() || last;
    if (line.startsWith("[")) log(line);
  });
  if (!last.startsWith("localhost/")) throw new Error(`base-image.sh printed no image name (last line: ${last})`);
  return last;
}

export interface PushedImage {
  /** the reference pushed, e.g. 127.0.0.1:5000/app:latest */
  ref: string;
  /** the manifest digest the registry stored (sha256:…) */
  digest: string;
}

/** Pushes a local image to `ref` (plain HTTP) and returns the manifest digest. */
export async function push(localImage: string, ref: string): Promise<PushedImage> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-push-"));
  try {
    const digestFile = path.join(dir, "digest");
    await execFileText("buildah", [
      "push",
      "--quiet",
      "--tls-verify=false",
      "--digestfile",
      digestFile,
      localImage,
      `docker://${ref}`,
    ]);
    const digest = fs.readFileSync(digestFile, "utf8").trim();
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`buildah push ${ref}: digest file says "${digest}"`);
    return { ref, digest };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The pause image (`FROM scratch`, the static pause binary as its entrypoint), committed locally. */
export async function buildPauseImage(pauseBinary: string, version: string): Promise<string> {
  const name = `localhost/digest-migrations-e2e/pause:${version}`;
  const container = (await execFileText("buildah", ["from", "--pull=never", "scratch"])).trim();
  try {
    await execFileText("buildah", ["copy", "--quiet", "--chmod", "0755", container, pauseBinary, "/pause"]);
    await execFileText("buildah", ["config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container]);
    await execFileText("buildah", ["commit", "--quiet", container, name]);
  } finally {
    await execFileText("buildah", ["rm", container]).catch(() => undefined);
  }
  return name;
}

export interface BuildOptions {
  /** the Containerfile/Dockerfile, relative to `context` or absolute */
  file: string;
  context: string;
  /** local name of the result */
  tag: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  log?: (line: string) => void;
}

/** `buildah bud` of a Dockerfile as users build it: host network for RUN, the host's CA bundle for TLS. */
export async function buildImage(opts: BuildOptions): Promise<string> {
  const npmrc = path.join(os.tmpdir(), "digest-migrations-build.npmrc");
  // npm in the build container trusts the same authorities as the host (npm's own `cafile` setting;
  // Node.js does not read the system trust store).
  fs.writeFileSync(npmrc, `cafile=${HOST_CA_BUNDLE}\naudit=false\nfund=false\nupdate-notifier=false\n`);
  const args = [
    "bud",
    "--quiet",
    "--pull=never",
    "--network=host",
    "--layers=false",
    "-v",
    `${HOST_CA_BUNDLE}:${HOST_CA_BUNDLE}:ro`,
    "-v",
    `${npmrc}:/usr/local/etc/npmrc:ro`,
    ...Object.entries(opts.buildArgs ?? {}).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]),
    ...Object.entries(opts.labels ?? {}).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
    "-f",
    opts.file,
    "-t",
    opts.tag,
    opts.context,
  ];
  await runStreaming("buildah", args, opts.log ?? (() => {}));
  return opts.tag;
}
