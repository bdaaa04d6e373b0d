// The shop for a tap test: a fresh namespace, database and reconciler release on the real node,
// everything removed in the test's teardown. (Kept apart from stack.ts so the demo, which is not a
// test, never loads tap.)
import type { Test } from "tap";
import { nodeEnv } from "../world/env.ts";
import { setupShop } from "./stack.ts";
import type { Shop, ShopOptions } from "./stack.ts";

/** A fresh shop for test `t`: namespace, database, the reconciler installed and running. */
export async function startShop(t: Test, opts: ShopOptions = {}): Promise<Shop> {
  const env = await nodeEnv(t);
  const shop = await setupShop(env, opts);
  t.teardown(() => shop.stop());
  return shop;
}
