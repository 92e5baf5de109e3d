import { test } from "uvu";
import * as assert from "uvu/assert";
import type * as k8s from "@kubernetes/client-node";
import { localEndpointsOf } from "../../federation/internal.ts";

const service: k8s.V1Service = { spec: { ports: [{ name: "http", port: 80 }, { name: "grpc", port: 9090 }] } };
const slice = (fields: Partial<k8s.V1EndpointSlice>): k8s.V1EndpointSlice => ({ addressType: "IPv4", endpoints: [], ...fields });

const cases: { name: string; slices: k8s.V1EndpointSlice[]; expect: ReturnType<typeof localEndpointsOf> }[] = [
  {
    name: "maps each address and named port to the Service port it serves, with its zone",
    slices: [
      slice({
        ports: [{ name: "http", port: 8080 }, { name: "grpc", port: 9091 }],
        endpoints: [{ addresses: ["10.0.0.2"], zone: "z1", conditions: { ready: true } }],
      }),
    ],
    expect: [
      { address: "10.0.0.2", port: 8080, zone: "z1", ready: true, servicePort: 80 },
      { address: "10.0.0.2", port: 9091, zone: "z1", ready: true, servicePort: 9090 },
    ],
  },
  {
    name: "an absent ready condition means ready; ready=false (also terminating) means not",
    slices: [
      slice({
        ports: [{ name: "http", port: 8080 }],
        endpoints: [{ addresses: ["10.0.0.1"] }, { addresses: ["10.0.0.3"], zone: "z2", conditions: { ready: false, terminating: true } }],
      }),
    ],
    expect: [
      { address: "10.0.0.1", port: 8080, zone: "", ready: true, servicePort: 80 },
      { address: "10.0.0.3", port: 8080, zone: "z2", ready: false, servicePort: 80 },
    ],
  },
  {
    name: "skips FQDN slices and ports the Service does not define",
    slices: [
      slice({ addressType: "FQDN", ports: [{ name: "http", port: 8080 }], endpoints: [{ addresses: ["db.example.com"] }] }),
      slice({ ports: [{ name: "admin", port: 7000 }], endpoints: [{ addresses: ["10.0.0.4"] }] }),
    ],
    expect: [],
  },
];

for (const c of cases) test(c.name, () => assert.equal(localEndpointsOf(service, c.slices), c.expect));

test.run();
