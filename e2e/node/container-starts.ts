// Every container the node's runtime started, seen from containerd itself (its event stream), not
// from anything the product or the kubelet reports: for each `/tasks/start` of a Kubernetes
// container, the pod and container it belongs to (the CRI plugin's labels) and the image it was
// created from — the image ID the kubelet asked for, resolved to the repository digests that name
// it in containerd's content store. This is how the tests check that no application container
// ever starts on an image that is not a migrated digest.
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import readline from "node:readline";
import { CRI_NAMESPACE } from "./containerd.ts";
import { execFileText } from "../kit/processes.ts";
import { delay, waitFor } from "../kit/wait.ts";

export interface ContainerStart {
  containerId: string;
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  /** the image ID (config digest) the container was created from */
  imageId: string;
  /** repository digests (`<repository>@sha256:…`) of that image in the node's content store */
  repoDigests: string[];
  /** when containerd reported the start */
  at: Date;
}

interface CriMetadata {
  Metadata?: { ImageRef?: string; Config?: { image?: { image?: string } } };
}

interface ContainerInfoJson {
  Labels?: Record<string, string>;
  Extensions?: Record<string, { value?: string }>;
}

export class ContainerStarts {
  readonly starts: ContainerStart[] = [];
  /** errors while resolving a start (reported by the tests that read the starts) */
  readonly errors: string[] = [];
  readonly #socket: string;
  readonly #namespaces: Set<string> | undefined;
  #child: ChildProcess | undefined;
  #pending = new Set<Promise<void>>();
  #stopped = false;
  #reopening = false;
  /** containers seen started (also those filtered out), so a rescan does not count one twice */
  readonly #seen = new Set<string>();
  /** times the stream was reopened after containerd went away (a containerd restart) */
  resubscribed = 0;

  /** `namespaces`: only starts of pods in these Kubernetes namespaces are kept (default all). */
  constructor(socket: string, namespaces?: string[]) {
    this.#socket = socket;
    this.#namespaces = namespaces ? new Set(namespaces) : undefined;
  }

  #ctr(args: string[]): Promise<string> {
    return execFileText("ctr", ["--address", this.#socket, "--namespace", CRI_NAMESPACE, ...args], {
      timeoutMs: 30_000,
    });
  }

  /** Starts following containerd's events; resolves once the stream is open. When containerd goes
   *  away (a restart), the stream is opened again, and the tasks running by then that were not seen
   *  starting are recorded (at the time of the rescan). */
  async start(): Promise<void> {
    const child = spawn("ctr", ["--address", this.#socket, "events"], { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    child.unref();
    child.once("exit", () => {
      if (this.#stopped || this.#reopening || this.#child !== child) return;
      this.#child = undefined;
      const p = this.#reopen();
      this.#pending.add(p);
      void p.finally(() => this.#pending.delete(p));
    });
    // `ctr events` prints nothing until an event comes: make one (a containerd namespace created and
    // removed again) and wait until the stream shows it, so no start after this resolves is missed.
    const marker = `dm-events-${randomBytes(4).toString("hex")}`;
    const subscribed = Promise.withResolvers<void>();
    const lines = readline.createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      if (line.includes("/namespaces/create") && line.includes(marker)) subscribed.resolve();
      this.#onLine(line);
    });
    // Once subscribed, a later exit is the reopen's business (above), not this start's.
    subscribed.promise.catch(() => undefined);
    child.once("error", subscribed.reject);
    child.once("exit", (code) => subscribed.reject(new Error(`ctr events exited (${code})`)));
    await waitFor(
      async () => {
        await execFileText("ctr", ["--address", this.#socket, "namespaces", "create", marker]).catch(() => undefined);
        await execFileText("ctr", ["--address", this.#socket, "namespaces", "remove", marker]).catch(() => undefined);
        return Promise.race([subscribed.promise.then(() => true), delay(200).then(() => false)]);
      },
      { what: "containerd's event stream", timeoutMs: 15_000 },
    );
  }

  #onLine(line: string): void {
    // 2026-12-01 22:24:54.473595895 +0000 UTC k8s.io /tasks/start {"container_id":"…","pid":20382}
    const m = /^(\S+ \S+) \S+ \S+ (\S+) \/tasks\/start (\{.*\})$/.exec(line);
    if (!m || m[2] !== CRI_NAMESPACE) return;
    const at = new Date(`${m[1]?.slice(0, 23)}Z`);
    const { container_id: id } = JSON.parse(m[3] ?? "{}") as { container_id?: string };
    if (!id) return;
    this.#track(id, at);
  }

  #track(id: string, at: Date): void {
    if (this.#seen.has(id)) return;
    this.#seen.add(id);
    const p = this.#resolve(id, at).catch((err: unknown) => {
      this.errors.push(`container ${id}: ${err instanceof Error ? err.message : String(err)}`);
    });
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  async #resolve(id: string, at: Date): Promise<void> {
    const info = JSON.parse(await this.#ctr(["containers", "info", id])) as ContainerInfoJson;
    const labels = info.Labels ?? {};
    if (labels["io.cri-containerd.kind"] !== "container") return; // a pod sandbox (pause)
    const namespace = labels["io.kubernetes.pod.namespace"] ?? "";
    if (this.#namespaces && !this.#namespaces.has(namespace)) return;
    const raw = info.Extensions?.["io.cri-containerd.container.metadata"]?.value;
    const meta = raw ? (JSON.parse(Buffer.from(raw, "base64").toString("utf8")) as CriMetadata) : {};
    const imageId = meta.Metadata?.ImageRef ?? meta.Metadata?.Config?.image?.image ?? "";
    this.starts.push({
      containerId: id,
      namespace,
      pod: labels["io.kubernetes.pod.name"] ?? "",
      podUid: labels["io.kubernetes.pod.uid"] ?? "",
      container: labels["io.kubernetes.container.name"] ?? "",
      imageId,
      repoDigests: await this.repoDigestsOf(imageId),
      at,
    });
  }

  /** Opens the stream again once containerd answers, then records running tasks not seen starting. */
  async #reopen(): Promise<void> {
    this.#reopening = true;
    try {
      await waitFor(
        async () => {
          if (this.#stopped) return true;
          await this.start();
          return true;
        },
        { what: "containerd's event stream to reopen", timeoutMs: 120_000, intervalMs: 500 },
      );
    } finally {
      this.#reopening = false;
    }
    if (this.#stopped) return;
    this.resubscribed++;
    // `ctr tasks list`: TASK PID STATUS
    for (const line of (await this.#ctr(["tasks", "list"])).split("\n").slice(1)) {
      const [id, , status] = line.trim().split(/\s+/);
      if (id && status === "RUNNING") this.#track(id, new Date());
    }
  }

  /** The repository digests of an image ID: every `<repo>@sha256:<manifest>` name in containerd whose
   *  manifest's config is that image. */
  async repoDigestsOf(imageId: string): Promise<string[]> {
    const names = (await this.#ctr(["images", "list", "--quiet"])).split("\n").filter((n) => n.includes("@sha256:"));
    const out: string[] = [];
    for (const name of names) {
      const manifestDigest = name.slice(name.lastIndexOf("@") + 1);
      try {
        const manifest = JSON.parse(await this.#ctr(["content", "get", manifestDigest])) as {
          config?: { digest?: string };
        };
        if (manifest.config?.digest === imageId) out.push(name);
      } catch {
        /* an index or content not kept */
      }
    }
    return out;
  }

  /** Waits until every start seen so far is resolved. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  stop(): void {
    this.#stopped = true;
    this.#child?.kill("SIGTERM");
    this.#child = undefined;
  }
}
