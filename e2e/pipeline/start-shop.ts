// The shop for a tap test: a fresh namespace, database and node from the harness, the reconciler
// set up, everything stopped in the test's teardown. (Kept apart from stack.ts so the demo, which
// is not a test, never loads tap.)
import type { Test } from "tap";
import { testEnv } from "../harness/env.ts";
import { setupShop } from "./stack.ts";
import type { Shop, ShopOptions } from "./stack.ts";

/** A fresh shop for test `t`: namespace, database, node, the reconciler installed and running. */
export async function startShop(t: Test, opts: ShopOptions = {}): Promise<Shop> {
  const env = await testEnv(t, opts);
  const shop = await setupShop(env, opts);
  t.teardown(() => shop.stop());
  return shop;
}
