// An existing cluster named by a kubeconfig (DM_KUBECONFIG): the same surface as a cluster the
// harness starts, minus the fault-injection helpers. Service-account kubeconfigs use the
// TokenRequest API (`serviceaccounts/<name>/token`), which works on 1.20 and on newer clusters
// that no longer create token Secrets.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { KubeClient, ApiError, paths } from "../kit/client.ts";
import { waitFor } from "../kit/wait.ts";

export interface ClusterHandle {
  server: string;
  adminKubeconfig: string;
  /** Path of a kubeconfig authenticating as `serviceAccount` (created if missing) in `namespace`. */
  kubeconfigFor(namespace: string, serviceAccount: string): Promise<string>;
  /** Creates the namespace if missing and waits until pods can be created in it. */
  ensureNamespace(namespace: string): Promise<void>;
  /** Fault injection; only on a cluster the harness started. */
  stopApiserver?(): Promise<void>;
  startApiserver?(): Promise<void>;
  stop(): Promise<void>;
  /** True when the harness started this cluster (and will stop it). */
  owned: boolean;
}

export function externalCluster(kubeconfigPath: string): ClusterHandle {
  const client = KubeClient.fromFile(kubeconfigPath);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-external-"));
  const cluster = client.kubeConfig.getCurrentCluster();

  const ensureNamespace = async (namespace: string): Promise<void> => {
    try {
      await client.create(paths.namespaces(), { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409)) throw err;
    }
    // The ServiceAccount admission plugin rejects pods until the namespace's default SA exists.
    await waitFor(() => client.find(`/api/v1/namespaces/${namespace}/serviceaccounts/default`), {
      what: `ServiceAccount ${namespace}/default`,
      timeoutMs: 60_000,
    });
  };

  return {
    server: client.server,
    adminKubeconfig: kubeconfigPath,
    owned: false,
    ensureNamespace,
    async kubeconfigFor(namespace: string, serviceAccount: string): Promise<string> {
      await ensureNamespace(namespace);
      try {
        await client.create(`/api/v1/namespaces/${namespace}/serviceaccounts`, {
          apiVersion: "v1",
          kind: "ServiceAccount",
          metadata: { name: serviceAccount },
        });
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 409)) throw err;
      }
      const review = await client.create<{ status: { token: string } }>(
        `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
        { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 86_400 } },
      );
      const user = `system:serviceaccount:${namespace}:${serviceAccount}`;
      const config = {
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "cluster",
            cluster: {
              server: client.server,
              ...(cluster?.caData ? { "certificate-authority-data": cluster.caData } : {}),
              ...(cluster?.caFile ? { "certificate-authority": cluster.caFile } : {}),
              ...(cluster?.skipTLSVerify ? { "insecure-skip-tls-verify": true } : {}),
            },
          },
        ],
        users: [{ name: user, user: { token: review.status.token } }],
        contexts: [{ name: user, context: { cluster: "cluster", user, namespace } }],
        "current-context": user,
      };
      const file = path.join(dir, `kubeconfig-${namespace}-${serviceAccount}`);
      fs.writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
      return file;
    },
    stop(): Promise<void> {
      fs.rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}
