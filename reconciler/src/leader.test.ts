// The election itself runs against a real apiserver (e2e/reconciler/leader.test.ts); here only
// the start-up checks of its settings.
import t from "tap";
import { defaultIdentity, validateTimings } from "./leader.ts";

t.test("timing relations follow client-go", (t) => {
  t.doesNotThrow(() => validateTimings(15, 10, 2), "client-go defaults");
  t.throws(() => validateTimings(10, 10, 2), /must be greater than renewDeadlineSeconds/);
  t.throws(() => validateTimings(15, 2, 2), /must be greater than 1.2 × retryPeriodSeconds/);
  t.throws(() => validateTimings(1.5, 1, 0.5), /whole number/);
  t.throws(() => validateTimings(15, 0, 2), /must be positive/);
  t.end();
});

t.test("identities are unique per process start", (t) => {
  const a = defaultIdentity();
  const b = defaultIdentity();
  t.not(a, b);
  t.match(a, /^.+_[0-9a-f-]{36}$/);
  t.end();
});

t.test("the identity names the pod ($POD_NAME), not the node a hostNetwork pod shares", (t) => {
  t.match(
    defaultIdentity({ POD_NAME: "digest-migrations-reconciler-7d9f-abcde" }),
    /^digest-migrations-reconciler-7d9f-abcde_[0-9a-f-]{36}$/,
  );
  t.end();
});
