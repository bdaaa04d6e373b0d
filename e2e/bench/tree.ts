// Generated application trees for the render benchmark: N objects, of which 10 % are workloads
// (Deployments, every fifth a StatefulSet) and one Migrator gates each group of 10 workloads; the
// rest are ConfigMaps, Services and Secrets of the sizes real applications carry (a config file in a
// ConfigMap, base64 credentials in a Secret, a couple of ports on a Service).
//
// Layout (the same objects in both trees): one directory per 100 objects, `g0001/app-01.yaml` …
// `app-10.yaml` (a workload and its companions, multi-document), `g0001/migrations.yaml` (the
// Migrator). The Kustomize tree adds a `kustomization.yaml` per group and one at the root listing
// the groups, with no transformers, so `kubectl kustomize` does the least work it can.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

export const OBJECTS_PER_GROUP = 100;
const WORKLOADS_PER_GROUP = 10;
const OTHERS_PER_WORKLOAD = (OBJECTS_PER_GROUP - WORKLOADS_PER_GROUP - 1) / WORKLOADS_PER_GROUP; // 8.9

export interface Tree {
  /** The application directory (where Argo CD would run generate). */
  dir: string;
  objects: number;
  workloads: number;
  migrators: number;
  files: number;
  bytes: number;
}

/** A deterministic pseudo-random hex string, so trees are identical from run to run. */
function hex(seed: number, length: number): string {
  let x = (seed * 2654435761) >>> 0;
  let out = "";
  while (out.length < length) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out += x.toString(16).padStart(8, "0");
  }
  return out.slice(0, length);
}

function deployment(group: string, app: string, migrator: string, stateful: boolean): string {
  const kind = stateful ? "StatefulSet" : "Deployment";
  return `apiVersion: apps/v1
kind: ${kind}
metadata:
  name: ${app}
  labels:
    app.kubernetes.io/name: ${app}
    app.kubernetes.io/part-of: ${group}
  annotations:
    argocd.argoproj.io/sync-wave: "0"
spec:
  replicas: 3${stateful ? `\n  serviceName: ${app}` : ""}
  selector:
    matchLabels:
      app.kubernetes.io/name: ${app}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ${app}
        app.kubernetes.io/part-of: ${group}
        migrations: ${migrator}
    spec:
      serviceAccountName: ${group}
      containers:
        - name: app
          image: registry.example/${group}/${app}:latest
          imagePullPolicy: Always
          args: ["serve", "--port=8080", "--metrics-port=9090"]
          ports:
            - name: http
              containerPort: 8080
            - name: metrics
              containerPort: 9090
          env:
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: ${app}-db
                  key: url
            - name: LOG_LEVEL
              value: info
            - name: FEATURE_FLAGS
              value: "search,checkout,recommendations"
          envFrom:
            - configMapRef:
                name: ${app}-config
          resources:
            requests: { cpu: 100m, memory: 128Mi }
            limits: { cpu: "1", memory: 512Mi }
          readinessProbe:
            httpGet: { path: /readyz, port: http }
            periodSeconds: 5
          livenessProbe:
            httpGet: { path: /healthz, port: http }
            initialDelaySeconds: 10
          volumeMounts:
            - name: config
              mountPath: /etc/app
              readOnly: true
      volumes:
        - name: config
          configMap:
            name: ${app}-config
`;
}

function configMap(name: string, seed: number): string {
  return `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/component: config
data:
  LISTEN_ADDRESS: "0.0.0.0:8080"
  CACHE_TTL: "300"
  ENABLE_TRACING: "true"
  app.yaml: |
    server:
      port: 8080
      readTimeout: 30s
      writeTimeout: 30s
    cache:
      backend: redis
      address: redis-${hex(seed, 6)}.cache.svc:6379
      ttl: 5m
    upstreams:
      - name: payments
        url: http://payments.${hex(seed + 1, 6)}.svc:8080
        timeout: 2s
      - name: inventory
        url: http://inventory.${hex(seed + 2, 6)}.svc:8080
        timeout: 2s
    logging:
      level: info
      format: json
`;
}

function service(name: string, app: string): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/name: ${app}
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: ${app}
  ports:
    - name: http
      port: 80
      targetPort: http
      protocol: TCP
    - name: metrics
      port: 9090
      targetPort: metrics
      protocol: TCP
`;
}

function secret(name: string, seed: number): string {
  const b64 = (s: string): string => Buffer.from(s).toString("base64");
  return `apiVersion: v1
kind: Secret
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/component: credentials
type: Opaque
data:
  url: ${b64(`postgres://app:${hex(seed, 24)}@db-${hex(seed + 3, 6)}.example:5432/app?sslmode=require`)}
  username: ${b64("app")}
  password: ${b64(hex(seed + 4, 32))}
  api-key: ${b64(hex(seed + 5, 48))}
`;
}

function migrator(name: string): string {
  return `apiVersion: migrations.coderanger.net/v1beta1
kind: Migrator
metadata:
  name: ${name}
spec:
  selector:
    matchLabels:
      migrations: ${name}
  command: ["python", "manage.py", "migrate", "--noinput"]
`;
}

/**
 * Writes a tree of `objects` objects (a multiple of 100) under `dir` (emptied first).
 * `kustomize` adds the kustomization files.
 */
export function writeTree(dir: string, objects: number, kustomize: boolean): Tree {
  if (objects <= 0 || objects % OBJECTS_PER_GROUP !== 0) {
    throw new Error(`tree size ${objects}: expected a positive multiple of ${OBJECTS_PER_GROUP}`);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const groups = objects / OBJECTS_PER_GROUP;
  const tree: Tree = { dir, objects: 0, workloads: 0, migrators: 0, files: 0, bytes: 0 };
  const write = (file: string, text: string): void => {
    writeFileSync(file, text);
    tree.files++;
    tree.bytes += Buffer.byteLength(text);
  };
  const groupNames: string[] = [];
  for (let g = 1; g <= groups; g++) {
    const group = `g${String(g).padStart(4, "0")}`;
    groupNames.push(group);
    const gdir = path.join(dir, group);
    mkdirSync(gdir);
    const migratorName = `${group}-migrations`;
    const files: string[] = [];
    let others = 0;
    for (let w = 1; w <= WORKLOADS_PER_GROUP; w++) {
      const app = `${group}-app${String(w).padStart(2, "0")}`;
      const docs = [deployment(group, app, migratorName, w % 5 === 0)];
      tree.workloads++;
      // Spread the 89 companions over the 10 workloads (9, 9, …, 8).
      const target = Math.round(OTHERS_PER_WORKLOAD * w);
      for (let k = 0; others < target; k++, others++) {
        const seed = g * 1000 + others;
        const suffix = k === 0 ? "" : `-${k}`;
        switch (others % 3) {
          case 0:
            docs.push(configMap(k === 0 ? `${app}-config` : `${app}-config${suffix}`, seed));
            break;
          case 1:
            docs.push(service(`${app}${suffix}`, app));
            break;
          default:
            docs.push(secret(k <= 2 ? `${app}-db${suffix}` : `${app}-secret${suffix}`, seed));
        }
      }
      tree.objects += docs.length;
      const file = `app-${String(w).padStart(2, "0")}.yaml`;
      files.push(file);
      write(path.join(gdir, file), docs.join("---\n"));
    }
    write(path.join(gdir, "migrations.yaml"), migrator(migratorName));
    files.push("migrations.yaml");
    tree.migrators++;
    tree.objects++;
    if (kustomize) write(path.join(gdir, "kustomization.yaml"), kustomization(files));
  }
  if (kustomize) write(path.join(dir, "kustomization.yaml"), kustomization(groupNames));
  if (tree.objects !== objects) throw new Error(`tree generator bug: ${tree.objects} objects instead of ${objects}`);
  return tree;
}

function kustomization(resources: string[]): string {
  return `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
${resources.map((r) => `  - ${r}`).join("\n")}
`;
}
