export * from "./k8s.ts";
export * from "./migrator.ts";
export * from "./waiter.ts";
export * from "./selector.ts";
export * from "./image-ref.ts";
export * from "./image-id.ts";
export * from "./owners.ts";
export * from "./job.ts";
