import t from "tap";
import fc from "fast-check";
import { type ImageIdDigest, digestFromImageID, isDigest, parseDigest } from "./image-id.ts";

const H64 = "0123456789abcdef".repeat(4);
const D = `sha256:${H64}`;
const D384 = `sha384:${"e".repeat(96)}`;
const D512 = `sha512:${"f".repeat(128)}`;

t.test("every imageID form kubelets report", async (t) => {
  const cases: {
    name: string;
    imageID: string;
    want: ImageIdDigest | { ok: false; reason: string; message: RegExp };
  }[] = [
    {
      name: "dockershim pulled image",
      imageID: `docker-pullable://registry.example/app@${D}`,
      want: { ok: true, digest: D, repository: "registry.example/app" },
    },
    {
      name: "dockershim familiar name",
      imageID: `docker-pullable://nginx@${D}`,
      want: { ok: true, digest: D, repository: "docker.io/library/nginx" },
    },
    {
      name: "containerd repo digest",
      imageID: `docker.io/library/postgres@${D}`,
      want: { ok: true, digest: D, repository: "docker.io/library/postgres" },
    },
    {
      name: "registry with port",
      imageID: `localhost:5000/team/app@${D}`,
      want: { ok: true, digest: D, repository: "localhost:5000/team/app" },
    },
    {
      name: "name with tag and digest",
      imageID: `registry.example/app:latest@${D}`,
      want: { ok: true, digest: D, repository: "registry.example/app" },
    },
    { name: "sha384", imageID: `ghcr.io/o/r@${D384}`, want: { ok: true, digest: D384, repository: "ghcr.io/o/r" } },
    { name: "sha512", imageID: `ghcr.io/o/r@${D512}`, want: { ok: true, digest: D512, repository: "ghcr.io/o/r" } },
    {
      name: "dockershim local image: config ID",
      imageID: `docker://${D}`,
      want: {
        ok: false,
        reason: "ConfigID",
        message: /^imageID "docker:\/\/sha256:0123.*" is an image configuration ID, not a repository digest/,
      },
    },
    {
      name: "containerd local image: bare config ID",
      imageID: D,
      want: { ok: false, reason: "ConfigID", message: /configuration ID/ },
    },
    {
      name: "bare sha512 config ID",
      imageID: D512,
      want: { ok: false, reason: "ConfigID", message: /configuration ID/ },
    },
    {
      name: "hex without algorithm",
      imageID: H64,
      want: { ok: false, reason: "ConfigID", message: /configuration ID/ },
    },
    { name: "empty", imageID: "", want: { ok: false, reason: "Empty", message: /imageID is empty/ } },
    {
      name: "upper-case hex",
      imageID: `registry.example/app@sha256:${H64.toUpperCase()}`,
      want: {
        ok: false,
        reason: "Malformed",
        message: /^imageID "registry.example\/app@sha256:0123.*": .*must be lowercase hex/,
      },
    },
    {
      name: "truncated hex",
      imageID: `docker-pullable://app@sha256:${H64.slice(0, 12)}`,
      want: { ok: false, reason: "Malformed", message: /has 12 hex characters, sha256 has 64/ },
    },
    {
      name: "truncated bare digest",
      imageID: `sha256:${H64.slice(0, 40)}`,
      want: { ok: false, reason: "Malformed", message: /has 40 hex characters/ },
    },
    {
      name: "upper-case bare digest",
      imageID: `docker://sha256:${H64.toUpperCase()}`,
      want: { ok: false, reason: "Malformed", message: /must be lowercase hex/ },
    },
    {
      name: "unknown algorithm",
      imageID: `app@md5:${"a".repeat(32)}`,
      want: { ok: false, reason: "Malformed", message: /unsupported algorithm "md5"/ },
    },
    {
      name: "bad repository name",
      imageID: `Registry.example/App@${D}`,
      want: { ok: false, reason: "Malformed", message: /repository name "App" must be lowercase/ },
    },
    {
      name: "a tag, not a digest",
      imageID: "registry.example/app:latest",
      want: { ok: false, reason: "Malformed", message: /has no digest/ },
    },
    { name: "nothing after @", imageID: "app@", want: { ok: false, reason: "Malformed", message: /has no algorithm/ } },
  ];
  for (const c of cases) {
    const got = digestFromImageID(c.imageID);
    if (c.want.ok) t.same(got, c.want, c.name);
    else t.match(got, c.want, c.name);
  }
  t.match(digestFromImageID(42 as unknown as string), { ok: false, reason: "Malformed", message: /must be a string/ });
});

t.test("isDigest and parseDigest are re-exported", async (t) => {
  t.ok(isDigest(D));
  t.same(parseDigest(D384), { algorithm: "sha384", hex: "e".repeat(96) });
  t.throws(() => parseDigest("sha256:"), { message: /has 0 hex characters/ });
});

t.test("property: name@digest yields the digest; the bare digest is a config ID", async (t) => {
  const hex = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `sha256:${Buffer.from(b).toString("hex")}`);
  const name = fc.constantFrom("nginx", "registry.example/app", "localhost:5000/a/b", "ghcr.io/o/r");
  const scheme = fc.constantFrom("", "docker-pullable://");
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(scheme, name, hex, (s, n, d) => {
        const pulled = digestFromImageID(`${s}${n}@${d}`);
        const local = digestFromImageID(`${s === "" ? "" : "docker://"}${d}`);
        return pulled.ok && pulled.digest === d && !local.ok && local.reason === "ConfigID";
      }),
    ),
  );
});
