import { isDeepStrictEqual } from "node:util";
import t from "tap";
import fc from "fast-check";
import {
  type ImageReference,
  ImageReferenceError,
  formatImageReference,
  isDigest,
  shortDigest,
  parseDigest,
  parseImageReference,
  pinImage,
  repositoryOf,
} from "./image-ref.ts";

const D = `sha256:${"a".repeat(64)}`;
const E = `sha256:${"b".repeat(64)}`;

t.test("valid references parse to their normalised parts", async (t) => {
  const cases: [string, ImageReference][] = [
    ["nginx", { domain: "docker.io", path: "library/nginx" }],
    ["nginx:1.25", { domain: "docker.io", path: "library/nginx", tag: "1.25" }],
    ["nginx@" + D, { domain: "docker.io", path: "library/nginx", digest: D }],
    ["nginx:latest@" + D, { domain: "docker.io", path: "library/nginx", tag: "latest", digest: D }],
    ["bitnami/postgresql:15", { domain: "docker.io", path: "bitnami/postgresql", tag: "15" }],
    ["docker.io/nginx", { domain: "docker.io", path: "library/nginx" }],
    ["index.docker.io/library/nginx", { domain: "docker.io", path: "library/nginx" }],
    ["registry.example/app:latest", { domain: "registry.example", path: "app", tag: "latest" }],
    ["registry.example:5000/team/app", { domain: "registry.example:5000", path: "team/app" }],
    ["localhost/app", { domain: "localhost", path: "app" }],
    ["localhost:5000/app:v1", { domain: "localhost:5000", path: "app", tag: "v1" }],
    ["127.0.0.1:5000/a/b/c", { domain: "127.0.0.1:5000", path: "a/b/c" }],
    ["[::1]:5000/app:v1", { domain: "[::1]:5000", path: "app", tag: "v1" }],
    ["[2001:db8::1]/app", { domain: "[2001:db8::1]", path: "app" }],
    ["Registry.Example/app", { domain: "Registry.Example", path: "app" }],
    ["Uppercasehost/app", { domain: "Uppercasehost", path: "app" }],
    ["team/a.b_c__d-e---f", { domain: "docker.io", path: "team/a.b_c__d-e---f" }],
    ["a.b/c", { domain: "a.b", path: "c" }], // a first component with "." is a registry host
    ["app:V1_x.y-z", { domain: "docker.io", path: "library/app", tag: "V1_x.y-z" }],
    ["app:_underscore", { domain: "docker.io", path: "library/app", tag: "_underscore" }],
    ["ghcr.io/o/r@sha384:" + "c".repeat(96), { domain: "ghcr.io", path: "o/r", digest: "sha384:" + "c".repeat(96) }],
    ["ghcr.io/o/r@sha512:" + "d".repeat(128), { domain: "ghcr.io", path: "o/r", digest: "sha512:" + "d".repeat(128) }],
    ["app:" + "t".repeat(128), { domain: "docker.io", path: "library/app", tag: "t".repeat(128) }],
  ];
  for (const [ref, want] of cases) t.same(parseImageReference(ref), want, ref);
});

t.test("invalid references are rejected with the reference and a reason", async (t) => {
  const cases: [string, RegExp][] = [
    ["", /empty/],
    [" nginx", /leading or trailing whitespace/],
    ["nginx:", /nothing after ":"/],
    ["nginx@", /nothing after "@"/],
    ["Nginx", /repository name "Nginx" must be lowercase/],
    ["registry.example/App:latest", /repository name "App" must be lowercase/],
    ["registry.example/", /no repository path/],
    [":latest", /no repository name/],
    ["nginx:-bad", /tag "-bad" must be/],
    ["nginx:.bad", /tag ".bad" must be/],
    ["nginx:" + "t".repeat(129), /tag .* must be 1-128/],
    ["nginx:a+b", /tag "a\+b"/],
    ["nginx@sha256:abc", /has 3 hex characters, sha256 has 64/],
    ["nginx@sha256:" + "A".repeat(64), /must be lowercase hex/],
    ["nginx@sha256:" + "g".repeat(64), /non-hex characters/],
    ["nginx@md5:" + "a".repeat(32), /unsupported algorithm "md5"/],
    ["nginx@" + "a".repeat(64), /has no algorithm/],
    ["nginx@sha384:" + "a".repeat(64), /has 64 hex characters, sha384 has 96/],
    ["a..b", /repository path "a..b" must be/],
    ["a/-b", /repository path "a\/-b"/],
    ["a//b", /repository path/],
    ["app_", /repository path "app_"/],
    ["a___b", /repository path/],
    ["a.-b", /repository path/],
    ["a b", /repository path/],
    ["-host.example/app", /registry host "-host.example"/],
    ["host.example:port/app", /registry host "host.example:port"/],
    ["a".repeat(64), /is an image ID, not a repository name/],
    ["registry.example/" + "a".repeat(256), /repository path is 256 characters, at most 255/],
    ["a".repeat(248), /repository path is 256 characters/], // library/ is part of the path
  ];
  for (const [ref, reason] of cases) {
    t.throws(
      () => parseImageReference(ref),
      {
        name: "ImageReferenceError",
        message: new RegExp(`^invalid image reference ${escape(ref)}: .*${reason.source}`),
      },
      JSON.stringify(ref.length > 60 ? ref.slice(0, 60) + "…" : ref),
    );
  }
  t.throws(() => parseImageReference(undefined as unknown as string), ImageReferenceError, "not a string");
});

t.test("formatImageReference is canonical and fully qualified", async (t) => {
  t.equal(formatImageReference(parseImageReference("nginx")), "docker.io/library/nginx");
  t.equal(formatImageReference(parseImageReference("nginx:1@" + D)), `docker.io/library/nginx:1@${D}`);
  t.equal(formatImageReference(parseImageReference("index.docker.io/x/y:z")), "docker.io/x/y:z");
  t.equal(formatImageReference(parseImageReference("[::1]:5000/app")), "[::1]:5000/app");
});

t.test("pinImage keeps the user's spelling and replaces a digest", async (t) => {
  const cases: [string, string][] = [
    ["registry.example/app:latest", `registry.example/app:latest@${D}`],
    ["nginx", `nginx@${D}`],
    ["nginx:1.25", `nginx:1.25@${D}`],
    [`nginx@${E}`, `nginx@${D}`],
    [`localhost:5000/app:v1@${E}`, `localhost:5000/app:v1@${D}`],
    ["localhost:5000/app", `localhost:5000/app@${D}`],
  ];
  for (const [image, want] of cases) t.equal(pinImage(image, D), want, image);
  t.throws(() => pinImage("nginx", "sha256:abc"), { message: /cannot pin image "nginx": .*64/ }, "bad digest");
  t.throws(() => pinImage("Nginx", D), { message: /invalid image reference "Nginx"/ }, "bad image");
});

t.test("repositoryOf normalises for comparisons", async (t) => {
  t.equal(repositoryOf("nginx:1"), "docker.io/library/nginx");
  t.equal(repositoryOf(`docker.io/library/nginx@${D}`), "docker.io/library/nginx");
  t.equal(repositoryOf("Registry.Example:5000/app:x"), "registry.example:5000/app");
  t.throws(() => repositoryOf("nginx:"), ImageReferenceError);
});

t.test("short digests", async (t) => {
  t.equal(shortDigest("sha256:0123456789abcdef" + "0".repeat(48)), "sha256:0123456789ab");
  t.equal(shortDigest("sha512:" + "f".repeat(128)), "sha512:ffffffffffff");
  t.equal(shortDigest("registry.example/app:latest"), "registry.example/app:latest", "not a digest: unchanged");
  t.equal(shortDigest("sha256:abc"), "sha256:abc");
});

t.test("digests", async (t) => {
  t.ok(isDigest(D));
  t.ok(isDigest("sha512:" + "0".repeat(128)));
  t.notOk(isDigest("sha256:" + "0".repeat(63)));
  t.notOk(isDigest("SHA256:" + "0".repeat(64)));
  t.notOk(isDigest(""));
  t.same(parseDigest(D), { algorithm: "sha256", hex: "a".repeat(64) });
  t.throws(() => parseDigest("sha256:xyz"), {
    name: "ImageReferenceError",
    message: /invalid digest: digest "sha256:xyz"/,
  });
});

// Generators for the grammar: every generated string is a valid reference.
const alnum = fc.stringMatching(/^[a-z0-9]{1,4}$/);
const separator = fc.constantFrom(".", "_", "__", "-", "--", "---");
const component = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 2 }))
  .map(([head, tail]) => head + tail.map(([s, a]) => s + a).join(""));
const path = fc.array(component, { minLength: 1, maxLength: 3 }).map((parts) => parts.join("/"));
const host = fc.oneof(
  fc.constant("localhost"),
  fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?){1,2}$/),
  fc.constantFrom("[::1]", "[2001:db8::1]", "127.0.0.1"),
);
const domain = fc.option(
  fc
    .tuple(host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
    .map(([h, p]) => (p === undefined ? h : `${h}:${p}`)),
  { nil: undefined },
);
const tag = fc.option(fc.stringMatching(/^\w[\w.-]{0,20}$/), { nil: undefined });
const hexDigest = fc
  .constantFrom(["sha256", 64] as const, ["sha384", 96] as const, ["sha512", 128] as const)
  .chain(([algorithm, length]) =>
    fc
      .uint8Array({ minLength: length / 2, maxLength: length / 2 })
      .map((bytes) => `${algorithm}:${Buffer.from(bytes).toString("hex")}`),
  );
const digest = fc.option(hexDigest, { nil: undefined });
const reference = fc
  .tuple(domain, path, tag, digest)
  // Without a registry host, a first path component with "." would be read as a host, and a bare
  // 64-hex name as an image ID.
  .filter(([d, p]) => d !== undefined || (!/^[0-9a-f]{64}$/.test(p) && !/^[^/]*\.[^/]*\//.test(p)))
  .map(
    ([d, p, tg, dg]) =>
      `${d === undefined ? "" : d + "/"}${p}${tg === undefined ? "" : ":" + tg}${dg === undefined ? "" : "@" + dg}`,
  );

t.test("property: parse ∘ format round-trips", async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(reference, (ref) => {
        const parsed = parseImageReference(ref);
        const formatted = formatImageReference(parsed);
        return isDeepStrictEqual(parseImageReference(formatted), parsed) && formatted.startsWith(`${parsed.domain}/`);
      }),
      { numRuns: 500 },
    ),
  );
});

t.test("property: pinImage is idempotent and replaces the digest", async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(reference, hexDigest, hexDigest, (ref, d1, d2) => {
        const once = pinImage(ref, d1);
        const parsed = parseImageReference(once);
        const original = parseImageReference(ref);
        return (
          pinImage(once, d1) === once &&
          pinImage(once, d2) === pinImage(ref, d2) &&
          parsed.digest === d1 &&
          parsed.tag === original.tag &&
          repositoryOf(once) === repositoryOf(ref)
        );
      }),
      { numRuns: 500 },
    ),
  );
});

t.test("property: uppercase in the repository path is always rejected", async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        path.filter((p) => /[a-z]/.test(p)),
        (p) => {
          const upper = p.replace(/[a-z]/, (c) => c.toUpperCase());
          try {
            parseImageReference(`registry.example/${upper}`);
            return false;
          } catch (error) {
            return error instanceof ImageReferenceError && /must be lowercase/.test(error.message);
          }
        },
      ),
    ),
  );
});

function escape(s: string): string {
  return JSON.stringify(s).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
