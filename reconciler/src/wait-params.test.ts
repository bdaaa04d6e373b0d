import t from "tap";
import fc from "fast-check";
import { dnsLabelError, dnsSubdomainError, parseWaitParams, waitQueryErrors } from "./wait-params.ts";

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
