import { suite } from "uvu";
import * as assert from "uvu/assert";
import type * as k8s from "@kubernetes/client-node";
import { LastApplied, bodyDigest, holds, trimForCache } from "../../federation/internal.ts";

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

const held = suite("holds: whether an object holds every field of an apply body");

const holdsCases: { name: string; actual: unknown; wanted: unknown; expect: boolean }[] = [
  { name: "extra fields (server defaults) are allowed", actual: { spec: { type: "ClusterIP", clusterIP: "10.0.0.1", ports: [{ port: 80, protocol: "TCP" }] } }, wanted: { spec: { ports: [{ port: 80 }] } }, expect: true },
  { name: "a changed value is not held", actual: { spec: { ports: [{ port: 81 }] } }, wanted: { spec: { ports: [{ port: 80 }] } }, expect: false },
  { name: "a missing field is not held", actual: { metadata: { labels: {} } }, wanted: { metadata: { labels: { a: "1" } } }, expect: false },
  { name: "lists must have the same length", actual: { ips: ["10.0.0.1", "10.0.0.2"] }, wanted: { ips: ["10.0.0.1"] }, expect: false },
  { name: "lists compare in order", actual: { ips: ["b", "a"] }, wanted: { ips: ["a", "b"] }, expect: false },
  { name: "undefined fields in the body are ignored", actual: { spec: {} }, wanted: { spec: { ips: undefined } }, expect: true },
  { name: "nothing cached holds nothing", actual: undefined, wanted: { spec: {} }, expect: false },
  { name: "a list is not an object", actual: [], wanted: {}, expect: false },
];
for (const c of holdsCases) held(c.name, () => assert.is(holds(c.actual, c.wanted), c.expect));

held.run();

const applied = suite("LastApplied: skipping an apply that repeats the last one to an object that still holds it");
const body = { metadata: { name: "svc" }, spec: { ports: [{ port: 80, name: "http" }] } };
const cached = { metadata: { name: "svc", resourceVersion: "7" }, spec: { type: "ClusterIP", ports: [{ port: 80, name: "http", protocol: "TCP" }] } };

applied("repeats only the body last applied, to an object that still holds it", () => {
  const last = new LastApplied();
  const digest = bodyDigest(body);
  assert.not.ok(last.repeats("v1/Service/shop/svc", digest, cached, body), "nothing applied yet: a restart applies once");
  last.record("v1/Service/shop/svc", digest);
  assert.ok(last.repeats("v1/Service/shop/svc", digest, cached, body));
  assert.not.ok(last.repeats("v1/Service/shop/svc", digest, { ...cached, spec: { ports: [{ port: 8080, name: "http" }] } }, body), "someone changed a field of ours");
  const other = { ...body, spec: { ports: [{ port: 80, name: "http" }], sessionAffinity: "ClientIP" } };
  assert.not.ok(last.repeats("v1/Service/shop/svc", bodyDigest(other), cached, other), "a different body");
  assert.not.ok(last.repeats("v1/Service/shop/other", digest, cached, body), "another object");
  assert.not.ok(last.repeats("v1/Service/shop/svc", digest, undefined, body), "not cached");
});

applied("a body that drops a field it set before is sent, though the object still holds the rest", () => {
  const last = new LastApplied();
  const before = { metadata: { name: "svc", labels: { a: "1", b: "2" } } };
  const after = { metadata: { name: "svc", labels: { a: "1" } } };
  last.record("id", bodyDigest(before));
  assert.not.ok(last.repeats("id", bodyDigest(after), before, after), "server-side apply would remove label b");
});

applied("the digest does not depend on key order; list order counts", () => {
  assert.is(bodyDigest({ spec: { ports: [{ name: "http", port: 80 }] }, metadata: { name: "svc" } }), bodyDigest(body));
  assert.is.not(bodyDigest({ spec: { ports: [{ port: 80 }, { port: 81 }] } }), bodyDigest({ spec: { ports: [{ port: 81 }, { port: 80 }] } }));
});

applied("forget() clears the object and its status", () => {
  const last = new LastApplied();
  const digest = bodyDigest(body);
  last.record("id", digest);
  last.record("id/status", digest);
  last.forget("id");
  assert.not.ok(last.repeats("id", digest, cached, body));
  assert.not.ok(last.repeats("id/status", digest, cached, body));
});

applied.run();
