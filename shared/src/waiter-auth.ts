// Waiter authentication: the waiter API answers a pod only about itself. The waiter sends the pod's own
// projected service-account token (a `serviceAccountToken` projection with audience
// WAITER_TOKEN_AUDIENCE, which the kubelet requests for the pod, binds to it and refreshes); the
// reconciler hands it to the API server in a TokenReview with that audience, and answers only when the
// token is valid (signature, expiry, audience, and its pod and service account still existing, all
// checked by the API server) and bound to the pod the question names. On Kubernetes 1.20 the review's
// status.user.extra carries the bound pod as `authentication.kubernetes.io/pod-name` and
// `authentication.kubernetes.io/pod-uid`, and username `system:serviceaccount:<namespace>:<name>` the
// namespace. What is decided here is pure; the TokenReview call and its cache are the reconciler's.
import type { Container } from "./k8s.ts";
import { WAITER_TOKEN_VOLUME } from "./migrator.ts";
import type { WaitQuery } from "./waiter-protocol.ts";

/** The audience of the waiter's token: a token for the API server (or anyone else) is refused, and vice versa. */
export const WAITER_TOKEN_AUDIENCE = "digest-migrations";
/** Where the waiter container mounts its token volume, and the file in it. */
export const WAITER_TOKEN_DIR = "/var/run/secrets/digest-migrations";
export const WAITER_TOKEN_FILE = `${WAITER_TOKEN_DIR}/token`;
/** The token's lifetime: the least the API server allows (10 minutes); the kubelet renews it at 80 %. */
export const WAITER_TOKEN_EXPIRATION_SECONDS = 600;

/**
 * How the waiter API treats tokens: `none` ignores them (no authentication, as before); `optional`
 * checks a token when one is sent and answers requests without one as before (for the move: pods
 * rendered before the plugin sent tokens keep being released); `required` refuses requests without one.
 */
export const WAITER_AUTH_MODES = ["none", "optional", "required"] as const;
export type WaiterAuthMode = (typeof WAITER_AUTH_MODES)[number];

/** The pod volume the waiters' token comes from (added once per pod template, beside the waiters). */
export function waiterTokenVolume(): Record<string, unknown> {
  return {
    name: WAITER_TOKEN_VOLUME,
    projected: {
      sources: [
        {
          serviceAccountToken: {
            audience: WAITER_TOKEN_AUDIENCE,
            expirationSeconds: WAITER_TOKEN_EXPIRATION_SECONDS,
            path: "token",
          },
        },
      ],
    },
  };
}

/** The waiter container, reading its token: the volume mounted read-only and --token-file naming it. */
export function withWaiterToken(waiter: Container): Container {
  const mounts = Array.isArray(waiter["volumeMounts"]) ? (waiter["volumeMounts"] as unknown[]) : [];
  return {
    ...waiter,
    args: [...(waiter.args ?? []), "--token-file", WAITER_TOKEN_FILE],
    volumeMounts: [...mounts, { name: WAITER_TOKEN_VOLUME, mountPath: WAITER_TOKEN_DIR, readOnly: true }],
  };
}

/** The fields of a TokenReview's status the decision reads (authentication.k8s.io/v1). */
export interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[] | undefined> };
  audiences?: string[];
  error?: string;
}

/** The pod a reviewed token is bound to. */
export interface PodIdentity {
  namespace: string;
  serviceAccount: string;
  pod: string;
  podUID: string;
}

/** Why a request is refused: 401 (no usable token: authenticate) or 403 (a valid token of another pod). */
export interface Refusal {
  status: 401 | 403;
  message: string;
}

export const POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name";
export const POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid";
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([^:]+)$/;

/**
 * The pod a TokenReview says the token is bound to, or why it is refused. The API server's own error
 * (expired, invalidated because its pod was deleted, another audience) is quoted: it never contains the
 * token.
 */
export function reviewedIdentity(status: TokenReviewStatus | undefined, audience: string): PodIdentity | Refusal {
  if (status?.authenticated !== true) {
    const why = status?.error ? `: ${status.error.slice(0, 300)}` : "";
    return { status: 401, message: `the API server did not accept the token (TokenReview)${why}` };
  }
  if (!(status.audiences ?? []).includes(audience)) {
    return { status: 401, message: `the token is not for audience ${audience}` };
  }
  const user = status.user ?? {};
  const match = SERVICE_ACCOUNT_USER.exec(user.username ?? "");
  if (match === null) {
    return {
      status: 403,
      message: `the token is not a service account's (user ${JSON.stringify(user.username ?? "")})`,
    };
  }
  const pod = user.extra?.[POD_NAME_EXTRA]?.[0];
  const podUID = user.extra?.[POD_UID_EXTRA]?.[0];
  if (!pod || !podUID) {
    return {
      status: 403,
      message: `the token is not bound to a pod (no ${POD_NAME_EXTRA} in the review): send the pod's projected service-account token`,
    };
  }
  return { namespace: match[1]!, serviceAccount: match[3]!, pod, podUID };
}

export function isRefusal(value: PodIdentity | Refusal): value is Refusal {
  return "status" in value;
}

/**
 * May the pod `identity` ask `query`? Only about itself: the same namespace and pod name, and the same
 * uid when the question names one. The answer then uses the token's uid, so a pod replaced under the
 * same name is never answered with a token of its predecessor.
 */
export function authorizeQuery(query: WaitQuery, identity: PodIdentity): { ok: true; query: WaitQuery } | Refusal {
  const asked = `${query.namespace}/${query.pod}`;
  const bound = `${identity.namespace}/${identity.pod}`;
  if (asked !== bound) return { status: 403, message: `the token is bound to pod ${bound}, not ${asked}` };
  if (query.podUID !== undefined && query.podUID !== identity.podUID) {
    return {
      status: 403,
      message: `the token is bound to pod ${bound} with uid ${identity.podUID}, not ${query.podUID}`,
    };
  }
  return { ok: true, query: { ...query, podUID: identity.podUID } };
}

/**
 * The `Authorization: Bearer` token of a request, or why there is none usable. Only the bearer scheme,
 * one header, a token of JWT characters (base64url and dots) of bounded length.
 */
export function bearerToken(header: string | string[] | undefined): { token?: string; problem?: string } {
  if (header === undefined) return {};
  if (Array.isArray(header)) return { problem: "more than one Authorization header" };
  const match = /^Bearer +([A-Za-z0-9._~+/=-]+)$/.exec(header.trim());
  if (match === null) return { problem: "the Authorization header is not `Bearer <token>`" };
  const token = match[1]!;
  if (token.length > 8192) return { problem: "the bearer token is longer than 8192 characters" };
  return { token };
}

/**
 * The token's expiry (JWT `exp`, milliseconds since the epoch), read without verifying it: used only to
 * bound how long a review of that very token is remembered, after the API server verified it.
 */
export function tokenExpiresAt(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown };
    return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
