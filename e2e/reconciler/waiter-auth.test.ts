// Waiter authentication on the real API server and the real node (chart value waiterAuth: required):
// the kubelet projects each gated pod's service-account token for the audience digest-migrations, the
// waiter sends it, the reconciler reviews it (TokenReview) and releases the pod; and the waiter API
// refuses every other asker with a clear status — no token, another pod's token, a token for another
// audience, a token whose pod is gone, an expired token — and no answer carries a token. The API server
// issues tokens for at least 10 minutes, so the expired one is a real token of the pod with its times
// moved 11 minutes back, signed again with the API server's service-account key (the same token signed
// again with its times unchanged is accepted: only the expiry differs).
import crypto from "node:crypto";
import fs from "node:fs";
import t from "tap";
import { WAITER_TOKEN_AUDIENCE, waitUrl, waiterInitContainer, waiterTokenVolume } from "@digest-migrations/shared";
import type { Pod, PodSpec, WaitQuery } from "@digest-migrations/shared";
import { pod } from "../harness/objects.ts";
import { waitFor } from "../kit/wait.ts";
import {
  appContainer,
  appDeployment,
  appImage,
  appPodSpec,
  describeMigrator,
  reconcilerEnv,
  runningImages,
  unmigratedStarts,
} from "./setup.ts";

t.test("the waiter API answers a pod only with its own projected token", async (t) => {
  const env = await reconcilerEnv(t, { release: { values: { waiterAuth: "required" } } });
  const ns = env.namespace;
  const digest = await env.push(appImage("v1"));
  await env.migrator("db", { selector: { matchLabels: { app: "web" } }, command: ["migrate"] });

  // The plugin's rendering with waiter-token "true": the token volume beside the waiter, --token-file.
  const web = appDeployment(env, "web", { replicas: 2 });
  const template = (web.spec as { template: { spec: PodSpec } }).template.spec;
  template["initContainers"] = [
    waiterInitContainer("db", "app", {
      image: env.world.images.reconciler,
      apiUrl: env.release.waiterUrl,
      token: true,
    }),
  ];
  template["volumes"] = [...((template["volumes"] as unknown[]) ?? []), waiterTokenVolume()];
  await env.kube.createObject(web);
  const released = await waitFor(
    async () => {
      const pods = await env.pods("app=web");
      return runningImages(pods).filter((id) => id.endsWith(`@${digest}`)).length === 2 ? pods : undefined;
    },
    {
      what: "both web pods released by a reconciler that requires tokens",
      timeoutMs: 240_000,
      describe: async () => {
        const logs = await Promise.all(
          (await env.pods("app=web")).map((p) =>
            env.kube
              .request<string>("GET", `/api/v1/namespaces/${ns}/pods/${p.metadata.name}/log`, {
                query: { container: "migrate-wait-db" },
              })
              .catch((err: unknown) => String(err)),
          ),
        );
        return `${await describeMigrator(env, "db")}\n  waiter logs: ${JSON.stringify(logs)}`;
      },
    },
  );
  t.same(await unmigratedStarts(env, "web-", [digest]), [], "their app containers started on the migrated digest");
  const [a, b] = released.filter((p) => p.metadata.deletionTimestamp === undefined) as [Pod, Pod];

  /** A token bound to `p` for `audience`, from the API server's TokenRequest (what the kubelet asks for). */
  const tokenFor = async (p: Pod, audience = WAITER_TOKEN_AUDIENCE): Promise<string> => {
    const sa = (p.spec as { serviceAccountName?: string }).serviceAccountName ?? "default";
    const res = await env.kube.request<{ status: { token: string } }>(
      "POST",
      `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`,
      {
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec: {
            audiences: [audience],
            expirationSeconds: 600,
            boundObjectRef: { apiVersion: "v1", kind: "Pod", name: p.metadata.name, uid: p.metadata.uid },
          },
        },
      },
    );
    return res.status.token;
  };
  const question = (p: Pod): WaitQuery => ({
    namespace: ns,
    pod: p.metadata.name ?? "",
    podUID: p.metadata.uid ?? "",
    migrator: "db",
    container: "app",
  });
  /** One short poll of the waiter API: the status and the body, as text. */
  const ask = async (p: Pod, token?: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(waitUrl(new URL(env.release.waiterUrl), question(p), 1), {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    });
    return { status: res.status, text: await res.text() };
  };

  const own = await tokenFor(a);
  const answered = await ask(a, own);
  t.equal(answered.status, 200, "its own token: answered");
  const body = JSON.parse(answered.text) as Record<string, unknown>;
  t.equal(body["ready"], true, "released");
  t.equal(body["digest"], digest);
  t.same(Object.keys(body).sort(), ["digest", "message", "ready", "reason"], "the four public fields only");

  const refusals: [string, Pod, string | undefined, number, RegExp][] = [
    ["no token", a, undefined, 401, /no token/],
    [
      "another pod's token",
      b,
      own,
      403,
      new RegExp(`bound to pod ${ns}/${a.metadata.name}, not ${ns}/${b.metadata.name}`),
    ],
    [
      "a token for the API server's audience",
      a,
      await tokenFor(a, "https://kubernetes.default.svc.cluster.local"),
      401,
      /did not accept the token \(TokenReview\): .*audiences .* is invalid for the target audiences \["digest-migrations"\]/,
    ],
    ["a malformed token", a, "not-a-token", 401, /did not accept the token \(TokenReview\): invalid bearer token/],
  ];
  // A token whose pod is gone: minted for a pod that is then deleted.
  const gone = await env.kube.createObject<Pod>(
    pod(ns, "gone", appPodSpec(env, { nodeName: "unreachable", containers: [appContainer(env)] }), { app: "gone" }),
  );
  const goneToken = await tokenFor(gone);
  await env.kube.request("DELETE", `/api/v1/namespaces/${ns}/pods/gone`, { query: { gracePeriodSeconds: "0" } });
  await waitFor(async () => (await env.pods("app=gone")).length === 0, {
    what: "pod gone to be deleted",
    timeoutMs: 60_000,
  });
  refusals.push(["the token of a deleted pod", gone, goneToken, 401, /did not accept the token .*invalidated/]);

  /** `token` signed again with the API server's key, its claims changed by `change`. */
  const signedAgain = (token: string, change: (claims: Record<string, number>) => void): string => {
    const [header, payload] = token.split(".");
    const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as Record<string, number>;
    change(claims);
    const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
    const key = fs.readFileSync(env.world.serviceAccountKeyFile);
    return `${body}.${crypto.sign("sha256", Buffer.from(body), key).toString("base64url")}`;
  };
  const resigned = signedAgain(await tokenFor(a), () => undefined);
  t.equal((await ask(a, resigned)).status, 200, "a token signed again with its times unchanged: answered");
  const now = Math.floor(Date.now() / 1000);
  const expired = signedAgain(await tokenFor(a), (claims) =>
    Object.assign(claims, { iat: now - 660, nbf: now - 660, exp: now - 60 }),
  );
  refusals.push(["an expired token", a, expired, 401, /did not accept the token \(TokenReview\): .*expired/]);

  for (const [what, asked, token, status, message] of refusals) {
    const got = await ask(asked, token);
    t.equal(got.status, status, `${what}: ${status}`);
    const error = (JSON.parse(got.text) as { error?: string }).error;
    t.match(error, message, `${what}: the reason says why (${error})`);
    t.notOk(
      [own, goneToken, expired].some((secret) => got.text.includes(secret)),
      `${what}: no token in the answer`,
    );
  }
  t.notOk(answered.text.includes(own), "the answer to its own token does not carry it");
});
