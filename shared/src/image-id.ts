// `status.containerStatuses[].imageID` → the repository digest the node actually runs.
//
// What kubelets report, by runtime:
// - dockershim, image pulled from a registry: `docker-pullable://registry/app@sha256:<64 hex>`
// - dockershim, image without a repository digest (built or loaded locally): `docker://sha256:<hex>`
//   — that hex is the image *configuration* ID, which no registry serves: not a digest to pin to;
// - containerd and CRI-O: `registry/app@sha256:<64 hex>` (the first repo digest of the image) or, for
//   an image without a repo digest, its configuration ID `sha256:<hex>` — again not pinnable;
// - "" while the container's image has not been pulled yet (e.g. a pod held in an init container).
// So: a digest after "@" is a repository digest; a bare digest is a configuration ID and is reported
// as such, never guessed into a digest.
import { digestProblem, isDigest, parseDigest, parseImageReference, repositoryOf } from "./image-ref.ts";

export { isDigest, parseDigest };

export type ImageIdDigest =
  | { ok: true; digest: string; repository?: string }
  | { ok: false; reason: "Empty" | "ConfigID" | "Malformed"; message: string };

/** `<scheme>://` prefixes of imageIDs, e.g. `docker-pullable://`, `docker://`. */
const SCHEME_RE = /^([a-z][a-z0-9+.-]*):\/\//;
/** Something shaped like `algorithm:encoded` (the digest grammar of distribution/reference). */
const DIGEST_SHAPE_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Za-z]+$/;
const KNOWN_ALGORITHM_RE = /^sha(256|384|512):/i;
const BARE_ID_RE = /^[0-9a-f]{64}$/;

export function digestFromImageID(imageID: string): ImageIdDigest {
  const quoted = `imageID ${JSON.stringify(imageID)}`;
  const malformed = (why: string): ImageIdDigest => ({ ok: false, reason: "Malformed", message: `${quoted}: ${why}` });
  const configID = (): ImageIdDigest => ({
    ok: false,
    reason: "ConfigID",
    message:
      `${quoted} is an image configuration ID, not a repository digest: the image on the node has no registry ` +
      "digest (built or loaded locally?); push it to a registry or reference it by name@sha256:…",
  });
  if (typeof imageID !== "string") return malformed(`must be a string, got ${typeof imageID}`);
  if (imageID === "") return { ok: false, reason: "Empty", message: "imageID is empty: the image has not been pulled" };
  const rest = imageID.replace(SCHEME_RE, "");
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const digest = rest.slice(at + 1);
    const problem = digestProblem(digest);
    if (problem !== undefined) return malformed(problem);
    try {
      parseImageReference(rest);
      return { ok: true, digest, repository: repositoryOf(rest) };
    } catch (error) {
      return malformed((error as Error).message);
    }
  }
  if (BARE_ID_RE.test(rest)) return configID();
  if (DIGEST_SHAPE_RE.test(rest) && (KNOWN_ALGORITHM_RE.test(rest) || /:[0-9a-fA-F]{32,}$/.test(rest))) {
    const problem = digestProblem(rest);
    return problem === undefined ? configID() : malformed(problem);
  }
  return malformed('has no digest (want [name@]sha256:<64 hex>, as "name@digest" for a registry image)');
}
