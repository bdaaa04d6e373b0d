// The node's image registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1, plain HTTP,
// storage under the node's directory. Every image a test pod runs comes from here: the pause image,
// the reconciler and plugin images built from the Dockerfiles, the test applications. "CI pushes
// latest again" is a push of another image to the same tag.
import fs from "node:fs";
import path from "node:path";
import { freePort } from "../kit/ports.ts";
import { Supervised } from "../kit/processes.ts";
import { waitFor } from "../kit/wait.ts";

/** The manifest media types a pull asks for (OCI and Docker, single images and indexes). */
const MANIFEST_TYPES = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

export class ImageRegistry {
  /** host:port, the registry part of every image reference */
  host = "";
  readonly #dir: string;
  #process: Supervised | undefined;

  constructor(dir: string) {
    this.#dir = dir;
  }

  get process(): Supervised | undefined {
    return this.#process;
  }

  async start(timeoutMs = 20_000): Promise<void> {
    fs.mkdirSync(path.join(this.#dir, "storage"), { recursive: true });
    for (let attempt = 1; ; attempt++) {
      this.host = `127.0.0.1:${await freePort()}`;
      const config = path.join(this.#dir, "config.yml");
      fs.writeFileSync(
        config,
        [
          "version: 0.1",
          "log:",
          "  level: warn",
          "  accesslog:",
          "    disabled: true",
          "storage:",
          "  filesystem:",
          `    rootdirectory: ${JSON.stringify(path.join(this.#dir, "storage"))}`,
          "  delete:",
          "    enabled: true",
          "http:",
          `  addr: ${this.host}`,
          "",
        ].join("\n"),
      );
      const proc = new Supervised("registry", "docker-registry", ["serve", config], {
        logFile: path.join(this.#dir, "registry.log"),
      });
      this.#process = proc;
      try {
        await waitFor(async () => (await fetch(`http://${this.host}/v2/`)).status === 200, {
          what: `the registry on ${this.host}`,
          timeoutMs,
          intervalMs: 50,
          processes: [proc],
        });
        return;
      } catch (err) {
        await proc.stop();
        if (!proc.addressInUse() || attempt >= 3) throw err;
      }
    }
  }

  async stop(): Promise<void> {
    await this.#process?.stop();
    this.#process = undefined;
  }

  /** `repository:tag` → the full reference pods name (`127.0.0.1:<port>/repository:tag`). */
  ref(repositoryAndTag: string): string {
    return `${this.host}/${repositoryAndTag}`;
  }

  /** The manifest digest a tag points at now (what a pull of it would resolve), or undefined. */
  async digestOf(repository: string, tag: string): Promise<string | undefined> {
    const res = await fetch(`http://${this.host}/v2/${repository}/manifests/${encodeURIComponent(tag)}`, {
      method: "HEAD",
      headers: { accept: MANIFEST_TYPES },
    });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`HEAD ${repository}:${tag} on ${this.host}: HTTP ${res.status}`);
    return res.headers.get("docker-content-digest") ?? undefined;
  }

  /** Removes a tag (its manifest becomes unreachable by that tag; a pull of it fails "not found"). */
  async untag(repository: string, tag: string): Promise<void> {
    const digest = await this.digestOf(repository, tag);
    if (!digest) return;
    // distribution deletes manifests by digest; other tags of the same digest go with it.
    const res = await fetch(`http://${this.host}/v2/${repository}/manifests/${digest}`, { method: "DELETE" });
    if (res.status !== 202 && res.status !== 404) {
      throw new Error(`DELETE ${repository}@${digest} on ${this.host}: HTTP ${res.status}`);
    }
  }
}
