// One call gives an end-to-end test everything it runs against on the real node:
//
//   const env = await nodeEnv(t);
//   const { digest } = await env.images.push("app", "latest", spec);     // CI pushes a new latest
//   await env.kube.createObject(deployment(env.namespace, …, env.images.ref("app", "latest")));
//
// - the world of the test run (control plane, real node, PostgreSQL, the shipped images);
// - a fresh namespace, deleted at the end (its pods stopped by the kubelet);
// - image repositories of its own in the node's registry (<registry>/<namespace>/<name>);
// - a database of its own;
// - what containerd started for the namespace's pods (from containerd's event stream);
// - a host directory the test's pods can mount (hostPath), for files a test flips (hold, fail).
import { t as tapRoot } from "tap";
import type { Test } from "tap";
import { errorText } from "../kit/wait.ts";
import { namespaceFor } from "../harness/env.ts";
import { openNodeEnv } from "./namespace.ts";
import type { NodeEnv, NodeEnvOptions } from "./namespace.ts";

export type { NodeEnv, NodeEnvOptions } from "./namespace.ts";

/** A fresh namespace for test `t` (named after it), removed in its teardown (openNodeEnv in namespace.ts). */
export async function nodeEnv(t: Test, opts: NodeEnvOptions = {}): Promise<NodeEnv> {
  const env = await openNodeEnv(namespaceFor(t.name), opts, (fn) => tapRoot.teardown(fn));
  t.teardown(async () => {
    try {
      await env.close();
    } catch (err) {
      t.fail(`teardown of ${env.namespace}: ${errorText(err)}`);
    }
  });
  return env;
}
