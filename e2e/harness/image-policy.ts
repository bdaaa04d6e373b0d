// An admission policy that forbids changing a pod's container images — the kind a policy engine
// (Kyverno, Gatekeeper) enforces in some clusters — as a real ValidatingAdmissionWebhook on the control
// plane: an HTTPS server in the test process (a self-signed certificate for 127.0.0.1, made with
// openssl, is its own caBundle) and a ValidatingWebhookConfiguration calling it for pod UPDATEs.
// Only pods carrying POLICY_LABEL are sent to it (objectSelector), so tests sharing the control plane
// are not affected. `remove()` deletes the configuration and stops the server.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Pod } from "@digest-migrations/shared";
import type { TestEnv } from "./env.ts";
import { waitFor } from "../kit/wait.ts";

/** Pods with this label are judged by the policy. */
export const POLICY_LABEL = { key: "e2e.digest-migrations/image-policy", value: "no-image-changes" } as const;
export const POLICY_MESSAGE = "image changes are not allowed";

interface AdmissionReview {
  apiVersion: string;
  kind: string;
  request?: { uid: string; operation: string; object?: Pod; oldObject?: Pod };
}

const images = (pod: Pod | undefined): string =>
  JSON.stringify((pod?.spec?.containers ?? []).map((c) => [c.name, c.image]));

export interface ImagePolicy {
  /** UPDATEs the policy denied so far. */
  readonly denials: number;
  remove(): Promise<void>;
}

/** `env`: the test's namespace (the check pod goes there) and an admin client. */
export async function denyImageChanges(env: Pick<TestEnv, "namespace" | "kube">): Promise<ImagePolicy> {
  const dir = mkdtempSync(path.join(tmpdir(), "dm-policy-"));
  const key = path.join(dir, "tls.key");
  const cert = path.join(dir, "tls.crt");
  await promisify(execFile)("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  ]);
  const state = { denials: 0 };
  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (d: string) => (body += d));
    req.on("end", () => {
      const review = JSON.parse(body) as AdmissionReview;
      const request = review.request;
      const denied = request?.operation === "UPDATE" && images(request.object) !== images(request.oldObject);
      if (denied) state.denials++;
      const response = denied
        ? { uid: request?.uid, allowed: false, status: { code: 403, message: POLICY_MESSAGE } }
        : { uid: request?.uid, allowed: true };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const name = `e2e-image-policy-${env.namespace}`;
  await env.kube.createObject({
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name },
    webhooks: [
      {
        name: "images.policy.e2e.digest-migrations",
        clientConfig: {
          url: `https://127.0.0.1:${port}/validate`,
          caBundle: readFileSync(cert).toString("base64"),
        },
        rules: [
          { operations: ["UPDATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods"], scope: "Namespaced" },
        ],
        objectSelector: { matchLabels: { [POLICY_LABEL.key]: POLICY_LABEL.value } },
        failurePolicy: "Fail",
        sideEffects: "None",
        admissionReviewVersions: ["v1"],
        timeoutSeconds: 5,
      },
    ],
  });
  let removed = false;
  const remove = async (): Promise<void> => {
    if (removed) return;
    removed = true;
    await env.kube.deleteObject("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", undefined, name);
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  };

  // The API server picks the configuration up from its own informer: wait until a labelled pod's
  // image change is really denied.
  const probe = `image-policy-check`;
  await env.kube.createObject({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: probe, namespace: env.namespace, labels: { [POLICY_LABEL.key]: POLICY_LABEL.value } },
    spec: { nodeName: "image-policy-nowhere", containers: [{ name: "c", image: "registry.example/policy:1" }] },
  });
  let attempt = 0;
  await waitFor(
    async () => {
      attempt++;
      const image = `registry.example/policy:${attempt + 1}`;
      return env.kube
        .strategicPatch(`/api/v1/namespaces/${env.namespace}/pods/${probe}`, {
          spec: { containers: [{ name: "c", image }] },
        })
        .then(
          () => false,
          (error: unknown) => String(error).includes(POLICY_MESSAGE),
        );
    },
    { what: "the image policy webhook to be in force", timeoutMs: 30_000 },
  );
  await env.kube.delete(`/api/v1/namespaces/${env.namespace}/pods/${probe}`, {
    apiVersion: "v1",
    kind: "DeleteOptions",
    gracePeriodSeconds: 0,
  });
  return {
    get denials() {
      return state.denials;
    },
    remove,
  };
}
