import t from "tap";
import fc from "fast-check";
import { RateLimiter } from "./rate-limit.ts";

t.test("allows a burst, then refills at the steady rate", (t) => {
  let now = 0;
  const limiter = new RateLimiter({ burst: 2, perSecond: 1, now: () => now });
  t.same(limiter.take("a"), { ok: true });
  t.same(limiter.take("a"), { ok: true });
  t.same(limiter.take("a"), { ok: false, retryAfterSeconds: 1 });
  t.same(limiter.take("b"), { ok: true }, "other clients have their own bucket");
  now += 1000;
  t.same(limiter.take("a"), { ok: true });
  t.same(limiter.take("a"), { ok: false, retryAfterSeconds: 1 });
  t.end();
});

t.test("bounds the number of tracked clients", (t) => {
  let now = 0;
  const limiter = new RateLimiter({ burst: 1, perSecond: 1, maxClients: 3, now: () => now });
  for (const client of ["a", "b", "c", "d", "e"]) limiter.take(client);
  t.ok(limiter.size <= 3, `tracks at most 3 clients (${limiter.size})`);
  now += 10_000;
  limiter.take("f");
  t.equal(limiter.size, 1, "refilled buckets are dropped first");
  t.end();
});

t.test("rejects nonsense settings", (t) => {
  t.throws(() => new RateLimiter({ burst: 0, perSecond: 1 }), /burst must be at least 1/);
  t.throws(() => new RateLimiter({ burst: 1, perSecond: 0 }), /must be positive/);
  t.end();
});

t.test("never grants more than burst + rate × elapsed", (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1, max: 10 }),
      fc.array(fc.integer({ min: 0, max: 2000 }), { minLength: 1, maxLength: 200 }),
      (burst, perSecond, gaps) => {
        let now = 0;
        const limiter = new RateLimiter({ burst, perSecond, now: () => now });
        let granted = 0;
        for (const gap of gaps) {
          now += gap;
          if (limiter.take("x").ok) granted++;
        }
        return granted <= burst + Math.floor((now / 1000) * perSecond);
      },
    ),
  );
  t.end();
});
