import t from "tap";
import { waitFor } from "./wait.ts";

t.test("waitFor resolves with the first truthy value", async (t) => {
  let n = 0;
  const value = await waitFor(() => (++n >= 3 ? { n } : undefined), { what: "three polls", intervalMs: 1 });
  t.same(value, { n: 3 });
});

t.test("errors count as not yet", async (t) => {
  let n = 0;
  const value = await waitFor(
    async () => {
      if (++n < 3) throw new Error("not reachable");
      return "ok";
    },
    { what: "recovery", intervalMs: 1 },
  );
  t.equal(value, "ok");
});

t.test("timeout names what was awaited, the last error and the description", async (t) => {
  const started = Date.now();
  await t.rejects(
    waitFor(
      () => {
        throw new Error("connection refused");
      },
      { what: "the pod to run", timeoutMs: 50, intervalMs: 5, describe: () => "phase=Pending" },
    ),
    {
      name: "WaitTimeoutError",
      message: /timed out after 50 ms waiting for the pod to run; last error: connection refused; phase=Pending/,
    },
  );
  t.ok(Date.now() - started >= 50, "it waited for the deadline");
  await t.rejects(
    waitFor(() => false, { what: "never", timeoutMs: 10, intervalMs: 2 }),
    /waiting for never$/,
  );
});
