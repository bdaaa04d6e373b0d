// An image that exists on the node only, never in a registry: what a kubelet reports for an image
// nobody pulled (the NoDigest case).
import fs from "node:fs";
import path from "node:path";
import type { Test } from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import { pod } from "../harness/objects.ts";
import { execFileText } from "../kit/processes.ts";
import { CRI_NAMESPACE } from "../node/containerd.ts";
import type { NodeEnv } from "./namespace.ts";

/**
 * An image that exists on the node only, never in a registry (built here and imported into
 * containerd): a pod runs it with imagePullPolicy Never, and the kubelet reports its imageID as the
 * image's configuration ID, `sha256:<hex>`, with no repository digest. Returns the reference and
 * that ID; the image is removed from the node and buildah at the test's end.
 */
export async function nodeOnlyImage(t: Test, env: NodeEnv, name: string): Promise<{ ref: string; id: string }> {
  const ref = `localhost/${env.namespace}/${name}:local`;
  const archive = path.join(env.hostDir, `${name}.tar`);
  const ctr = (...args: string[]): Promise<string> =>
    execFileText("ctr", ["--address", env.world.node.containerdSocket, "--namespace", CRI_NAMESPACE, ...args], {
      timeoutMs: 120_000,
    });
  const container = (await execFileText("buildah", ["from", "--pull=never", env.world.images.base])).trim();
  try {
    await execFileText("buildah", ["commit", "--quiet", container, ref]);
  } finally {
    await execFileText("buildah", ["rm", container]).catch(() => undefined);
  }
  t.teardown(async () => {
    await ctr("images", "rm", ref).catch(() => undefined);
    await execFileText("buildah", ["rmi", ref]).catch(() => undefined);
  });
  await execFileText("buildah", ["push", "--quiet", "--disable-compression", ref, `oci-archive:${archive}:${ref}`], {
    timeoutMs: 300_000,
  });
  try {
    await ctr("images", "import", archive);
  } finally {
    fs.rmSync(archive, { force: true });
  }
  const id = (
    await execFileText("buildah", ["inspect", "--type", "image", "--format", "{{.FromImageID}}", ref])
  ).trim();
  return { ref, id: `sha256:${id.replace(/^sha256:/, "")}` };
}

/** A bare pod `name` (labelled app=`app`) whose container `app` runs the node-only image `ref`, never pulled. */
export function nodeOnlyPod(namespace: string, name: string, ref: string, app: string): KubeObject {
  return pod(
    namespace,
    name,
    {
      terminationGracePeriodSeconds: 1,
      containers: [{ name: "app", image: ref, imagePullPolicy: "Never", command: ["sleep", "3600"] }],
    },
    { app },
  );
}
