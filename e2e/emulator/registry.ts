// The simulated container registry and each node's image store.
//
// The registry maps repository:tag → digest and digest → image content, and tests move tags the
// way CI pushes a new `latest`. A node keeps what it pulled (tag → digest, digests present) and
// decides pulls like the kubelet does from `imagePullPolicy` (field defaulted by the apiserver:
// `Always` for `:latest` or no tag, else `IfNotPresent`; a reference with `@sha256:` pulls that
// exact digest). So "same tag, new digest" and "this node still has an old latest" are real.
import { createHash } from "node:crypto";
import { parseImageReference } from "@digest-migrations/shared";

/**
 * What a command name means inside an image: the argv prefix of a local executable (the
 * container's remaining command words and args are appended), or a function building the argv.
 */
export type ImageCommand =
  readonly string[] | ((ctx: CommandContext) => { argv: string[]; env?: Record<string, string> });

export interface CommandContext {
  /** The container's command words after the first, then its args (already $(VAR)-expanded). */
  args: string[];
  env: Record<string, string>;
  /** Directory holding the image's files (the process's working directory). */
  imageDir: string;
  podName: string;
  podNamespace: string;
  containerName: string;
}

export interface ImageContent {
  /** The image's files: relative path → content, or a directory on disk used as is. */
  files?: Record<string, string> | string;
  /** Command name (container `command[0]`, matched whole or by basename) → local executable. */
  commands: Record<string, ImageCommand>;
  /** Docker ENTRYPOINT and CMD, used when the container leaves `command` / `args` unset. */
  entrypoint?: string[];
  cmd?: string[];
  /** Image environment (ENV), overridden by the container's env. */
  env?: Record<string, string>;
}

export interface StoredImage {
  repository: string;
  digest: string;
  content: ImageContent;
}

export interface ParsedImage {
  /** Normalised repository: docker.io/library/nginx, registry.example/app. */
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseImage(image: string): ParsedImage {
  const ref = parseImageReference(image);
  const parsed: ParsedImage = { repository: `${ref.domain.toLowerCase()}/${ref.path}` };
  if (ref.tag !== undefined) parsed.tag = ref.tag;
  if (ref.digest !== undefined) parsed.digest = ref.digest;
  return parsed;
}

/** The kubelet's default when `imagePullPolicy` is unset (the apiserver normally fills it in). */
export function defaultPullPolicy(image: string): "Always" | "IfNotPresent" {
  const ref = parseImage(image);
  if (ref.digest !== undefined) return "IfNotPresent";
  return ref.tag === undefined || ref.tag === "latest" ? "Always" : "IfNotPresent";
}

export class Registry {
  readonly #tags = new Map<string, string>(); // repository:tag → digest
  readonly #images = new Map<string, StoredImage>(); // repository@digest → image
  #pushes = 0;

  /**
   * Pushes `content` as `name:tag` and returns its new digest (`sha256:` + 64 hex, unique per
   * push even for equal content, like a rebuilt image with new timestamps).
   */
  push(name: string, tag: string, content: ImageContent): string {
    const { repository } = parseImage(name);
    this.#pushes++;
    const digest = `sha256:${createHash("sha256")
      .update(`${repository}:${tag}\n${this.#pushes}\n${describeContent(content)}`)
      .digest("hex")}`;
    this.#images.set(`${repository}@${digest}`, { repository, digest, content });
    this.#tags.set(`${repository}:${tag}`, digest);
    return digest;
  }

  /** Points `name:tag` at an already pushed digest (a retag / rollback push). */
  tag(name: string, tag: string, digest: string): void {
    const { repository } = parseImage(name);
    if (!this.#images.has(`${repository}@${digest}`))
      throw new Error(`registry: ${repository}@${digest} was never pushed`);
    this.#tags.set(`${repository}:${tag}`, digest);
  }

  /** Removes a tag, so pulls of it fail (the image's digest stays pullable). */
  untag(name: string, tag: string): void {
    this.#tags.delete(`${parseImage(name).repository}:${tag}`);
  }

  /** The digest `image` resolves to now, or undefined if the registry does not know it. */
  resolve(image: string): string | undefined {
    const ref = parseImage(image);
    if (ref.digest !== undefined) return this.#images.has(`${ref.repository}@${ref.digest}`) ? ref.digest : undefined;
    return this.#tags.get(`${ref.repository}:${ref.tag ?? "latest"}`);
  }

  image(repository: string, digest: string): StoredImage | undefined {
    return this.#images.get(`${repository}@${digest}`);
  }
}

function describeContent(content: ImageContent): string {
  const commands = Object.entries(content.commands).map(([k, v]) => [k, typeof v === "function" ? v.toString() : v]);
  return JSON.stringify([content.files ?? null, commands, content.entrypoint, content.cmd, content.env]);
}

export type PullOutcome =
  | { ok: true; image: StoredImage; pulled: boolean; contactedRegistry: boolean }
  | { ok: false; reason: "ErrImagePull" | "ErrImageNeverPull" | "InvalidImageName"; message: string };

/** One node's image store: what it pulled, and the kubelet's pull decision. */
export class NodeImages {
  readonly #registry: Registry;
  readonly #tags = new Map<string, string>(); // repository:tag → digest, as last pulled on this node
  readonly #present = new Set<string>(); // repository@digest

  constructor(registry: Registry) {
    this.#registry = registry;
  }

  /** Ensures `image` is present under `policy` and says which image (digest) the container gets. */
  pull(image: string, policy: string | undefined): PullOutcome {
    let ref: ParsedImage;
    try {
      ref = parseImage(image);
    } catch (err) {
      return { ok: false, reason: "InvalidImageName", message: err instanceof Error ? err.message : String(err) };
    }
    const effective = policy || defaultPullPolicy(image);
    const local = this.#localDigest(ref);
    if (effective === "Never" || (effective === "IfNotPresent" && local !== undefined)) {
      if (local === undefined) {
        return {
          ok: false,
          reason: "ErrImageNeverPull",
          message: `Container image "${image}" is not present with pull policy of Never`,
        };
      }
      const stored = this.#registry.image(ref.repository, local);
      if (!stored) throw new Error(`node image store: ${ref.repository}@${local} present but unknown to the registry`);
      return { ok: true, image: stored, pulled: false, contactedRegistry: false };
    }
    const digest = this.#registry.resolve(image);
    const stored = digest === undefined ? undefined : this.#registry.image(ref.repository, digest);
    if (digest === undefined || !stored) {
      return {
        ok: false,
        reason: "ErrImagePull",
        message: `rpc error: code = NotFound desc = failed to pull and unpack image "${image}": not found`,
      };
    }
    const pulled = !this.#present.has(`${ref.repository}@${digest}`);
    this.#present.add(`${ref.repository}@${digest}`);
    if (ref.digest === undefined) this.#tags.set(`${ref.repository}:${ref.tag ?? "latest"}`, digest);
    return { ok: true, image: stored, pulled, contactedRegistry: true };
  }

  /** The tag this node's copy of `repository@digest` still carries, if any (containerd's repoTags[0]). */
  tagOf(repository: string, digest: string): string | undefined {
    for (const [k, d] of this.#tags) if (d === digest && k.startsWith(`${repository}:`)) return k;
    return undefined;
  }

  has(image: string): boolean {
    return this.#localDigest(parseImage(image)) !== undefined;
  }

  #localDigest(ref: ParsedImage): string | undefined {
    if (ref.digest !== undefined) return this.#present.has(`${ref.repository}@${ref.digest}`) ? ref.digest : undefined;
    return this.#tags.get(`${ref.repository}:${ref.tag ?? "latest"}`);
  }
}
