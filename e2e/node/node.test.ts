// The real node itself: registered and Ready as the kubelet and containerd it runs report them,
// and what its kubelet writes in the situations the digest protocol depends on — recorded again on
// this run and compared with the committed fixtures (shared/src/testdata/kubelet-1.20), which the
// decision tests and the node emulator of the scale benchmark rely on.
import t from "tap";
import { nodeEnv } from "../world/env.ts";
import { readFixtures, recordKubelet, summarize } from "./kubelet-record.ts";

interface NodeView {
  metadata: { labels?: Record<string, string> };
  status?: {
    addresses?: { type: string; address: string }[];
    nodeInfo?: { kubeletVersion?: string; containerRuntimeVersion?: string };
    conditions?: { type: string; status: string }[];
  };
}

t.test("the node: Ready, the kubelet and runtime it says, at 127.0.0.1", async (t) => {
  const env = await nodeEnv(t, { postgres: false });
  const node = await env.kube.get<NodeView>(`/api/v1/nodes/${env.nodeName}`);
  t.equal(node.status?.conditions?.find((c) => c.type === "Ready")?.status, "True", "Ready");
  t.equal(node.status?.nodeInfo?.kubeletVersion, "v1.20.2");
  t.match(node.status?.nodeInfo?.containerRuntimeVersion, /^containerd:\/\/1\.6\./);
  t.same(
    node.status?.addresses?.find((a) => a.type === "InternalIP")?.address,
    "127.0.0.1",
    "the apiserver reaches the kubelet (logs, exec) at its InternalIP",
  );
});

t.test("what the kubelet writes matches the committed recordings", async (t) => {
  const env = await nodeEnv(t, { postgres: false });
  const { digest } = await env.images.push("app", "latest", { commands: {} });
  const live = await recordKubelet({
    kube: env.kube,
    namespace: env.namespace,
    nodeName: env.nodeName,
    image: env.images.ref("app", "latest"),
    digest,
    missingImage: env.images.ref("app", "never-pushed"),
    unreachableImage: "127.0.0.1:1/app:latest",
  });
  const committed = readFixtures();
  t.same(Object.keys(committed).sort(), Object.keys(live).sort(), "one recording per situation");
  for (const [file, rec] of Object.entries(live)) {
    const fixture = committed[file];
    t.ok(fixture, `${file} is committed`);
    if (fixture) t.same(summarize(rec), summarize(fixture), `${file}: ${rec.situation}`);
  }
  const logs = await env.logs("released", "app").catch((err: unknown) => String(err));
  t.equal(logs, "", "container logs come through the apiserver from the kubelet");
});
