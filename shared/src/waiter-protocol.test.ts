import t from "tap";
import fc from "fast-check";
import type { Migrator } from "./migrator.ts";
import type { ContainerStatus, Pod, PodStatus } from "./k8s.ts";
import { APP_CONTAINER, GATED_BEFORE_PIN, GATED_PIN_SEEN, IMAGE, RUNNING_PINNED } from "./testdata/kubelet-statuses.ts";
import { REASONS } from "./migrator.ts";
import {
  ANSWER_REASONS,
  WAITER_API_PATH,
  answerBody,
  answerWait,
  dnsLabelError,
  dnsSubdomainError,
  isWaiterContainer,
  kubeletSeesPin,
  mayRelease,
  parseAnswer,
  parseWaitParams,
  waitQueryErrors,
  waitUrl,
  waiterContainerName,
  waiterInitContainer,
} from "./waiter-protocol.ts";

const limits = { defaultTimeoutSeconds: 30, maxTimeoutSeconds: 60 };
const UID = "0b4f4f8e-6a55-4a56-9d1c-0d6a7c1f2a3b";

t.test("DNS names", (t) => {
  const table: [string, boolean, boolean][] = [
    // value, valid label, valid subdomain
    ["app", true, true],
    ["a-1", true, true],
    ["web.v2", false, true],
    ["-a", false, false],
    ["a-", false, false],
    ["A", false, false],
    ["a_b", false, false],
    ["", false, false],
    ["a".repeat(63), true, true],
    ["a".repeat(64), false, true],
    [`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`, false, true],
    [`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(62)}`, false, false],
  ];
  for (const [value, label, subdomain] of table) {
    t.equal(dnsLabelError(value) === undefined, label, `label ${JSON.stringify(value.slice(0, 20))}`);
    t.equal(dnsSubdomainError(value) === undefined, subdomain, `subdomain ${JSON.stringify(value.slice(0, 20))}`);
  }
  t.end();
});

t.test("parses a full query, defaulting and capping the timeout", (t) => {
  const params = new URLSearchParams({ namespace: "ns", pod: "p", podUID: UID, migrator: "m", container: "c" });
  t.same(parseWaitParams(params, limits), {
    ok: true,
    query: { namespace: "ns", pod: "p", podUID: UID, migrator: "m", container: "c" },
    timeoutSeconds: 30,
  });
  params.set("timeoutSeconds", "999");
  t.match(parseWaitParams(params, limits), { ok: true, timeoutSeconds: 60 });
  params.delete("podUID");
  const parsed = parseWaitParams(params, limits);
  t.ok(parsed.ok && !("podUID" in parsed.query), "podUID is optional");
  t.end();
});

t.test("reports every problem at once", (t) => {
  t.same(waitQueryErrors({}), [
    "namespace: is required",
    "pod: is required",
    "migrator: is required",
    "container: is required",
  ]);
  t.end();
});

t.test("any string either parses into valid names or is rejected with a message", (t) => {
  fc.assert(
    fc.property(fc.string(), fc.string(), (pod, container) => {
      const parsed = parseWaitParams(new URLSearchParams({ namespace: "ns", pod, migrator: "m", container }), limits);
      if (parsed.ok)
        return dnsSubdomainError(parsed.query.pod) === undefined && dnsLabelError(parsed.query.container) === undefined;
      return parsed.message.length > 0;
    }),
  );
  t.end();
});

t.test("the waiter's request parses back into the query it was built from", (t) => {
  const query = { namespace: "shop", pod: "web-1", podUID: UID, migrator: "web", container: "app" };
  const url = waitUrl(new URL("http://reconciler:8443/"), query, 30);
  t.equal(
    url.href,
    `http://reconciler:8443${WAITER_API_PATH}?namespace=shop&pod=web-1&migrator=web&container=app&timeoutSeconds=30&podUID=${UID}`,
  );
  t.same(parseWaitParams(url.searchParams, limits), { ok: true, query, timeoutSeconds: 30 });
  t.notMatch(
    waitUrl(new URL("http://r/base/"), { namespace: "a", pod: "b", migrator: "c", container: "d" }, 5).href,
    /podUID/,
    "podUID only when known",
  );
  t.match(waitUrl(new URL("http://r/base/"), query, 5).pathname, `/base${WAITER_API_PATH}`, "a base path is kept");
  t.end();
});

t.test("answers: only the four public fields, parsed strictly", (t) => {
  const answer = { ready: true, reason: "Migrated", message: "m", digest: "d" };
  t.same(answerBody({ ...answer, secret: "x" } as typeof answer), answer);
  t.same(parseAnswer(JSON.stringify({ ...answer, extra: 1 })), answer);
  t.same(parseAnswer('{"ready":false,"reason":"Running","message":"m"}'), {
    ready: false,
    reason: "Running",
    message: "m",
  });
  t.equal(parseAnswer('{"ready":"yes","reason":"x","message":"m"}'), undefined);
  t.equal(parseAnswer("null"), undefined);
  t.equal(parseAnswer("not json"), undefined);
  t.end();
});

t.test("the init container", (t) => {
  const c = waiterInitContainer("db", "app", { image: "waiter:1", apiUrl: "http://r:8443" });
  t.equal(c.name, "migrate-wait-db");
  t.ok(isWaiterContainer(c));
  t.notOk(isWaiterContainer({ name: "app" }));
  t.same(c.args, ["--api", "http://r:8443", "--migrator", "db", "--container", "app"]);
  t.match(c.securityContext, { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
  const long = waiterContainerName(`${"a".repeat(60)}-b`);
  t.ok(long.length <= 63 && !long.endsWith("-"), `a long name is cut to a DNS label: ${long}`);
  t.end();
});

const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const migrated = (...digests: string[]): Migrator["status"] => ({
  lastSuccessfulMigration: digests[0],
  migratedDigests: digests.map((d) => ({ digest: d, image: `app@${d}`, job: "j", completionTime: "t" })),
});
/** The gated container's status in one of the recorded pod statuses. */
const app = (status: PodStatus): ContainerStatus => status.containerStatuses!.find((c) => c.name === APP_CONTAINER)!;

t.test("kubeletSeesPin: the kubelet's own status names the pinned reference, or ran the digest", (t) => {
  t.notOk(kubeletSeesPin(app(GATED_BEFORE_PIN), IMAGE.digest), "before its next sync the status still names the tag");
  t.ok(kubeletSeesPin(app(GATED_PIN_SEEN), IMAGE.digest), "the status image ends with @digest");
  t.ok(kubeletSeesPin(app(RUNNING_PINNED), IMAGE.digest), "running: image shows the tag again, imageID has the digest");
  t.notOk(kubeletSeesPin(app(GATED_PIN_SEEN), D1), "pinned to another digest");
  t.notOk(kubeletSeesPin(undefined, IMAGE.digest), "no status at all");
  t.notOk(
    kubeletSeesPin({ ...app(GATED_PIN_SEEN), image: `${IMAGE.tag}@${IMAGE.digest}x` }, IMAGE.digest),
    "a longer digest is another digest",
  );
  t.end();
});

t.test("mayRelease", (t) => {
  const running = { reason: REASONS.Running, message: "Job db-2 is migrating" };
  const seen = app(GATED_PIN_SEEN);
  t.same(mayRelease({ image: IMAGE.pinned, kubelet: seen, status: migrated(IMAGE.digest) }), {
    ready: true,
    reason: ANSWER_REASONS.Migrated,
    message: `${IMAGE.digest} is migrated`,
    digest: IMAGE.digest,
  });
  t.equal(
    mayRelease({ image: IMAGE.pinned, kubelet: seen, status: migrated(D2, IMAGE.digest) }).ready,
    true,
    "rollback to a migrated digest",
  );
  t.match(
    mayRelease({ image: IMAGE.pinned, kubelet: app(GATED_BEFORE_PIN), status: migrated(IMAGE.digest) }),
    {
      ready: false,
      reason: ANSWER_REASONS.WaitingForKubelet,
      message: `waiting for the kubelet to report the pinned image ${IMAGE.pinned}`,
      digest: IMAGE.digest,
    },
    "migrated, pinned in the spec, but the kubelet still reports the tag: not yet",
  );
  t.equal(
    mayRelease({ image: IMAGE.pinned, kubelet: undefined, status: migrated(IMAGE.digest) }).reason,
    ANSWER_REASONS.WaitingForKubelet,
    "no kubelet status yet",
  );
  t.equal(
    mayRelease({ image: IMAGE.tag, kubelet: seen, status: migrated(IMAGE.digest) }).ready,
    false,
    "the status alone never releases: the spec must be pinned",
  );
  const waiting = mayRelease({
    image: `app@${D2}`,
    kubelet: undefined,
    status: { ...migrated(D1), currentDigest: D2 },
    condition: running,
  });
  t.same(waiting, { ready: false, reason: REASONS.Running, message: running.message, digest: D2 });
  t.equal(
    mayRelease({
      image: "app:latest",
      kubelet: undefined,
      status: {},
      condition: { reason: REASONS.NoDigest, message: "x" },
    }).reason,
    REASONS.NoDigest,
    "an unpinned pod explains itself with the Migrator's reason",
  );
  t.end();
});

t.test("answerWait: from the cached Migrator and pod", (t) => {
  const query = { namespace: "ns", pod: "web-1", podUID: UID, migrator: "db", container: APP_CONTAINER };
  const migrator: Migrator = {
    apiVersion: "migrations.coderanger.net/v1beta1",
    kind: "Migrator",
    metadata: { name: "db", namespace: "ns" },
    spec: { selector: {} },
    status: migrated(IMAGE.digest),
  };
  const pod: Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "web-1", namespace: "ns", uid: UID },
    spec: {
      containers: [
        { name: APP_CONTAINER, image: IMAGE.pinned },
        { name: "sidecar", image: "s" },
      ],
    },
    status: GATED_PIN_SEEN,
  };
  t.equal(answerWait(query, migrator, pod).ready, true);
  t.equal(
    answerWait(query, migrator, { ...pod, status: GATED_BEFORE_PIN }).reason,
    ANSWER_REASONS.WaitingForKubelet,
    "reads the kubelet's status of the queried container",
  );
  t.equal(answerWait(query, undefined, pod).reason, ANSWER_REASONS.UnknownMigrator);
  t.equal(answerWait(query, migrator, undefined).reason, ANSWER_REASONS.UnknownPod);
  t.match(answerWait({ ...query, podUID: "0b4f4f8e-6a55-4a56-9d1c-000000000000" }, migrator, pod), {
    ready: false,
    reason: ANSWER_REASONS.UnknownPod,
    message: /it was replaced/,
  });
  t.equal(answerWait({ ...query, container: "nope" }, migrator, pod).reason, ANSWER_REASONS.UnknownContainer);
  t.match(answerWait({ ...query, container: "sidecar" }, migrator, pod), {
    reason: ANSWER_REASONS.UnknownContainer,
    message: "gates container app, not sidecar",
  });
  t.match(answerWait(query, { ...migrator, spec: { selector: {}, container: "gone" } }, pod), {
    ready: false,
    reason: REASONS.InvalidSpec,
  });
  t.end();
});
