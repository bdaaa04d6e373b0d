// The test applications' images: built by buildah from a Containerfile on the test base image
// (Debian + Node.js 24), pushed to the node's registry under the test's own repository prefix
// (<registry>/<namespace>/<name>), so parallel tests never share a tag. Every push is a new build
// with a new digest (a build id in its labels and environment, as CI stamps its builds), so "CI
// pushes latest again" is real: the tag moves in the registry and the node resolves it anew.
//
//   const images = new AppImages(world, namespace);
//   const { ref, digest } = await images.push("app", "latest", { commands: { migrate: "e2e/x/migrate.ts" } });
//   await images.tag("app", "latest", earlierDigest);        // a rollback push
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { bundle } from "../../scripts/bundle.ts";
import { execFileText } from "../kit/processes.ts";
import { buildImage, push, repoRoot } from "../node/images.ts";
import type { PushedImage } from "../node/images.ts";

/** What an image holds, in the words of its Containerfile. */
export interface AppImageSpec {
  /** Files under /app (the working directory): relative path → content. */
  files?: Record<string, string>;
  /** Commands on PATH: name → a Node.js program of this repository (TypeScript allowed), bundled
   *  into /app/bin/<name>.mjs with its dependencies and started as `node /app/bin/<name>.mjs "$@"`. */
  commands?: Record<string, string>;
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
}

/** Labels and environment every test image carries: which build it is. */
export const BUILD_ID_ENV = "IMAGE_BUILD_ID";

const MANIFEST_TYPES = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

const bundles = new Map<string, Promise<string>>();

/** Bundles a program once per output directory (each AppImages removes its own); returns the path. */
function bundled(source: string, outDir: string): Promise<string> {
  const abs = path.resolve(repoRoot, source);
  const key = `${outDir}\0${abs}`;
  let b = bundles.get(key);
  if (!b) {
    const out = path.join(
      outDir,
      `${path.basename(abs).replace(/\.[cm]?[jt]s$/, "")}-${randomBytes(3).toString("hex")}.mjs`,
    );
    b = bundle(abs, out, { sourcemap: false }).then(() => out);
    bundles.set(key, b);
  }
  return b;
}

export interface RegistryAddress {
  /** host:port of the node's registry */
  registry: string;
  /** local name of the base image */
  base: string;
}

export class AppImages {
  readonly #registry: string;
  readonly #base: string;
  readonly #prefix: string;
  readonly #work: string;
  /** every push, in order */
  readonly pushes: (PushedImage & { repository: string; tag: string; buildId: string })[] = [];

  constructor(address: RegistryAddress, prefix: string) {
    this.#registry = address.registry;
    this.#base = address.base;
    this.#prefix = prefix;
    this.#work = fs.mkdtempSync(path.join(os.tmpdir(), "dm-images-"));
  }

  /** The repository in the registry: `<registry>/<prefix>/<name>`. */
  repository(name: string): string {
    return `${this.#registry}/${this.#prefix}/${name}`;
  }

  /** A reference pods name: `<registry>/<prefix>/<name>:<tag>`. */
  ref(name: string, tag: string): string {
    return `${this.repository(name)}:${tag}`;
  }

  /** Builds an image from `spec` and pushes it as name:tag; returns the new digest. */
  async push(name: string, tag: string, spec: AppImageSpec): Promise<PushedImage> {
    const buildId = randomBytes(6).toString("hex");
    const context = fs.mkdtempSync(path.join(this.#work, `${name}-`));
    const lines = [`FROM ${this.#base}`, `LABEL net.digest-migrations.build-id=${buildId}`];
    if (spec.files && Object.keys(spec.files).length > 0) {
      for (const [rel, content] of Object.entries(spec.files)) {
        const file = path.join(context, "app", rel);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, content);
      }
      lines.push("COPY app/ /app/");
    }
    const commands = Object.entries(spec.commands ?? {});
    if (commands.length > 0) {
      fs.mkdirSync(path.join(context, "bin"));
      fs.mkdirSync(path.join(context, "lib"));
      for (const [command, source] of commands) {
        fs.copyFileSync(await bundled(source, this.#work), path.join(context, "lib", `${command}.mjs`));
        fs.writeFileSync(path.join(context, "bin", command), `#!/bin/sh\nexec node /app/bin/${command}.mjs "$@"\n`, {
          mode: 0o755,
        });
      }
      lines.push("COPY lib/ /app/bin/", "COPY bin/ /usr/local/bin/");
    }
    const env = { ...spec.env, [BUILD_ID_ENV]: buildId };
    lines.push(
      `ENV ${Object.entries(env)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(" ")}`,
    );
    lines.push("WORKDIR /app");
    if (spec.entrypoint) lines.push(`ENTRYPOINT ${JSON.stringify(spec.entrypoint)}`);
    if (spec.cmd) lines.push(`CMD ${JSON.stringify(spec.cmd)}`);
    fs.writeFileSync(path.join(context, "Containerfile"), lines.join("\n") + "\n");
    return this.pushContext(name, tag, context, "Containerfile", buildId);
  }

  /** Builds `context` with its Containerfile (build argument BUILD_ID set) and pushes it as name:tag. */
  async pushContext(
    name: string,
    tag: string,
    context: string,
    file: string,
    buildId = randomBytes(6).toString("hex"),
    buildArgs: Record<string, string> = {},
  ): Promise<PushedImage> {
    const local = `localhost/${this.#prefix}/${name}:${buildId}`;
    await buildImage({
      file,
      context,
      tag: local,
      buildArgs: { BASE_IMAGE: this.#base, BUILD_ID: buildId, ...buildArgs },
      labels: { "net.digest-migrations.build-id": buildId },
    });
    try {
      const pushed = await push(local, this.ref(name, tag));
      this.pushes.push({ ...pushed, repository: name, tag, buildId });
      return pushed;
    } finally {
      // The registry holds it now; buildah's storage keeps only the shared base layers.
      await execFileText("buildah", ["rmi", local]).catch(() => undefined);
    }
  }

  /** The build id of a digest pushed by this helper. */
  buildIdOf(digest: string): string | undefined {
    return this.pushes.find((p) => p.digest === digest)?.buildId;
  }

  /** The digest of a build id pushed by this helper. */
  digestOfBuild(buildId: string): string | undefined {
    return this.pushes.find((p) => p.buildId === buildId)?.digest;
  }

  /** Points name:tag at an image pushed before (a rollback push: the manifest is put under the tag again). */
  async tag(name: string, tag: string, digest: string): Promise<void> {
    const base = `http://${this.#registry}/v2/${this.#prefix}/${name}/manifests`;
    const res = await fetch(`${base}/${digest}`, { headers: { accept: MANIFEST_TYPES } });
    if (res.status !== 200) throw new Error(`GET ${this.repository(name)}@${digest}: HTTP ${res.status}`);
    const type = res.headers.get("content-type") ?? "application/vnd.oci.image.manifest.v1+json";
    const body = Buffer.from(await res.arrayBuffer());
    const put = await fetch(`${base}/${encodeURIComponent(tag)}`, {
      method: "PUT",
      headers: { "content-type": type },
      body,
    });
    if (put.status !== 201) throw new Error(`PUT ${this.ref(name, tag)}: HTTP ${put.status}: ${await put.text()}`);
  }

  /** The digest name:tag points at in the registry now (undefined: no such tag). */
  async digestOf(name: string, tag: string): Promise<string | undefined> {
    const res = await fetch(
      `http://${this.#registry}/v2/${this.#prefix}/${name}/manifests/${encodeURIComponent(tag)}`,
      {
        method: "HEAD",
        headers: { accept: MANIFEST_TYPES },
      },
    );
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`HEAD ${this.ref(name, tag)}: HTTP ${res.status}`);
    return res.headers.get("docker-content-digest") ?? undefined;
  }

  /** Removes the local build contexts (the images stay in buildah's storage until pruned). */
  close(): void {
    fs.rmSync(this.#work, { recursive: true, force: true });
  }
}
