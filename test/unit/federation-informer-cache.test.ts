import { suite } from "uvu";
import * as assert from "uvu/assert";
import type * as k8s from "@kubernetes/client-node";
import { LastApplied, bodyDigest, trimForCache } from "../../federation/internal.ts";

const trim = suite("trimForCache: what an informer keeps of an object");

const managedFields = [{ manager: "fedgate-controller", operation: "Apply", fieldsType: "FieldsV1", fieldsV1: { "f:spec": {} } }];
const lastApplied = { "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"v1"}' };

const trimCases: { name: string; input: k8s.KubernetesObject; expect: k8s.KubernetesObject }[] = [
  {
    name: "drops managedFields and kubectl's last-applied annotation, keeps the other annotations and labels",
    input: { metadata: { name: "a", resourceVersion: "7", labels: { app: "x" }, annotations: { ...lastApplied, keep: "me" }, managedFields } },
    expect: { metadata: { name: "a", resourceVersion: "7", labels: { app: "x" }, annotations: { keep: "me" } } },
  },
  {
    name: "an annotations map left empty is dropped",
    input: { metadata: { name: "a", annotations: { ...lastApplied } } },
    expect: { metadata: { name: "a" } },
  },
  {
    name: "an object without either is unchanged",
    input: { metadata: { name: "a", annotations: { keep: "me" } } },
    expect: { metadata: { name: "a", annotations: { keep: "me" } } },
  },
  { name: "an object without metadata (a watch ERROR Status) passes through", input: { kind: "Status" }, expect: { kind: "Status" } },
];
for (const c of trimCases) trim(c.name, () => assert.equal(trimForCache(structuredClone(c.input)), c.expect));

trim.run();

const applied = suite("LastApplied: skipping an apply that repeats the last one to an unchanged object");
const at = (resourceVersion: string): k8s.KubernetesObject => ({ metadata: { name: "svc", resourceVersion } });
const body = { spec: { ports: [{ port: 80, name: "http" }] }, metadata: { name: "svc" } };

applied("repeats only the same body to the object still at the answered resourceVersion", () => {
  const last = new LastApplied();
  const digest = bodyDigest(body);
  assert.not.ok(last.repeats("v1/Service/shop/svc", digest, at("5")), "nothing applied yet");
  last.record("v1/Service/shop/svc", digest, at("5"));
  assert.ok(last.repeats("v1/Service/shop/svc", digest, at("5")));
  assert.not.ok(last.repeats("v1/Service/shop/svc", digest, at("6")), "someone changed the object since");
  assert.not.ok(last.repeats("v1/Service/shop/svc", bodyDigest({ ...body, spec: { ports: [{ port: 81, name: "http" }] } }), at("5")), "a different body");
  assert.not.ok(last.repeats("v1/Service/shop/other", digest, at("5")), "another object");
  assert.not.ok(last.repeats("v1/Service/shop/svc", digest, undefined), "not cached");
});

applied("the digest does not depend on key order", () => {
  assert.is(bodyDigest({ metadata: { name: "svc" }, spec: { ports: [{ name: "http", port: 80 }] } }), bodyDigest(body));
  assert.is.not(bodyDigest({ spec: { ports: [{ port: 80 }, { port: 81 }] } }), bodyDigest({ spec: { ports: [{ port: 81 }, { port: 80 }] } }), "list order counts");
});

applied("an answer without a resourceVersion, or forget(), clears the object and its status", () => {
  const last = new LastApplied();
  const digest = bodyDigest(body);
  last.record("id", digest, at("5"));
  last.record("id/status", digest, at("6"));
  last.forget("id");
  assert.not.ok(last.repeats("id", digest, at("5")));
  assert.not.ok(last.repeats("id/status", digest, at("6")));
  last.record("id", digest, at("5"));
  last.record("id", digest, {});
  assert.not.ok(last.repeats("id", digest, at("5")));
});

applied.run();
