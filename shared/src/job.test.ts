import t from "tap";
import fc from "fast-check";
import type { KubeObject, PodTemplateSpec } from "./k8s.ts";
import type { Migrator } from "./migrator.ts";
import {
  JobBuildError,
  buildMigrationJob,
  gatedContainer,
  migrationImage,
  migrationJobName,
  migratorLabelValue,
} from "./job.ts";
import type { MigrationJobInput } from "./job.ts";

/** The Job alone, for the tests that look only at it. */
const build = (input: MigrationJobInput): KubeObject => buildMigrationJob(input).job;

const D = `sha256:${"0123456789abcdef".repeat(4)}`;
const D2 = `sha256:${"fedcba9876543210".repeat(4)}`;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function migrator(spec: Partial<Migrator["spec"]> = {}, name = "web"): Migrator {
  return {
    apiVersion: "migrations.coderanger.net/v1beta1",
    kind: "Migrator",
    metadata: { name, namespace: "apps", uid: "m-uid", labels: { team: "a" } },
    spec: { selector: { matchLabels: { app: "web" } }, ...spec },
  };
}

function template(): PodTemplateSpec {
  return {
    metadata: { labels: { app: "web" }, annotations: { "prometheus.io/scrape": "true" } },
    spec: {
      serviceAccountName: "web",
      imagePullSecrets: [{ name: "pull" }],
      initContainers: [
        { name: "migrate-wait-web", image: "waiter:1" },
        { name: "setup", image: "busybox" },
      ],
      containers: [
        {
          name: "app",
          image: "registry.example/app:latest",
          command: ["serve"],
          args: ["--port", "80"],
          env: [{ name: "DB", valueFrom: { secretKeyRef: { name: "db", key: "url" } } }],
          readinessProbe: { httpGet: { path: "/" } },
          livenessProbe: { httpGet: { path: "/" } },
          startupProbe: { httpGet: { path: "/" } },
        },
        { name: "sidecar", image: "proxy:1" },
      ],
      volumes: [{ name: "config", configMap: { name: "web" } }],
      restartPolicy: "Always",
    },
  };
}

t.test("migrationJobName", async (t) => {
  t.equal(migrationJobName("web", D), "web-0123456789");
  t.equal(migrationJobName("web", D2), "web-fedcba9876");
  t.equal(migrationJobName("a".repeat(52), D), `${"a".repeat(52)}-0123456789`, "52 characters still fit");
  // Golden values: these names are idempotency keys and must never change.
  t.equal(
    migrationJobName("a".repeat(53), D),
    `${"a".repeat(43)}-abe346a7-0123456789`,
    "53 characters: shortened + hash",
  );
  t.equal(migrationJobName("my.app", D), "my-app-13d7e337-0123456789", "dots are rewritten and hashed");
  t.equal(migrationJobName("my-app", D), "my-app-0123456789", "the dash spelling keeps the plain name");
  t.equal(migrationJobName("...", D), "ab5df625-0123456789", "nothing usable left of the name");
  t.equal(
    migrationJobName("a".repeat(42) + "-" + "b".repeat(20), D),
    `${"a".repeat(42)}-ef8d7b62-0123456789`,
    "no dash before the hash",
  );
  t.equal(migrationJobName("web", `sha512:${"9".repeat(128)}`), "web-9999999999");
  t.throws(() => migrationJobName("web", "sha256:abc"), { name: "JobBuildError", message: /Migrator "web": .*64/ });
  t.throws(() => migrationJobName("", D), { name: "JobBuildError", message: /Migrator name is empty/ });
});

t.test("migratorLabelValue fits a label value", async (t) => {
  t.equal(migratorLabelValue("web"), "web");
  t.equal(migratorLabelValue("a.b"), "a.b");
  const long = migratorLabelValue("a".repeat(50) + "." + "b".repeat(40));
  t.equal(long.length, 63);
  t.match(long, /^a{50}\.b{3}-[0-9a-f]{8}$/);
  t.not(migratorLabelValue("a".repeat(64)), migratorLabelValue("a".repeat(65)));
});

t.test("property: migrationJobName is a DNS label of at most 63 characters, stable and injective", async (t) => {
  const nameChars = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-.".split(""));
  const subdomain = fc
    .array(nameChars, { minLength: 1, maxLength: 253 })
    .map((cs) => cs.join(""))
    .filter((s) => /^[a-z0-9]/.test(s) && /[a-z0-9]$/.test(s));
  const digest = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => `sha256:${Buffer.from(b).toString("hex")}`);
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(subdomain, digest, (name, d) => {
        const jobName = migrationJobName(name, d);
        return jobName.length <= 63 && DNS_LABEL.test(jobName) && migrationJobName(name, d) === jobName;
      }),
      { numRuns: 2000 },
    ),
  );
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(subdomain, digest), { minLength: 2, maxLength: 50, selector: ([n, d]) => `${n} ${d}` }),
        (inputs) => {
          const names = new Set(inputs.map(([n, d]) => migrationJobName(n, d)));
          return names.size === inputs.length;
        },
      ),
      { numRuns: 300 },
    ),
  );
  // Near-collisions that truncation alone would merge.
  const prefix = "a".repeat(60);
  const variants = ["x", "y", "-x", ".x", "xx"].map((s) => migrationJobName(prefix + s, D));
  t.equal(new Set(variants).size, variants.length, "names sharing a long prefix stay distinct");
});

t.test("gatedContainer", async (t) => {
  const spec = template().spec;
  t.equal(gatedContainer({}, spec).name, "app", "first by default");
  t.equal(gatedContainer({ container: "" }, spec).name, "app", "empty name means default");
  t.equal(gatedContainer({ container: "sidecar" }, spec).name, "sidecar", "by name");
  t.throws(() => gatedContainer({ container: "nope" }, spec), {
    name: "JobBuildError",
    message: 'container "nope" (spec.container) is not in the pod template (containers: "app", "sidecar")',
  });
  t.throws(() => gatedContainer({}, { containers: [] }), { message: /no containers/ });
});

t.test("buildMigrationJob: upstream semantics plus digest pinning", async (t) => {
  const tpl = template();
  const before = structuredClone(tpl);
  const m = migrator({
    command: ["migrate"],
    args: ["up"],
    labels: { "sidecar.istio.io/inject": "false" },
    annotations: { note: "x" },
  });
  const job = build({ migrator: m, template: tpl, digest: D });
  t.same(tpl, before, "the template is not modified");
  t.same(job, {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: "web-0123456789",
      namespace: "apps",
      labels: {
        team: "a",
        "migrations.coderanger.net/migrator": "web",
        "migrations.coderanger.net/role": "migration",
        "app.kubernetes.io/managed-by": "digest-migrations",
      },
      annotations: {
        "migrations.coderanger.net/digest": D,
        "migrations.coderanger.net/image": `registry.example/app:latest@${D}`,
      },
      ownerReferences: [
        {
          apiVersion: "migrations.coderanger.net/v1beta1",
          kind: "Migrator",
          name: "web",
          uid: "m-uid",
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: {
          labels: {
            migrations: "web",
            "sidecar.istio.io/inject": "false",
            "migrations.coderanger.net/migrator": "web",
            "migrations.coderanger.net/role": "migration",
            "app.kubernetes.io/managed-by": "digest-migrations",
          },
          annotations: {
            note: "x",
            "migrations.coderanger.net/no-wait": "true",
            "migrations.coderanger.net/digest": D,
          },
        },
        spec: {
          serviceAccountName: "web",
          imagePullSecrets: [{ name: "pull" }],
          initContainers: [{ name: "setup", image: "busybox" }],
          containers: [
            {
              name: "migrations",
              image: `registry.example/app:latest@${D}`,
              command: ["migrate"],
              args: ["up"],
              env: [{ name: "DB", valueFrom: { secretKeyRef: { name: "db", key: "url" } } }],
            },
          ],
          volumes: [{ name: "config", configMap: { name: "web" } }],
          restartPolicy: "Never",
        },
      },
    },
  });
});

t.test("buildMigrationJob variations", async (t) => {
  const c0 = (job: KubeObject): Record<string, unknown> =>
    (job.spec as { template: PodTemplateSpec }).template.spec.containers[0]!;
  const podSpec = (job: KubeObject): Record<string, unknown> =>
    (job.spec as { template: PodTemplateSpec }).template.spec;

  const keep = build({ migrator: migrator(), template: template(), digest: D });
  t.same(c0(keep).command, ["serve"], "command kept without spec.command");
  t.same(c0(keep).args, ["--port", "80"], "args kept without spec.args");

  const emptied = build({ migrator: migrator({ command: [], args: [] }), template: template(), digest: D });
  t.same([c0(emptied).command, c0(emptied).args], [[], []], "empty lists replace, as upstream's non-nil pointers do");

  const sidecar = build({ migrator: migrator({ container: "sidecar" }), template: template(), digest: D });
  t.equal(c0(sidecar).image, `proxy:1@${D}`, "spec.container picks the container");

  const specImage = build({
    migrator: migrator({ image: "tools/migrate:v2" }),
    template: template(),
    digest: D2,
  });
  t.equal(c0(specImage).image, "tools/migrate:v2", "spec.image in another repository runs as written");
  t.equal(specImage.metadata.annotations?.["migrations.coderanger.net/image"], "tools/migrate:v2");
  t.equal(specImage.metadata.annotations?.["migrations.coderanger.net/digest"], D2, "keyed on the app digest");

  const given = build({
    migrator: migrator(),
    template: template(),
    digest: D2,
    image: `other/app:x@${D}`,
  });
  t.equal(c0(given).image, `other/app:x@${D2}`, "an explicit image is re-pinned to the digest");
  t.equal(given.metadata.name, "web-fedcba9876");

  const livePod: PodTemplateSpec = {
    metadata: { name: "web-abc", uid: "p", ownerReferences: [] },
    spec: {
      nodeName: "node-1",
      priority: 0,
      ephemeralContainers: [{ name: "debug" }],
      initContainers: [{ name: "migrate-wait-web" }],
      containers: [{ name: "app", image: `registry.example/app:latest@${D2}` }],
    },
  };
  const fromPod = build({ migrator: migrator(), template: livePod, digest: D });
  t.same(
    Object.keys(podSpec(fromPod)).sort(),
    ["containers", "restartPolicy"],
    "a live pod's nodeName, priority, ephemeral containers and the waiter are dropped",
  );
  t.equal(c0(fromPod).image, `registry.example/app:latest@${D}`, "a pinned pod image is re-pinned");

  const overrides = build({
    migrator: migrator({
      labels: { "migrations.coderanger.net/role": "x", migrations: "custom" },
      annotations: { "migrations.coderanger.net/no-wait": "false" },
    }),
    template: template(),
    digest: D,
  });
  const meta = (overrides.spec as { template: PodTemplateSpec }).template.metadata!;
  t.equal(meta.labels!["migrations.coderanger.net/role"], "migration", "our labels win over spec.labels");
  t.equal(meta.labels!.migrations, "custom", "spec.labels override upstream's migrations label, as upstream");
  t.equal(meta.annotations!["migrations.coderanger.net/no-wait"], "true", "a migration pod is never gated");

  const long = migrator({}, "m".repeat(80));
  const longJob = build({ migrator: long, template: template(), digest: D });
  t.ok(
    longJob.metadata.name!.length <= 63 && longJob.metadata.labels![`migrations.coderanger.net/migrator`]!.length <= 63,
  );
});

t.test("buildMigrationJob: the Job controls, and the reconciler's defaults for those left out", async (t) => {
  const jobSpec = (job: KubeObject): Record<string, unknown> => job.spec as Record<string, unknown>;
  const c0 = (job: KubeObject): Record<string, unknown> =>
    (job.spec as { template: PodTemplateSpec }).template.spec.containers[0]!;
  const plain = build({ migrator: migrator(), template: template(), digest: D });
  t.same(
    [jobSpec(plain).backoffLimit, jobSpec(plain).activeDeadlineSeconds],
    [0, undefined],
    "upstream: 0, no deadline",
  );
  t.equal(jobSpec(plain).ttlSecondsAfterFinished, undefined, "never the Job controller's TTL");
  t.equal(c0(plain).resources, undefined, "the application container's resources (none here)");

  const resources = { limits: { memory: "1Gi" }, requests: { cpu: "100m", memory: "512Mi" } };
  const set = build({
    migrator: migrator({ activeDeadlineSeconds: 600, backoffLimit: 2, ttlSecondsAfterFinished: 60, resources }),
    template: {
      ...template(),
      spec: {
        ...template().spec,
        containers: [{ name: "app", image: "a", resources: { limits: { memory: "64Mi" } } }],
      },
    },
    digest: D,
    defaults: { activeDeadlineSeconds: 3600, ttlSecondsAfterFinished: 86400 },
  });
  t.same([jobSpec(set).backoffLimit, jobSpec(set).activeDeadlineSeconds], [2, 600], "the Migrator's own values win");
  t.equal(jobSpec(set).ttlSecondsAfterFinished, undefined, "the TTL is the reconciler's to carry out");
  t.same(c0(set).resources, resources, "spec.resources replaces the container's");

  const defaulted = build({
    migrator: migrator(),
    template: template(),
    digest: D,
    defaults: { activeDeadlineSeconds: 3600 },
  });
  t.equal(jobSpec(defaulted).activeDeadlineSeconds, 3600, "the install's default deadline");
});

t.test("buildMigrationJob drops the waiters' token volume with the waiters", async (t) => {
  const podSpec = (job: KubeObject): Record<string, unknown> =>
    (job.spec as { template: PodTemplateSpec }).template.spec;
  const tpl = template();
  tpl.spec["volumes"] = [
    {
      name: "migrate-wait-token",
      projected: { sources: [{ serviceAccountToken: { audience: "digest-migrations", path: "token" } }] },
    },
    { name: "config", configMap: { name: "web" } },
  ];
  t.same(podSpec(build({ migrator: migrator(), template: tpl, digest: D })).volumes, [
    { name: "config", configMap: { name: "web" } },
  ]);
  tpl.spec["volumes"] = [{ name: "migrate-wait-token", projected: { sources: [] } }];
  t.notOk("volumes" in podSpec(build({ migrator: migrator(), template: tpl, digest: D })), "no volumes left: none");
});

t.test("buildMigrationJob errors name the Migrator and the reason", async (t) => {
  const cases: { name: string; run: () => unknown; message: RegExp }[] = [
    {
      name: "missing container",
      run: () => build({ migrator: migrator({ container: "db" }), template: template(), digest: D }),
      message: /^Migrator apps\/web: container "db" \(spec.container\) is not in the pod template/,
    },
    {
      name: "bad digest",
      run: () => build({ migrator: migrator(), template: template(), digest: "sha256:zz" }),
      message: /^Migrator apps\/web: cannot pin image "registry.example\/app:latest": digest "sha256:zz"/,
    },
    {
      name: "bad image",
      run: () => build({ migrator: migrator({ image: "Tools/Migrate" }), template: template(), digest: D }),
      message:
        /^Migrator apps\/web: invalid image reference "Tools\/Migrate": repository name "Migrate" must be lowercase/,
    },
    {
      name: "no image",
      run: () => build({ migrator: migrator(), template: { spec: { containers: [{ name: "app" }] } }, digest: D }),
      message: /container "app" has no image/,
    },
    {
      name: "no uid",
      run: () => {
        const m = migrator();
        delete m.metadata.uid;
        return build({ migrator: m, template: template(), digest: D });
      },
      message: /^Migrator apps\/web: metadata.uid is required/,
    },
    {
      name: "no template spec",
      run: () => build({ migrator: migrator(), template: {} as PodTemplateSpec, digest: D }),
      message: /the pod template has no spec/,
    },
  ];
  for (const c of cases) t.throws(c.run, { name: "JobBuildError", message: c.message }, c.name);
  t.ok(new JobBuildError("x") instanceof Error);
});

t.test("migrationImage: which image migrates a digest", async (t) => {
  const app = "registry.example/app:latest";
  const cases: [string, string | undefined, string, string][] = [
    ["no spec.image: the app image, pinned", undefined, `${app}@${D}`, "digest"],
    ["empty spec.image: the same", "", `${app}@${D}`, "digest"],
    [
      "same repository, other tag: pinned to the app digest",
      "registry.example/app:migrate",
      `registry.example/app:migrate@${D}`,
      "digest",
    ],
    [
      "same repository by another digest: re-pinned",
      `registry.example/app@${D2}`,
      `registry.example/app@${D}`,
      "digest",
    ],
    ["same repository, familiar spelling", "docker.io/library/nginx:1", `docker.io/library/nginx:1@${D}`, "digest"],
    ["another repository pinned by digest: as written", `tools/migrate@${D2}`, `tools/migrate@${D2}`, "spec"],
    ["another repository by tag: as written, unpinned", "tools/migrate:v2", "tools/migrate:v2", "unpinned"],
  ];
  for (const [name, spec, image, pinning] of cases) {
    const appImage = name.includes("familiar") ? "nginx:1" : app;
    t.same(migrationImage(spec, appImage, D), { image, pinning }, name);
  }
  t.throws(() => migrationImage("Tools/Migrate", app, D), /invalid image reference "Tools\/Migrate"/);
});

t.test("buildMigrationJob returns the image it pinned and how, and notes the retry it answers", async (t) => {
  const m = migrator();
  const plain = buildMigrationJob({ migrator: m, template: template(), digest: D });
  t.same(plain.image, { image: `registry.example/app:latest@${D}`, pinning: "digest" });
  t.notOk(plain.job.metadata.annotations?.["migrations.coderanger.net/retry-handled"], "no retry, no annotation");
  const other = buildMigrationJob({
    migrator: migrator({ image: "registry.example/tools:v1" }),
    template: template(),
    digest: D,
    retry: "2",
  });
  t.same(other.image, { image: "registry.example/tools:v1", pinning: "unpinned" }, "another repository by tag");
  t.equal(other.job.metadata.annotations?.["migrations.coderanger.net/retry-handled"], "2");
});
