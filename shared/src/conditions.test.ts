import t from "tap";
import { findCondition, sameConditions, setCondition } from "./conditions.ts";
import type { Condition } from "./k8s.ts";

const earlier = new Date("2024-01-01T00:00:00.000Z");
const later = new Date("2024-01-02T00:00:00.000Z");

t.test("setCondition", async (t) => {
  const cases: {
    name: string;
    before: Condition[] | undefined;
    input: Parameters<typeof setCondition>[1];
    transition: string;
    length: number;
  }[] = [
    {
      name: "new type is appended with now",
      before: undefined,
      input: { type: "Ready", status: "True", reason: "Succeeded", message: "ok" },
      transition: later.toISOString(),
      length: 1,
    },
    {
      name: "same status keeps the transition time while reason and message change",
      before: [
        { type: "Ready", status: "False", reason: "Probing", message: "a", lastTransitionTime: earlier.toISOString() },
      ],
      input: { type: "Ready", status: "False", reason: "Running", message: "b" },
      transition: earlier.toISOString(),
      length: 1,
    },
    {
      name: "status change moves the transition time",
      before: [
        { type: "Ready", status: "False", reason: "Running", message: "b", lastTransitionTime: earlier.toISOString() },
      ],
      input: { type: "Ready", status: "True", reason: "Succeeded", message: "c" },
      transition: later.toISOString(),
      length: 1,
    },
    {
      name: "other types are kept",
      before: [{ type: "Other", status: "True", reason: "X", message: "", lastTransitionTime: earlier.toISOString() }],
      input: { type: "Ready", status: "True", reason: "Succeeded", message: "c" },
      transition: later.toISOString(),
      length: 2,
    },
  ];
  for (const c of cases) {
    const frozen = c.before === undefined ? undefined : structuredClone(c.before);
    const after = setCondition(c.before, c.input, later);
    const got = findCondition(after, c.input.type);
    t.equal(got?.lastTransitionTime, c.transition, `${c.name}: lastTransitionTime`);
    t.equal(got?.reason, c.input.reason, `${c.name}: reason`);
    t.equal(got?.message, c.input.message, `${c.name}: message`);
    t.equal(after.length, c.length, `${c.name}: length`);
    t.same(c.before, frozen, `${c.name}: input untouched`);
  }
});

t.test("observedGeneration is carried", async (t) => {
  const after = setCondition(
    [],
    { type: "Ready", status: "True", reason: "R", message: "", observedGeneration: 3 },
    later,
  );
  t.equal(after[0]?.observedGeneration, 3);
});

t.test("sameConditions ignores order but not content", async (t) => {
  const a: Condition = { type: "A", status: "True", reason: "R", message: "m", lastTransitionTime: "t" };
  const b: Condition = { type: "B", status: "False", reason: "S", message: "n", lastTransitionTime: "t" };
  t.ok(sameConditions([a, b], [b, a]));
  t.ok(sameConditions(undefined, []));
  t.notOk(sameConditions([a], [{ ...a, message: "other" }]));
  t.notOk(sameConditions([a], [a, b]));
});
