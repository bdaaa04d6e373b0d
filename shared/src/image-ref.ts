// Container image references in the grammar of distribution/reference (what Docker, containerd and
// the kubelet accept):
//
//   reference  := name [ ":" tag ] [ "@" digest ]
//   name       := [ domain "/" ] path
//   domain     := host [ ":" port ]        host: DNS-ish name, IPv4, or an IPv6 address in brackets
//   path       := component ( "/" component )*
//   component  := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator: "." | "_" | "__" | "-"+
//   tag        := [\w][\w.-]{0,127}
//   digest     := algorithm ":" hex        sha256: 64, sha384: 96, sha512: 128 lowercase hex
//
// A first component is a domain only if it contains "." or ":", is "localhost", or has upper-case
// letters (paths never do); otherwise the domain is docker.io, and a single-component path on
// docker.io gets the "library/" namespace ("nginx" is docker.io/library/nginx). "index.docker.io"
// is the legacy name of docker.io.

export class ImageReferenceError extends Error {
  override name = "ImageReferenceError";
}

export interface ImageReference {
  /** Registry host with optional port, e.g. "docker.io", "registry.example:5000", "[::1]:5000". */
  domain: string;
  /** Repository path inside the registry, e.g. "library/nginx". */
  path: string;
  tag?: string;
  /** "algorithm:hex", e.g. "sha256:…". */
  digest?: string;
}

export const DEFAULT_DOMAIN = "docker.io";
const LEGACY_DEFAULT_DOMAIN = "index.docker.io";
const OFFICIAL_REPO_PREFIX = "library/";

/** distribution/reference: the repository path is at most 255 characters. */
export const REPOSITORY_PATH_MAX = 255;

/** Hex lengths of the digest algorithms registries and runtimes use (OCI image spec). */
export const DIGEST_ALGORITHMS: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

const PATH_COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
/** A bare 64-hex string is an image ID, never a repository name (distribution/reference). */
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;

/** Why `digest` is not a supported digest, or undefined when it is. */
export function digestProblem(digest: string): string | undefined {
  const colon = digest.indexOf(":");
  if (colon < 0) return `digest ${JSON.stringify(digest)} has no algorithm (want e.g. sha256:<64 hex>)`;
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  const length = Object.hasOwn(DIGEST_ALGORITHMS, algorithm) ? DIGEST_ALGORITHMS[algorithm] : undefined;
  if (length === undefined) {
    return `digest ${JSON.stringify(digest)} has unsupported algorithm ${JSON.stringify(algorithm)} (want ${Object.keys(DIGEST_ALGORITHMS).join(", ")})`;
  }
  if (!/^[0-9a-fA-F]*$/.test(hex)) return `digest ${JSON.stringify(digest)} has non-hex characters`;
  if (hex.length !== length) {
    return `digest ${JSON.stringify(digest)} has ${hex.length} hex characters, ${algorithm} has ${length}`;
  }
  if (hex !== hex.toLowerCase()) return `digest ${JSON.stringify(digest)} must be lowercase hex`;
  return undefined;
}

/** Is `s` a digest of a supported algorithm with exactly its length of lowercase hex? */
export function isDigest(s: string): boolean {
  return digestProblem(s) === undefined;
}

/** Splits a digest into algorithm and hex; throws ImageReferenceError saying what is wrong. */
export function parseDigest(s: string): { algorithm: string; hex: string } {
  const problem = digestProblem(s);
  if (problem !== undefined) throw new ImageReferenceError(`invalid digest: ${problem}`);
  const colon = s.indexOf(":");
  return { algorithm: s.slice(0, colon), hex: s.slice(colon + 1) };
}

/** How many hex characters a short digest keeps (as `docker images` and `git log --oneline` abbreviate). */
export const SHORT_DIGEST_HEX = 12;

/**
 * `sha256:0123456789abcdef…` → `sha256:0123456789ab`: enough to tell digests apart in a table
 * (`kubectl get migrators`, the demo). Anything that is not a digest comes back unchanged.
 */
export function shortDigest(digest: string): string {
  if (!isDigest(digest)) return digest;
  return digest.slice(0, digest.indexOf(":") + 1 + SHORT_DIGEST_HEX);
}

/** The user's spelling split into name, tag and digest, validated; domain defaulting not applied. */
interface SplitReference {
  name: string;
  tag?: string;
  digest?: string;
}

function fail(ref: string, reason: string): never {
  throw new ImageReferenceError(`invalid image reference ${JSON.stringify(ref)}: ${reason}`);
}

function splitReference(ref: string): SplitReference {
  if (typeof ref !== "string") fail(String(ref), `must be a string, got ${typeof ref}`);
  if (ref === "") fail(ref, "empty");
  if (ref.trim() !== ref) fail(ref, "has leading or trailing whitespace");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (digest === "") fail(ref, 'nothing after "@" (want a digest such as sha256:<64 hex>)');
    const problem = digestProblem(digest);
    if (problem !== undefined) fail(ref, problem);
  }
  // A tag follows the last ":" unless that ":" is part of a registry port ("host:5000/app").
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon >= 0 && !rest.slice(colon + 1).includes("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (tag === "") fail(ref, 'nothing after ":" (want a tag)');
    if (!TAG_RE.test(tag)) {
      fail(ref, `tag ${JSON.stringify(tag)} must be 1-128 of [A-Za-z0-9_.-], not starting with "." or "-"`);
    }
  }
  if (rest === "") fail(ref, "no repository name");
  const result: SplitReference = { name: rest };
  if (tag !== undefined) result.tag = tag;
  if (digest !== undefined) result.digest = digest;
  return result;
}

/** Splits a name into domain and path the way Docker does, with docker.io defaults. */
function splitDomain(ref: string, name: string): { domain: string; path: string } {
  if (IDENTIFIER_RE.test(name)) fail(ref, "a 64-character hex string is an image ID, not a repository name");
  const slash = name.indexOf("/");
  let domain = DEFAULT_DOMAIN;
  let path = name;
  if (slash >= 0) {
    const first = name.slice(0, slash);
    if (first === "localhost" || /[.:]/.test(first) || first.toLowerCase() !== first) {
      domain = first === LEGACY_DEFAULT_DOMAIN ? DEFAULT_DOMAIN : first;
      path = name.slice(slash + 1);
      if (!DOMAIN_RE.test(first))
        fail(ref, `registry host ${JSON.stringify(first)} is not a host name or [IPv6] with an optional port`);
    }
  }
  if (path === "") fail(ref, "no repository path after the registry host");
  if (path.toLowerCase() !== path && PATH_RE.test(path.toLowerCase())) {
    fail(ref, `repository name ${JSON.stringify(path)} must be lowercase`);
  }
  if (!PATH_RE.test(path)) {
    fail(
      ref,
      `repository path ${JSON.stringify(path)} must be "/"-separated components of [a-z0-9] joined by ".", "_", "__" or "-"`,
    );
  }
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = OFFICIAL_REPO_PREFIX + path;
  if (path.length > REPOSITORY_PATH_MAX) {
    fail(ref, `repository path is ${path.length} characters, at most ${REPOSITORY_PATH_MAX} are allowed`);
  }
  return { domain, path };
}

/**
 * Parses an image reference into its normalised parts (docker.io and library/ defaults applied).
 * Throws ImageReferenceError `invalid image reference "<ref>": <reason>`.
 */
export function parseImageReference(ref: string): ImageReference {
  const split = splitReference(ref);
  const { domain, path } = splitDomain(ref, split.name);
  const result: ImageReference = { domain, path };
  if (split.tag !== undefined) result.tag = split.tag;
  if (split.digest !== undefined) result.digest = split.digest;
  return result;
}

/** The canonical, fully qualified spelling: domain/path[:tag][@digest]. */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/**
 * Pins `image` to `digest`, keeping the user's own spelling of the name and tag
 * (`registry.example/app:latest` → `registry.example/app:latest@sha256:…`). An existing digest is
 * replaced. The kubelet pulls by digest when one is present; the tag is kept for humans.
 */
export function pinImage(image: string, digest: string): string {
  const split = splitReference(image);
  splitDomain(image, split.name);
  const problem = digestProblem(digest);
  if (problem !== undefined) throw new ImageReferenceError(`cannot pin image ${JSON.stringify(image)}: ${problem}`);
  return `${split.name}${split.tag !== undefined ? `:${split.tag}` : ""}@${digest}`;
}

/** The digest after "@" in an image reference, if the reference is pinned (`name[:tag]@sha256:…`). */
export function pinnedDigest(image: string | undefined): string | undefined {
  if (image === undefined || !image.includes("@")) return undefined;
  try {
    return parseImageReference(image).digest;
  } catch {
    // An unparsable image is not pinned; the kubelet reports InvalidImageName for it.
    return undefined;
  }
}

/**
 * The normalised repository of `image` (`nginx:1` → `docker.io/library/nginx`), for comparing
 * images regardless of tag, digest and familiar spelling. Host names are case-insensitive, so the
 * domain is lower-cased.
 */
export function repositoryOf(image: string): string {
  const { domain, path } = parseImageReference(image);
  return `${domain.toLowerCase()}/${path}`;
}
