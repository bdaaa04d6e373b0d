// Status conditions (metav1.Condition semantics): one condition per `type`; lastTransitionTime
// moves only when `status` changes, so clients can tell how long a condition has held; reason and
// message may change freely underneath an unchanged status.
import type { Condition } from "./k8s.ts";

export type ConditionStatus = Condition["status"];

/** What the caller wants a condition to say; lastTransitionTime is derived. */
export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
}

/** The condition of `type`, if present. */
export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * Returns a new list with `input` set: an existing condition of the same type is replaced in
 * place (order kept), keeping its lastTransitionTime when the status is unchanged; a new type is
 * appended with lastTransitionTime `now`. The input list is not modified.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  now: Date,
): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === input.type);
  const previous = index >= 0 ? list[index] : undefined;
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime:
      previous !== undefined && previous.status === input.status ? previous.lastTransitionTime : now.toISOString(),
  };
  if (input.observedGeneration !== undefined) next.observedGeneration = input.observedGeneration;
  if (index >= 0) list[index] = next;
  else list.push(next);
  return list;
}

/** Are two condition lists the same, ignoring order? (lastTransitionTime included) */
export function sameConditions(a: readonly Condition[] | undefined, b: readonly Condition[] | undefined): boolean {
  const left = a ?? [];
  const right = b ?? [];
  if (left.length !== right.length) return false;
  return left.every((c) => {
    const other = findCondition(right, c.type);
    return (
      other !== undefined &&
      other.status === c.status &&
      other.reason === c.reason &&
      other.message === c.message &&
      other.lastTransitionTime === c.lastTransitionTime &&
      other.observedGeneration === c.observedGeneration
    );
  });
}
