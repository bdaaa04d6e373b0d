import t from "tap";
import { NodeImages, Registry, defaultPullPolicy } from "./registry.ts";

const content = { commands: { app: ["/bin/true"] } };

t.test("push returns a fresh sha256 digest per push, even for equal content", async (t) => {
  const r = new Registry();
  const a = r.push("registry.example/app", "latest", content);
  const b = r.push("registry.example/app", "latest", content);
  t.match(a, /^sha256:[0-9a-f]{64}$/);
  t.not(a, b);
  t.equal(r.resolve("registry.example/app:latest"), b, "the tag moved to the newest push");
  t.equal(r.resolve(`registry.example/app@${a}`), a, "the old digest stays pullable");
  t.equal(r.resolve("registry.example/app:v2"), undefined);
});

t.test("familiar names normalise to the same repository", async (t) => {
  const r = new Registry();
  const d = r.push("nginx", "1.25", content);
  t.equal(r.resolve("docker.io/library/nginx:1.25"), d);
  t.equal(r.resolve("nginx"), undefined, "no latest was pushed");
});

t.test("tag and untag", async (t) => {
  const r = new Registry();
  const d1 = r.push("app", "v1", content);
  r.tag("app", "stable", d1);
  t.equal(r.resolve("app:stable"), d1);
  r.untag("app", "stable");
  t.equal(r.resolve("app:stable"), undefined);
  t.throws(() => r.tag("app", "x", "sha256:" + "0".repeat(64)), /never pushed/);
});

t.test("default pull policy follows the kubelet", async (t) => {
  const cases: [string, string][] = [
    ["app", "Always"],
    ["app:latest", "Always"],
    ["app:v1", "IfNotPresent"],
    ["app@sha256:" + "a".repeat(64), "IfNotPresent"],
    ["app:latest@sha256:" + "a".repeat(64), "IfNotPresent"],
  ];
  for (const [image, policy] of cases) t.equal(defaultPullPolicy(image), policy, image);
});

t.test("node pulls honour imagePullPolicy", async (t) => {
  const r = new Registry();
  const node = new NodeImages(r);
  const old = r.push("registry.example/app", "latest", content);

  const first = node.pull("registry.example/app:latest", "IfNotPresent");
  t.ok(first.ok && first.pulled && first.image.digest === old, "first pull downloads");

  const fresh = r.push("registry.example/app", "latest", content);
  const cached = node.pull("registry.example/app:latest", "IfNotPresent");
  t.ok(
    cached.ok && !cached.contactedRegistry && cached.image.digest === old,
    "IfNotPresent keeps the cached old latest",
  );

  const always = node.pull("registry.example/app:latest", "Always");
  t.ok(always.ok && always.pulled && always.image.digest === fresh, "Always re-resolves the tag");
  t.equal(node.tagOf("docker.io/library/app", fresh), undefined);
  t.equal(node.tagOf("registry.example/app", fresh), "registry.example/app:latest");
  t.equal(node.tagOf("registry.example/app", old), undefined, "the old image lost its tag on this node");

  const pinned = node.pull(`registry.example/app:latest@${old}`, "IfNotPresent");
  t.ok(pinned.ok && !pinned.pulled && pinned.image.digest === old, "a pinned digest is used exactly, from the cache");

  const other = new NodeImages(r);
  const never = other.pull("registry.example/app:latest", "Never");
  t.ok(!never.ok && never.reason === "ErrImageNeverPull");
  const unknown = other.pull("registry.example/nope:latest", "Always");
  t.ok(!unknown.ok && unknown.reason === "ErrImagePull");
  const invalid = other.pull("UPPER/Case", "Always");
  t.ok(!invalid.ok && invalid.reason === "InvalidImageName");
});
