// What the demo shows while it waits: the cluster's story as it unfolds, one line per change —
// pods gated and released, probe pods, migration Jobs created and finished, the Migrator
// recording a digest. It polls the API (a few requests every 500 ms) and prints differences.
import type { KubeObject, Migrator, Pod } from "@digest-migrations/shared";
import { API_VERSION, KIND, LABELS, digestFromImageID, pinnedDigest } from "@digest-migrations/shared";
import type { KubeClient, ObjectList } from "../kit/client.ts";
import { shortDigest } from "./narrator.ts";

interface JobView extends KubeObject {
  status?: { succeeded?: number; failed?: number; active?: number };
}

/** The repository digest a container status's imageID carries, if any (the node's answer). */
function nodeDigest(imageID: string | undefined): string | undefined {
  if (!imageID) return undefined;
  const found = digestFromImageID(imageID);
  return found.ok ? found.digest : undefined;
}

function podState(pod: Pod): string {
  if (pod.metadata.deletionTimestamp) return "terminating";
  if (pod.metadata.labels?.[LABELS.role] === "probe") {
    // A probe's container is meant never to start; what matters is the imageID the node records.
    const digest = nodeDigest(pod.status?.containerStatuses?.[0]?.imageID);
    if (digest) return `the node pulled the tag: ${shortDigest(digest)} (the probe's command is meant not to exist)`;
  }
  const init = pod.status?.initContainerStatuses ?? [];
  const app = pod.status?.containerStatuses ?? [];
  if (pod.status?.phase === "Succeeded") return "completed";
  if (pod.status?.phase === "Failed") return "failed";
  if (init.some((c) => c.state?.running)) {
    // The reconciler pins a gated pod's image to the digest its node resolved, before releasing it.
    const pinned = pinnedDigest(pod.spec.containers[0]?.image);
    return pinned
      ? `gated, image pinned to ${shortDigest(pinned)} (waiter init container running)`
      : "gated (waiter init container running)";
  }
  if (app.length > 0 && app.every((c) => c.state?.running)) {
    const digest = nodeDigest(app[0]?.imageID);
    return `running ${shortDigest(digest)}`;
  }
  const waiting = [...init, ...app].find(
    (c) => c.state?.waiting?.reason && c.state.waiting.reason !== "PodInitializing",
  );
  if (waiting) return `waiting: ${waiting.state?.waiting?.reason}`;
  return pod.spec.nodeName ? "starting" : "pending";
}

function role(pod: Pod): string {
  const r = pod.metadata.labels?.[LABELS.role];
  if (r === "probe") return "probe pod";
  if (r === "migration") return "migration pod";
  return "pod";
}

export class ClusterWatch {
  readonly #client: KubeClient;
  readonly #namespace: string;
  readonly #say: (line: string) => void;
  /** Pod name → its role and last state shown. */
  readonly #pods = new Map<string, { role: string; state: string }>();
  readonly #jobs = new Map<string, string>();
  /** Every migration Job seen: name → digest annotation. */
  readonly jobsSeen = new Map<string, string>();
  #migrated = "";
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #lastError = "";

  readonly #podSelector: string | undefined;

  /** `podSelector`: a label selector for the pods to show (default all of the namespace). */
  constructor(client: KubeClient, namespace: string, say: (line: string) => void, opts: { podSelector?: string } = {}) {
    this.#client = client;
    this.#namespace = namespace;
    this.#say = say;
    this.#podSelector = opts.podSelector;
  }

  start(): void {
    this.#timer = setInterval(() => void this.poll(), 500);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** One round of observation (also called directly to flush before a step ends). */
  async poll(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      await this.#pollPods();
      await this.#pollJobs();
      await this.#pollMigrator();
      this.#lastError = "";
    } catch (error) {
      // The next round tries again (the demo's own waits fail on real problems); say so once per error.
      const message = (error as Error).message;
      if (message !== this.#lastError) this.#say(`(watching the cluster: ${message}; trying again)`);
      this.#lastError = message;
    } finally {
      this.#busy = false;
    }
  }

  async #pollPods(): Promise<void> {
    const pods = await this.#client.request<ObjectList<Pod>>("GET", `/api/v1/namespaces/${this.#namespace}/pods`, {
      query: this.#podSelector === undefined ? {} : { labelSelector: this.#podSelector },
    });
    const seen = new Set<string>();
    for (const pod of pods.items) {
      const name = pod.metadata.name ?? "";
      seen.add(name);
      const state = podState(pod);
      if (this.#pods.get(name)?.state !== state) {
        this.#pods.set(name, { role: role(pod), state });
        this.#say(`${role(pod)} ${name}: ${state}`);
      }
    }
    for (const [name, shown] of [...this.#pods]) {
      if (!seen.has(name)) {
        this.#pods.delete(name);
        this.#say(`${shown.role} ${name}: gone`);
      }
    }
  }

  async #pollJobs(): Promise<void> {
    const jobs = await this.#client.get<ObjectList<JobView>>(`/apis/batch/v1/namespaces/${this.#namespace}/jobs`);
    for (const job of jobs.items) {
      const name = job.metadata.name ?? "";
      const s = job.status ?? {};
      const state = s.succeeded ? "succeeded" : s.failed ? "failed" : "running";
      if (this.#jobs.get(name) !== state) {
        const digest = job.metadata.annotations?.["migrations.coderanger.net/digest"];
        this.#say(
          this.#jobs.has(name)
            ? `migration Job ${name}: ${state}`
            : `migration Job ${name} created for ${shortDigest(digest)} (${state})`,
        );
        this.#jobs.set(name, state);
        this.jobsSeen.set(name, digest ?? "");
      }
    }
  }

  async #pollMigrator(): Promise<void> {
    const m = await this.#client.getObject<Migrator>(API_VERSION, KIND, this.#namespace, "myapp-migrations");
    const last = m?.status?.lastSuccessfulMigration ?? "";
    if (last && last !== this.#migrated) {
      this.#migrated = last;
      this.#say(`Migrator myapp-migrations: lastSuccessfulMigration = ${shortDigest(last)}`);
    }
  }
}
