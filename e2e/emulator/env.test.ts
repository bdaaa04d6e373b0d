import t from "tap";
import type { Pod } from "@digest-migrations/shared";
import { ContainerConfigError, containerEnv, expand, fieldRefValue } from "./env.ts";
import type { EnvSources } from "./env.ts";

const pod: Pod = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "web-1", namespace: "shop", uid: "u-1", labels: { app: "web" }, annotations: { "a/b": "c" } },
  spec: { containers: [], nodeName: "node-1", serviceAccountName: "sa" },
  status: { podIP: "127.1.0.5", hostIP: "127.1.0.1" },
};

const sources: EnvSources = {
  secret: async (_ns, name) => (name === "db" ? { url: "postgres://x" } : undefined),
  configMap: async (_ns, name) => (name === "cfg" ? { MODE: "fast", LEVEL: "3" } : undefined),
};

t.test("expand", async (t) => {
  const env = { A: "1", B: "two" };
  const cases: [string, string][] = [
    ["$(A)-$(B)", "1-two"],
    ["$(C)", "$(C)"],
    ["$$(A)", "$(A)"],
    ["$(A", "$(A"],
    ["plain $ sign", "plain $ sign"],
  ];
  for (const [input, want] of cases) t.equal(expand(input, env), want, input);
});

t.test("fieldRef paths", async (t) => {
  const cases: [string, string][] = [
    ["metadata.name", "web-1"],
    ["metadata.namespace", "shop"],
    ["metadata.uid", "u-1"],
    ["metadata.labels['app']", "web"],
    ["metadata.annotations['a/b']", "c"],
    ["metadata.labels", 'app="web"'],
    ["status.podIP", "127.1.0.5"],
    ["spec.nodeName", "node-1"],
  ];
  for (const [p, want] of cases) t.equal(fieldRefValue(pod, p), want, p);
  t.throws(() => fieldRefValue(pod, "spec.nope"), ContainerConfigError);
});

t.test("containerEnv: envFrom, order, refs, optional", async (t) => {
  const env = await containerEnv(
    pod,
    {
      name: "app",
      envFrom: [{ configMapRef: { name: "cfg" }, prefix: "CFG_" }, { secretRef: { name: "missing", optional: true } }],
      env: [
        { name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "GREETING", value: "hi $(POD) in $(CFG_MODE)" },
        { name: "DB", valueFrom: { secretKeyRef: { name: "db", key: "url" } } },
        { name: "LEVEL", valueFrom: { configMapKeyRef: { name: "cfg", key: "LEVEL" } } },
        { name: "OPT", valueFrom: { secretKeyRef: { name: "db", key: "nope", optional: true } } },
        { name: "CFG_MODE", value: "override" },
      ],
    },
    sources,
  );
  t.same(env, {
    CFG_MODE: "override",
    CFG_LEVEL: "3",
    POD: "web-1",
    GREETING: "hi web-1 in fast",
    DB: "postgres://x",
    LEVEL: "3",
  });
});

t.test("containerEnv: missing sources are CreateContainerConfigError", async (t) => {
  await t.rejects(
    containerEnv(
      pod,
      { name: "a", env: [{ name: "X", valueFrom: { secretKeyRef: { name: "nope", key: "k" } } }] },
      sources,
    ),
    { name: "ContainerConfigError", message: 'secret "nope" not found' },
  );
  await t.rejects(
    containerEnv(
      pod,
      { name: "a", env: [{ name: "X", valueFrom: { secretKeyRef: { name: "db", key: "k" } } }] },
      sources,
    ),
    { message: "couldn't find key k in secret shop/db" },
  );
  await t.rejects(containerEnv(pod, { name: "a", envFrom: [{ configMapRef: { name: "gone" } }] }, sources), {
    message: 'configmap "gone" not found',
  });
});
