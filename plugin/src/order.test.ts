import fc from "fast-check";
import t from "tap";
import type { KubeObject } from "@digest-migrations/shared";
import { sortManifests } from "./order.ts";

const object = fc.record({
  kind: fc.constantFrom("Deployment", "Migrator", "Service", "Namespace", "Widget", "ConfigMap"),
  name: fc.constantFrom("a", "b", "c"),
  namespace: fc.option(fc.constantFrom("x", "y"), { nil: undefined }),
  wave: fc.option(fc.constantFrom("-1", "0", "2", "junk"), { nil: undefined }),
});

function toObject(o: {
  kind: string;
  name: string;
  namespace: string | undefined;
  wave: string | undefined;
}): KubeObject {
  return {
    apiVersion: "v1",
    kind: o.kind,
    metadata: {
      name: o.name,
      ...(o.namespace === undefined ? {} : { namespace: o.namespace }),
      ...(o.wave === undefined ? {} : { annotations: { "argocd.argoproj.io/sync-wave": o.wave } }),
    },
  };
}

t.test("the order does not depend on the input order", async (t) => {
  t.doesNotThrow(() =>
    fc.assert(
      fc.property(
        fc
          .uniqueArray(object, { selector: (o) => `${o.kind}/${o.namespace}/${o.name}` })
          .chain((objects) =>
            fc.tuple(fc.constant(objects), fc.shuffledSubarray(objects, { minLength: objects.length })),
          ),
        ([objects, shuffled]) => {
          const a = sortManifests(objects.map((o) => ({ object: toObject(o), origin: { file: "f", line: 1 } })));
          const b = sortManifests(shuffled.map((o) => ({ object: toObject(o), origin: { file: "f", line: 1 } })));
          return JSON.stringify(a.map((m) => m.object)) === JSON.stringify(b.map((m) => m.object));
        },
      ),
    ),
  );
});

t.test("waves first, then kind order, namespace, name", async (t) => {
  const input = [
    toObject({ kind: "Deployment", name: "a", namespace: undefined, wave: undefined }),
    toObject({ kind: "Migrator", name: "a", namespace: undefined, wave: "-1" }),
    toObject({ kind: "Widget", name: "a", namespace: undefined, wave: undefined }),
    toObject({ kind: "Service", name: "b", namespace: "y", wave: undefined }),
    toObject({ kind: "Service", name: "a", namespace: "y", wave: undefined }),
    toObject({ kind: "Namespace", name: "z", namespace: undefined, wave: "2" }),
  ];
  const sorted = sortManifests(input.map((object) => ({ object, origin: { file: "f", line: 1 } })));
  t.same(
    sorted.map((m) => `${m.object.kind}/${m.object.metadata.name}`),
    ["Migrator/a", "Service/a", "Service/b", "Deployment/a", "Widget/a", "Namespace/z"],
  );
});
