import t from "tap";
import { WorkQueue } from "./queue.ts";

t.test("a queued key is handed out once however often it is added", async (t) => {
  const q = new WorkQueue();
  q.add("a");
  q.add("a");
  q.add("b");
  t.equal(q.length, 2);
  t.equal(await q.get(), "a");
  t.equal(await q.get(), "b");
  q.done("a");
  q.done("b");
  t.equal(q.length, 0);
});

t.test("a key added while processed is processed again afterwards, never concurrently", async (t) => {
  const q = new WorkQueue();
  q.add("a");
  const key = await q.get();
  q.add("a");
  t.equal(q.length, 0, "not handed to a second worker while processing");
  q.done(key!);
  t.equal(q.length, 1, "queued again once done");
  t.equal(await q.get(), "a");
});

t.test("rate-limited retries back off exponentially and forget resets them", async (t) => {
  const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 35 });
  t.equal(q.addRateLimited("a"), 10);
  t.equal(q.addRateLimited("a"), 20);
  t.equal(q.addRateLimited("a"), 35, "capped");
  t.equal(q.failures("a"), 3);
  q.forget("a");
  t.equal(q.failures("a"), 0);
  // The queue's timers do not keep a process alive; this test must, until the retry arrives.
  const keepAlive = setInterval(() => {}, 1000);
  t.equal(await q.get(), "a", "the scheduled retry arrives");
  clearInterval(keepAlive);
  q.shutdown();
});

t.test("shutdown releases waiting workers", async (t) => {
  const q = new WorkQueue();
  const waiting = q.get();
  q.shutdown();
  t.equal(await waiting, undefined);
});
