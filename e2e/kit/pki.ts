// TLS material for the test clusters, made with openssl: one CA per cluster that signs the
// apiserver's and the kubelet's serving certificates and every client certificate (admin,
// controller-manager, scheduler, kubelet), ECDSA P-256 (fast to generate), plus the RSA
// service-account key pair the 1.20 token controller and issuer expect. And kubeconfig files.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { execFileText } from "./processes.ts";

export interface Ca {
  cert: string;
  key: string;
  dir: string;
}

export interface KeyPair {
  cert: string;
  key: string;
}

export interface CertRequest {
  /** File name stem in the CA's directory (`<name>.crt`, `<name>.key`). */
  name: string;
  /** Subject CN: the user name of a client certificate. */
  commonName: string;
  /** Subject O entries: the groups of a client certificate. */
  organizations?: string[];
  /** A serving certificate for these IP addresses and DNS names (else a client certificate). */
  serving?: { ips: string[]; dnsNames?: string[] };
}

const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"];

function extensions(section: string, lines: string[]): string {
  return `[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n[${section}]\n${lines.join("\n")}\n`;
}

/** A self-signed CA in `dir` (ca.crt, ca.key). */
export async function createCa(dir: string, commonName: string): Promise<Ca> {
  const cnf = path.join(dir, "ca.cnf");
  fs.writeFileSync(
    cnf,
    extensions("ext", [
      "basicConstraints = critical,CA:TRUE",
      "keyUsage = critical,keyCertSign,cRLSign,digitalSignature",
      "subjectKeyIdentifier = hash",
    ]),
  );
  const ca = { cert: path.join(dir, "ca.crt"), key: path.join(dir, "ca.key"), dir };
  await execFileText("openssl", [
    "req",
    "-config",
    cnf,
    "-x509",
    ...ec,
    "-extensions",
    "ext",
    "-subj",
    `/CN=${commonName}`,
    "-keyout",
    ca.key,
    "-out",
    ca.cert,
  ]);
  return ca;
}

/** A certificate signed by `ca`. */
export async function issue(ca: Ca, req: CertRequest): Promise<KeyPair> {
  const cnf = path.join(ca.dir, `${req.name}.cnf`);
  const san = req.serving
    ? [...req.serving.ips.map((ip) => `IP:${ip}`), ...(req.serving.dnsNames ?? []).map((d) => `DNS:${d}`)].join(",")
    : "";
  fs.writeFileSync(
    cnf,
    extensions("ext", [
      "basicConstraints = critical,CA:FALSE",
      "keyUsage = critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage = ${req.serving ? "serverAuth" : "clientAuth"}`,
      "authorityKeyIdentifier = keyid",
      ...(san ? [`subjectAltName = ${san}`] : []),
    ]),
  );
  const subject = [...(req.organizations ?? []).map((o) => `/O=${o}`), `/CN=${req.commonName}`].join("");
  const pair = { cert: path.join(ca.dir, `${req.name}.crt`), key: path.join(ca.dir, `${req.name}.key`) };
  await execFileText("openssl", [
    "req",
    "-config",
    cnf,
    "-x509",
    ...ec,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-extensions",
    "ext",
    "-subj",
    subject,
    "-keyout",
    pair.key,
    "-out",
    pair.cert,
  ]);
  return pair;
}

/** The RSA key pair that signs and verifies service-account tokens (sa.key, sa.pub in `dir`). */
export function serviceAccountKeys(dir: string): { key: string; pub: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const key = path.join(dir, "sa.key");
  const pub = path.join(dir, "sa.pub");
  fs.writeFileSync(key, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  fs.writeFileSync(pub, publicKey.export({ type: "spki", format: "pem" }));
  return { key, pub };
}

/** A kubeconfig as YAML (JSON-quoted scalars are valid YAML). `auth` is the user's entry
 *  (`client-certificate`/`client-key` files, or `token`). */
export function kubeconfigText(
  server: string,
  caFile: string,
  user: string,
  auth: Record<string, string>,
  namespace?: string,
): string {
  const q = (s: string): string => JSON.stringify(s);
  const authLines = Object.entries(auth)
    .map(([k, v]) => `    ${k}: ${q(v)}`)
    .join("\n");
  return `apiVersion: v1
kind: Config
clusters:
- name: digest-migrations-e2e
  cluster:
    server: ${q(server)}
    certificate-authority: ${q(caFile)}
users:
- name: ${q(user)}
  user:
${authLines}
contexts:
- name: ${q(user)}
  context:
    cluster: digest-migrations-e2e${namespace ? `\n    namespace: ${q(namespace)}` : ""}
    user: ${q(user)}
current-context: ${q(user)}
`;
}

/** Writes a kubeconfig for a client certificate. */
export function writeCertKubeconfig(file: string, server: string, ca: Ca, user: string, pair: KeyPair): string {
  fs.writeFileSync(
    file,
    kubeconfigText(server, ca.cert, user, { "client-certificate": pair.cert, "client-key": pair.key }),
    { mode: 0o600 },
  );
  return file;
}
